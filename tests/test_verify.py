"""1:1 verification: the library, ``faceid verify`` and ``POST /v1/verify`` with fake models, the
threshold table's interpolation, the calibration's pair scores against a brute-force oracle, and
one real-model check on the committed sample photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, fake_cli, save_png, tile_image, unit_vectors

RED, GREEN, BLUE = (200, 0, 0), (0, 200, 0), (0, 0, 200)
SAMPLES = Path(__file__).resolve().parent.parent / "faceid" / "samples"


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, Path]:
    return {
        "red": save_png(tmp_path / "red.png", tile_image([RED])),
        "red2": save_png(tmp_path / "red2.png", tile_image([RED, (0, 0, 0)])),
        "green": save_png(tmp_path / "green.png", tile_image([GREEN])),
        "pair": save_png(tmp_path / "pair.png", tile_image([GREEN, RED])),
        "none": save_png(tmp_path / "none.png", np.zeros((40, 40, 3), np.uint8)),
    }


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_same_person_json_last_line(photos):
    result = fake_cli("verify", photos["red"], photos["red2"], "--json")
    assert result.exit_code == 0, result.output
    answer = last_json(result.output)
    assert answer["same"] is True and answer["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert answer["fmr"] == 0.001 and answer["model"] == KEY.model


def test_different_people(photos):
    answer = last_json(fake_cli("verify", photos["red"], photos["green"], "--json").output)
    assert answer["same"] is False
    assert answer["similarity"] < answer["threshold"]


def test_human_line_says_the_verdict(photos):
    result = fake_cli("verify", photos["red"], photos["green"])
    assert result.exit_code == 0
    assert result.output.startswith("different people: similarity")


def test_box_chooses_the_face(photos):
    # pair.png: green at x 0-40, red at 40-80, the same size: the box decides which one
    red = last_json(fake_cli("verify", photos["pair"], photos["red"], "--box-a", "40,0,40,40", "--json").output)
    green = last_json(fake_cli("verify", photos["pair"], photos["red"], "--box-a", "0,0,40,40", "--json").output)
    assert red["same"] is True and green["same"] is False
    assert red["a"]["box"] == [40, 0, 40, 40] and red["a"]["faces"] == 2


def test_no_face_is_one_line_naming_the_file(photos):
    result = fake_cli("verify", photos["none"], photos["red"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "none.png" in lines[0] and "no face" in lines[0]


def test_box_with_no_face_there(photos):
    result = fake_cli("verify", photos["red"], photos["red2"], "--box-b", "200,200,10,10")
    assert result.exit_code == 1 and "red2.png" in result.output and "no face found at box" in result.output


def test_unreadable_file_named(photos, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    result = fake_cli("verify", bad, photos["red"])
    assert result.exit_code == 1 and "bad.jpg" in result.output


def test_explicit_threshold_and_fmr(photos):
    answer = last_json(fake_cli("verify", photos["red"], photos["green"], "--threshold", "-0.9", "--json").output)
    assert answer["same"] is True and answer["threshold"] == -0.9 and answer["fmr"] is None
    both = fake_cli("verify", photos["red"], photos["green"], "--threshold", "0.5", "--fmr", "0.01")
    assert both.exit_code == 1 and "not both" in both.output
    out_of_range = fake_cli("verify", photos["red"], photos["green"], "--fmr", "0.5")
    assert out_of_range.exit_code == 1 and "--fmr must be between" in out_of_range.output


def test_threshold_interpolates_in_log_rate(monkeypatch):
    from faceid import thresholds
    from faceid.errors import OptionError, UncalibratedError
    from faceid.thresholds import verify_threshold

    monkeypatch.setitem(thresholds.VERIFY_TABLES, KEY, ((1e-2, 0.2), (1e-3, 0.3), (1e-4, 0.4)))
    assert verify_threshold(KEY, 1e-3) == pytest.approx(0.3)
    assert verify_threshold(KEY, 10**-2.5) == pytest.approx(0.25)
    assert verify_threshold(KEY, 1e-4) == pytest.approx(0.4)
    with pytest.raises(OptionError):
        verify_threshold(KEY, 1e-5)
    from faceid.embedding_key import EmbeddingKey

    with pytest.raises(UncalibratedError):
        verify_threshold(EmbeddingKey.for_model("facenet-20170512-110547", crop_margin=0.3))


def test_every_default_model_has_a_verify_table():
    from faceid.models import DEFAULT_MODEL
    from faceid.thresholds import VERIFY_FMR, VERIFY_TABLES, verify_threshold

    assert KEY.model == DEFAULT_MODEL and KEY in VERIFY_TABLES
    assert -1.0 < verify_threshold(KEY, VERIFY_FMR) < 1.0
    for table in VERIFY_TABLES.values():
        rates = [r for r, _ in table]
        values = [t for _, t in table]
        assert rates == sorted(rates, reverse=True) and values == sorted(values)  # stricter rate, higher bar


def test_pair_scores_match_brute_force():
    from faceid.eval.verify import impostor_scores

    x = unit_vectors(3, 41)
    owners = [f"p{i % 13}" for i in range(41)]
    impostor, genuine = impostor_scores(x, owners)
    want_i, want_g = [], []
    for i in range(41):
        for j in range(i + 1, 41):
            (want_g if owners[i] == owners[j] else want_i).append(float(x[i] @ x[j]))
    assert sorted(impostor.tolist()) == pytest.approx(sorted(want_i), abs=1e-5)
    assert sorted(genuine.tolist()) == pytest.approx(sorted(want_g), abs=1e-5)


def test_rates_at():
    from faceid.eval.verify import rates_at

    scores = np.array([0.9, 0.2, 0.6, 0.1])
    same = np.array([True, True, False, False])
    r = rates_at(scores, same, 0.5)
    assert (r["accuracy"], r["fmr"], r["fnmr"], r["fmr_pairs"], r["fnmr_pairs"]) == (0.5, 0.5, 0.5, 1, 1)


def test_calibration_people_are_outside_pairs_txt(optional_data):
    if optional_data is None:
        pytest.skip("../shared/data is not here")
    from faceid.eval.lfw import read_pairs
    from faceid.eval.verify import calibration_images

    root = optional_data / "lfw"
    people = calibration_images(root)
    pairs, _, _ = read_pairs(root)
    used = {p.parent.name for pair in pairs for p in pair}
    assert people and not (set(people) & used)


# -- over HTTP --------------------------------------------------------------------------------------


def test_http_verify(gallery_dir, photos):
    pytest.importorskip("fastapi")
    from test_server import make_client

    with make_client(gallery_dir) as client:

        def post(a, b, **params):
            files = [("a", (a.name, a.read_bytes())), ("b", (b.name, b.read_bytes()))]
            return client.post("/v1/verify", files=files, params=params)

        same = post(photos["red"], photos["red2"])
        assert same.status_code == 200 and same.json()["same"] is True
        assert post(photos["red"], photos["green"]).json()["same"] is False
        none = post(photos["none"], photos["red"])
        assert none.status_code == 422 and "none.png" in none.json()["error"]
        both = post(photos["red"], photos["green"], fmr=0.01, threshold=0.5)
        assert both.status_code == 400


def test_http_verify_boxes_are_the_photos_own_pixels(gallery_dir, tmp_path):
    """A photo the server decodes smaller (its working size) is still asked about and answered in
    its own pixels: the box chosen and the box returned are full-size."""
    pytest.importorskip("fastapi")
    from test_server import make_client

    a = save_png(tmp_path / "a.png", tile_image([RED], tile=40))
    big = save_png(tmp_path / "big.png", tile_image([GREEN, RED], tile=80))  # decoded at half size
    with make_client(gallery_dir, working_side=80) as client:
        files = [("a", (a.name, a.read_bytes())), ("b", (big.name, big.read_bytes()))]
        r = client.post("/v1/verify", files=files, params={"box_b": "80,0,80,80"})
    assert r.status_code == 200, r.text
    assert r.json()["same"] is True and r.json()["b"]["box"] == [80, 0, 80, 80]


# -- the real model -----------------------------------------------------------------------------------


@pytest.mark.model
def test_real_model_samples():
    """SFace (the default) on the committed samples: Obama twice is the same, Obama and Biden are not."""
    from faceid.errors import ModelNotFoundError
    from faceid.images import read_image
    from faceid.pipeline import Pipeline
    from faceid.verify import verify_files

    try:
        pipeline = Pipeline()
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    obama = SAMPLES / "people" / "barack_obama" / "obama.jpg"
    biden = SAMPLES / "people" / "joe_biden" / "biden.jpg"
    group = SAMPLES / "photos" / "obama_and_biden.jpg"
    assert verify_files(obama, biden, pipeline).same is False
    boxes = [f.detection.box for f in pipeline.faces(read_image(group).pixels)]
    assert len(boxes) == 2
    for person in (obama, biden):
        answers = [verify_files(person, group, pipeline, box_b=box).same for box in boxes]
        assert sorted(answers) == [False, True], (person.name, answers)
