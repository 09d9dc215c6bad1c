"""The open-set decision, and identify/enroll end to end with fake models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import save_png, tile_image

from faceid.enroll import ADDED, DUPLICATE, FAILED, enroll, enroll_folders
from faceid.errors import ModelMismatchError
from faceid.identify import AMBIGUOUS, KNOWN, UNKNOWN, Candidate, Decision, decide, identify
from faceid.thresholds import DecisionParams

RED, GREEN, BLUE, GREY = (200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 120)


def c(*pairs):
    return [Candidate(n, s) for n, s in pairs]


def run(faces, threshold, margin=0.0, beta=0.0):
    """(status, name, similarity) per face, with the plain similarity as score (beta 0)."""
    return [(d.status, d.name, d.similarity) for d in decide(faces, DecisionParams(threshold, margin, beta))]


def test_known_unknown_by_threshold():
    out = run([c(("a", 0.8)), c(("b", 0.3))], 0.5, 0.0)
    assert out == [(KNOWN, "a", 0.8), (UNKNOWN, None, 0.3)]


def test_threshold_is_inclusive():
    assert run([c(("a", 0.5))], 0.5, 0.0)[0][0] == KNOWN


def test_ambiguous_when_runner_up_is_close():
    out = run([c(("a", 0.80), ("b", 0.78))], 0.5, 0.05)
    assert out == [(AMBIGUOUS, None, 0.80)]
    out = run([c(("a", 0.80), ("b", 0.70))], 0.5, 0.05)
    assert out == [(KNOWN, "a", 0.80)]


def test_one_person_once_weaker_face_falls_to_next_candidate():
    faces = [c(("a", 0.70), ("b", 0.60)), c(("a", 0.90))]
    out = run(faces, 0.5, 0.0)
    assert out == [(KNOWN, "b", 0.60), (KNOWN, "a", 0.90)]


def test_one_person_once_weaker_face_falls_to_unknown():
    faces = [c(("a", 0.70), ("b", 0.40)), c(("a", 0.90))]
    out = run(faces, 0.5, 0.0)
    assert out == [(UNKNOWN, None, 0.70), (KNOWN, "a", 0.90)]


def test_person_placed_elsewhere_is_no_rival():
    faces = [c(("a", 0.70), ("b", 0.68)), c(("a", 0.90))]
    out = run(faces, 0.5, 0.05)
    assert out[0] == (KNOWN, "b", 0.68)


def test_score_discounts_a_face_that_resembles_several_people():
    (d,) = decide([c(("a", 0.60), ("b", 0.50))], DecisionParams(0.35, 0.0, 0.6))
    assert d == Decision(UNKNOWN, None, 0.60, pytest.approx(0.60 - 0.6 * 0.50))
    (d,) = decide([c(("a", 0.60), ("b", 0.10))], DecisionParams(0.35, 0.0, 0.6))
    assert d == Decision(KNOWN, "a", 0.60, pytest.approx(0.60 - 0.6 * 0.10))


def test_negative_rivals_do_not_raise_the_score():
    (d,) = decide([c(("a", 0.40), ("b", -0.30))], DecisionParams(0.41, 0.0, 0.6))
    assert d.status == UNKNOWN and d.score == pytest.approx(0.40)


def test_empty_gallery_everyone_unknown():
    assert run([[], []], 0.5, 0.0) == [(UNKNOWN, None, -1.0), (UNKNOWN, None, -1.0)]


# -- with fake models --------------------------------------------------------------------------------


@pytest.fixture
def people(tmp_path):
    root = tmp_path / "people"
    save_png(root / "red" / "1.png", tile_image([RED]))
    save_png(root / "green" / "1.png", tile_image([GREEN]))
    save_png(root / "blue" / "1.png", tile_image([BLUE]))
    return root


def test_enroll_folders_then_identify_group(tmp_path, gallery, people, fake_pipeline):
    results = enroll_folders(gallery, people, fake_pipeline)
    assert [(r.person, r.status) for r in results] == [("blue", ADDED), ("green", ADDED), ("red", ADDED)]
    group = save_png(tmp_path / "group.png", tile_image([GREEN, GREY, RED]))
    (result,) = identify([group], gallery, fake_pipeline, threshold=0.5)
    assert [(f.name, f.status) for f in result.faces] == [("green", KNOWN), (None, UNKNOWN), ("red", KNOWN)]
    assert result.error is None and result.params.threshold == 0.5
    known = result.faces[0]
    assert known.similarity == pytest.approx(1.0, abs=1e-5)
    as_json = json.loads(json.dumps(result.to_json()))
    assert as_json["faces"][0]["box"] == [0, 0, 40, 40] and as_json["faces"][0]["name"] == "green"
    assert as_json["faces"][1]["name"] is None and as_json["faces"][1]["status"] == "unknown"


def test_same_person_twice_in_one_photo_is_named_once(tmp_path, gallery, people, fake_pipeline):
    enroll_folders(gallery, people, fake_pipeline)
    photo = save_png(tmp_path / "twins.png", tile_image([RED, RED]))
    (result,) = identify([photo], gallery, fake_pipeline, threshold=0.5)
    assert sorted(f.status for f in result.faces) == [KNOWN, UNKNOWN]


def test_removed_person_is_never_returned(tmp_path, gallery, people, fake_pipeline):
    enroll_folders(gallery, people, fake_pipeline)
    gallery.remove("red")
    photo = save_png(tmp_path / "red.png", tile_image([RED]))
    (result,) = identify([photo], gallery, fake_pipeline, threshold=-1.0)  # even with no threshold at all
    assert all(f.name != "red" for f in result.faces)
    assert all(cand.name != "red" for f in result.faces for cand in f.candidates)


def test_enrolling_someone_new_does_not_re_embed_anyone(tmp_path, gallery, people, fake_pipeline):
    enroll_folders(gallery, people, fake_pipeline)
    calls = fake_pipeline.embedder.calls
    before = {f.id: f for f in gallery.faces()}
    enroll(gallery, "grey", [save_png(tmp_path / "g.png", tile_image([GREY]))], fake_pipeline)
    assert fake_pipeline.embedder.calls == calls + 1
    after = {f.id: f for f in gallery.faces()}
    assert all(after[i] == before[i] for i in before)


def test_enrol_refuses_no_face_many_faces_and_duplicates(tmp_path, gallery, fake_pipeline):
    blank = save_png(tmp_path / "blank.png", np.zeros((40, 40, 3), np.uint8))
    two = save_png(tmp_path / "two.png", tile_image([RED, BLUE]))
    one = save_png(tmp_path / "one.png", tile_image([RED]))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    results = enroll(gallery, "red", [blank, two, one, one, bad], fake_pipeline)
    status = [(r.image.split("/")[-1], r.status) for r in results]
    assert status == [
        ("blank.png", FAILED),
        ("two.png", FAILED),
        ("one.png", ADDED),
        ("one.png", DUPLICATE),
        ("bad.jpg", FAILED),
    ]
    assert "no face" in results[0].message and "--largest" in results[1].message
    assert "bad.jpg" in results[4].message
    assert gallery.person("red").faces == 1
    again = enroll(gallery, "someone else", [one], fake_pipeline)
    assert again[0].status == DUPLICATE and "already enrolled for red" in again[0].message
    largest = enroll(gallery, "red", [two], fake_pipeline, largest=True)
    assert largest[0].status == ADDED


def test_identify_goes_on_past_a_bad_file(tmp_path, gallery, people, fake_pipeline):
    enroll_folders(gallery, people, fake_pipeline)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    good = save_png(tmp_path / "good.png", tile_image([BLUE]))
    results = list(identify([bad, good], gallery, fake_pipeline, threshold=0.5))
    assert results[0].error and "bad.png" in results[0].error and results[0].faces == ()
    assert results[1].faces[0].name == "blue"


def test_gallery_refuses_another_pipeline(tmp_path, gallery, people, fake_pipeline):
    from conftest import make_fake_pipeline

    from faceid.embedding_key import EmbeddingKey

    enroll_folders(gallery, people, fake_pipeline)
    other = make_fake_pipeline(EmbeddingKey.for_model(align="similarity"))
    with pytest.raises(ModelMismatchError):
        enroll(gallery, "x", [save_png(tmp_path / "x.png", tile_image([GREY]))], other)
    with pytest.raises(ModelMismatchError):
        list(identify([tmp_path / "x.png"], gallery, other))


def test_calibrated_threshold_is_used(tmp_path, gallery, people, fake_pipeline):
    enroll_folders(gallery, people, fake_pipeline)
    gallery.set_setting("threshold", 0.99)
    photo = save_png(tmp_path / "p.png", tile_image([BLUE]))
    (result,) = identify([photo], gallery, fake_pipeline)
    assert result.params.threshold == 0.99 and result.params.source == "calibrated"


def test_annotated_image_is_written(tmp_path, gallery, people, fake_pipeline):
    from PIL import Image

    enroll_folders(gallery, people, fake_pipeline)
    photo = save_png(tmp_path / "p.png", tile_image([BLUE, GREY], tile=40))
    (result,) = identify([photo], gallery, fake_pipeline, threshold=0.5, annotate_dir=tmp_path / "out")
    written = Image.open(result.annotated)
    assert written.size == (80, 40)
    pixels = np.asarray(written.convert("RGB"))
    assert (pixels != tile_image([BLUE, GREY])).any()  # something was drawn
