"""The review loop from the command line, with the fake models: ``identify --remember`` on a new
gallery, ``clusters`` (text, JSON, contact sheets), ``name``, ``faces``, ``move``, ``merge``,
``forget``; and that naming a group makes the next ``identify`` name the person."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import fake_cli, gallery_address, save_png, tile_image

from faceid.gallery import Gallery

RED, BLUE, GREEN = (200, 30, 30), (30, 30, 200), (30, 200, 30)


@pytest.fixture
def photos(tmp_path):
    """Red in three photos, blue and green in two each; two photos hold two people."""
    folder = tmp_path / "archive"
    layout = {"p1": [RED, BLUE], "p2": [RED], "p3": [GREEN, RED], "p4": [BLUE], "p5": [GREEN]}
    for name, colours in layout.items():
        save_png(folder / f"{name}.png", tile_image(colours))
    return folder


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_review_loop_from_an_empty_gallery(tmp_path, photos, backend):
    g = gallery_address(backend, tmp_path / "new")  # does not exist: --remember creates it (both backends)
    result = fake_cli("identify", photos, "--remember", "--json", "-g", g)
    assert result.exit_code == 0, result.output
    out = lines(result)
    faces = [f for r in out for f in r["faces"]]
    assert len(faces) == 7 and {f["status"] for f in faces} == {"unknown"}
    assert sorted(f["kept_as"] for f in faces) == list(range(1, 8))

    result = fake_cli("clusters", "--json", "-g", g)
    assert result.exit_code == 0
    groups = lines(result)
    assert [c["size"] for c in groups] == [3, 2, 2]
    red = groups[0]
    assert {f["image"].rsplit("/", 1)[1] for f in red["faces"]} == {"p1.png", "p2.png", "p3.png"}
    assert all(len(f["box"]) == 4 for f in red["faces"])

    text = fake_cli("clusters", "-g", g)
    assert text.exit_code == 0 and text.stdout.splitlines()[0].startswith(f"cluster {red['cluster']}\t3 faces")

    sheets = tmp_path / "sheets"
    assert fake_cli("clusters", "--sheet", sheets, "-g", g).exit_code == 0
    from PIL import Image

    files = sorted(p.name for p in sheets.iterdir())
    assert files == sorted(f"cluster-{c['cluster']}.png" for c in groups)
    with Image.open(sheets / f"cluster-{red['cluster']}.png") as im:
        assert im.format == "PNG" and im.width == 3 * 128

    result = fake_cli("name", str(red["cluster"]), "Aunt Rosa", "-g", g)
    assert result.exit_code == 0 and result.stdout == f"named group {red['cluster']} Aunt Rosa (new): 3 faces\n"
    # the next identify names her, and keeps nothing of her again
    again = lines(fake_cli("identify", photos / "p2.png", "--remember", "--json", "-g", g))
    assert [(f["status"], f["name"], f.get("kept_as")) for f in again[0]["faces"]] == [("known", "Aunt Rosa", None)]

    listed = lines(fake_cli("faces", "Aunt Rosa", "--json", "-g", g))
    assert sorted(f["id"] for f in listed) == sorted(f["id"] for f in red["faces"])

    wrong = listed[0]["id"]
    assert fake_cli("move", str(wrong), "--unknown", "-g", g).stdout == "moved 1 faces to unknown\n"
    assert len(lines(fake_cli("faces", "Aunt Rosa", "--json", "-g", g))) == 2
    blue = groups[1]
    result = fake_cli("name", str(blue["cluster"]), "Rosa", "-g", g)
    assert result.exit_code == 0
    assert fake_cli("move", str(wrong), "Rosa", "-g", g).exit_code == 0
    assert fake_cli("merge", "Rosa", "Aunt Rosa", "-g", g).stdout == "merged Rosa into Aunt Rosa (3 faces)\n"
    people = lines(fake_cli("people", "--json", "-g", g))
    assert [(p["name"], p["faces"]) for p in people] == [("Aunt Rosa", 5)]

    assert fake_cli("forget", "--unknown", "--older-than", "30d", "-g", g).stdout == "forgot 0 unknown faces\n"
    assert fake_cli("forget", "--unknown", "-g", g).stdout == "forgot 2 unknown faces\n"
    assert fake_cli("clusters", "--json", "-g", g).stdout == ""
    assert fake_cli("gallery", "check", "-g", g).exit_code == 0
    log = [e["action"] for e in lines(fake_cli("log", "--json", "-g", g))]
    # one keep entry: the run's photos were kept in one change (a batch of up to 16)
    assert log.count("keep") == 1 and log.count("name") == 2 and "merge" in log and "forget" in log


def test_remember_twice_keeps_each_face_once(tmp_path, photos):
    g = tmp_path / "g"
    first = lines(fake_cli("identify", photos, "--remember", "--json", "-g", g))
    second = lines(fake_cli("identify", photos, "--remember", "--json", "-g", g))
    assert [f["kept_as"] for r in first for f in r["faces"]] == [f["kept_as"] for r in second for f in r["faces"]]
    with Gallery(g) as gallery:
        assert gallery.unknown.count() == 7


def test_without_remember_nothing_is_kept_and_no_gallery_is_made(tmp_path, photos):
    result = fake_cli("identify", photos, "-g", tmp_path / "none")
    assert result.exit_code == 1 and "no gallery here" in result.output
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["name", "999", "X"], 1, "no group 999"),
        (["name", "1", "a\x07b"], 1, "control characters"),
        (["move", "abc", "X"], 2, "face ids are numbers"),
        (["move", "12345", "--unknown"], 1, "no face with id 12345"),
        (["merge", "Nobody", "Someone"], 1, "no person named 'Nobody'"),
        (["forget"], 2, "--unknown"),
        (["forget", "--unknown", "--older-than", "3x"], 2, "--older-than"),
        (["faces", "Nobody"], 1, "no person named"),
    ],
)
def test_errors_are_one_line(tmp_path, photos, args, code, says):
    g = tmp_path / "g"
    assert fake_cli("identify", photos / "p1.png", "--remember", "-g", g).exit_code == 0
    result = fake_cli(*args, "-g", g)
    assert result.exit_code == code and says in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_every_face_is_kept_or_says_why_not(tmp_path, photos, backend):
    """A detection under the model's confidence bar is reported in JSON and in the summary line,
    never silently dropped; a second run counts the faces already kept."""
    from conftest import FakeDetector, FakeEmbedder, cli

    from faceid.cluster import keep_filters
    from faceid.pipeline import Pipeline
    from faceid.thresholds import GROUPING

    class Unsure(FakeDetector):
        def detect(self, image):  # the green face is found, but not surely
            out = super().detect(image)
            green = [image[d.box[1] + 5, d.box[0] + 5, 1] == 200 for d in out]
            return [dataclasses.replace(d, confidence=0.5) if g else d for d, g in zip(out, green)]

    def unsure_pipeline(key=None):
        return Pipeline.from_key(key, detector=Unsure(), embedder=FakeEmbedder())

    from faceid.embedding_key import EmbeddingKey

    bar = keep_filters(EmbeddingKey.for_model())[1]
    assert EmbeddingKey.for_model() in GROUPING and bar > 0.5
    g = gallery_address(backend, tmp_path / "g")
    result = cli("identify", photos, "--remember", "--json", "-g", g, models=unsure_pipeline)
    assert result.exit_code == 0, result.output
    faces = [f for r in lines(result) for f in r["faces"]]
    green = [f for f in faces if f["confidence"] == 0.5]
    assert len(green) == 2 and len(faces) == 7
    for f in green:
        assert f["kept_as"] is None and f["not_kept"] == f"confidence 0.50 below {bar:.2f}"
    assert all(isinstance(f["kept_as"], int) and f["not_kept"] is None for f in faces if f not in green)

    text = cli("identify", photos, "--remember", "-g", g, models=unsure_pipeline)
    assert text.exit_code == 0
    assert f"not kept: confidence 0.50 below {bar:.2f}" in text.stdout
    assert "faceid: 0 unknown faces kept, 5 already kept, 2 not kept (2 confidence below" in text.stderr


def test_corrections_say_what_they_did(tmp_path, photos, backend):
    g = gallery_address(backend, tmp_path / "g")
    faces = [f for r in lines(fake_cli("identify", photos, "--remember", "--json", "-g", g)) for f in r["faces"]]
    red = lines(fake_cli("clusters", "--json", "-g", g))[0]
    ids = [str(f["id"]) for f in red["faces"]]
    # moving to a name that is nobody yet says it makes that person; to them again, it does not
    first = fake_cli("move", *ids, "Rosa", "-g", g)
    assert first.exit_code == 0 and "moved 3 faces to Rosa (a new person: Rosa was nobody yet)" in first.stdout
    assert fake_cli("move", ids[0], "--unknown", "-g", g).exit_code == 0
    again = fake_cli("move", ids[0], "rosa", "-g", g)
    assert again.exit_code == 0 and "moved 1 faces to rosa" in again.stdout and "new person" not in again.stdout
    # every red face moved out of Rosa: a group of them, named Rosa, stays as it is, and says why
    assert fake_cli("move", *ids, "--unknown", "-g", g).exit_code == 0
    regrouped = lines(fake_cli("clusters", "--regroup", "--json", "-g", g))
    group = next(c for c in regrouped if c["cluster"] is not None and {str(f["id"]) for f in c["faces"]} == set(ids))
    named = fake_cli("name", str(group["cluster"]), "Rosa", "-g", g)
    assert named.exit_code == 1 and named.stderr.count("\n") == 1
    assert f"group {group['cluster']} left as it is: each of its 3 faces was moved out of Rosa" in named.stderr
    assert group in lines(fake_cli("clusters", "--json", "-g", g))
    # ids too large for the database: refused, no traceback. Out of range is a usage error (exit 2)
    # where the argument is parsed, one line through the console script (tests/test_cli_numbers.py);
    # an id in range that is no face is faceid's own one line (exit 1)
    for args in (("move", str(2**70), "Rosa"), ("name", str(2**70), "Rosa"), ("move", "0", "Rosa")):
        result = fake_cli(*args, "-g", g)
        one_line = result.exit_code == 2 or result.stderr.count("\n") == 1
        assert result.exit_code != 0 and one_line and "Traceback" not in result.output, args
    assert len(faces) == 7


def test_clusters_list_the_faces_in_no_group(tmp_path, backend):
    """Faces in no group are first-class: a JSON line with "cluster": null, a text line, a sheet."""
    folder = tmp_path / "archive"
    save_png(folder / "a.png", tile_image([RED]))
    save_png(folder / "b.png", tile_image([RED, (0, 0, 0)]))  # another photo (the black tile is no face)
    save_png(folder / "c.png", tile_image([BLUE]))  # one blue face: in no group
    g = gallery_address(backend, tmp_path / "g")
    assert fake_cli("identify", folder, "--remember", "-g", g).exit_code == 0
    out = lines(fake_cli("clusters", "--json", "-g", g))
    assert [c["cluster"] is None for c in out] == [False, True]
    loose = out[-1]
    assert loose["size"] == 1 and loose["faces"][0]["image"].endswith("c.png") and len(loose["faces"][0]["box"]) == 4
    text = fake_cli("clusters", "-g", g)
    assert text.stdout.splitlines()[-1] == f"no group\t1 faces\t{loose['faces'][0]['id']}"
    sheets = tmp_path / "sheets"
    assert fake_cli("clusters", "--sheet", sheets, "-g", g).exit_code == 0
    assert "no-group.png" in {p.name for p in sheets.iterdir()}


def test_suggest_offers_a_person_their_stragglers_and_remembers_answers(tmp_path, gallery_spec):
    """Rosa is enrolled; two kept faces look like her (cosine about 0.6, above SFace's suggest bar,
    a stranger does not): they are offered ("Is this Rosa?"); a rejection is remembered like a move
    out, an acceptance moves the face. Both backends."""
    import numpy as np
    from conftest import KEY

    from faceid.gallery import NewFace, open_gallery
    from faceid.thresholds import GROUPING

    rng = np.random.default_rng(5)
    rosa = rng.normal(size=KEY.dimension)
    rosa /= np.linalg.norm(rosa)

    def like(similarity: float, seed: int) -> np.ndarray:
        other = np.random.default_rng(seed).normal(size=KEY.dimension)
        other -= other @ rosa * rosa
        other /= np.linalg.norm(other)
        return (similarity * rosa + np.sqrt(1 - similarity**2) * other).astype(np.float32)

    def new(vector, photo):
        return NewFace(vector, photo.ljust(64, "0"), (0, 0, 90, 90), 0.99, f"/photos/{photo}.jpg")

    bar = GROUPING[KEY].suggest
    with open_gallery(gallery_spec) as g:
        g.add_faces("Rosa", [new(rosa.astype(np.float32), "a")], embedding_key=KEY)
        kept = g.unknown.keep(
            [new(like(bar + 0.2, 1), "b"), new(like(bar + 0.1, 2), "c"), new(like(bar - 0.2, 3), "d")],
            embedding_key=KEY,
        )
    b, c, d = kept.ids
    offers = lines(fake_cli("suggest", "--json", "-g", gallery_spec))
    assert [(o["face"], o["person"]) for o in offers] == [(b, "Rosa"), (c, "Rosa")]  # best first; d is below the bar
    assert offers[0]["similarity"] == pytest.approx(bar + 0.2, abs=1e-3)
    text = fake_cli("suggest", "Rosa", "-g", gallery_spec)
    assert text.exit_code == 0 and f"face {b}\tis this Rosa?" in text.stdout
    rejected = fake_cli("suggest", "Rosa", "--reject", str(b), "-g", gallery_spec)
    assert rejected.exit_code == 0 and "remembered" in rejected.stdout
    accepted = fake_cli("suggest", "Rosa", "--accept", str(c), "-g", gallery_spec)
    assert accepted.exit_code == 0 and "moved 1 faces to Rosa" in accepted.stdout
    assert lines(fake_cli("suggest", "--json", "-g", gallery_spec)) == []  # one rejected, one accepted
    assert sorted(f["id"] for f in lines(fake_cli("faces", "Rosa", "--json", "-g", gallery_spec)))[-1] == c
    nobody = fake_cli("suggest", "Nobody", "-g", gallery_spec)
    assert nobody.exit_code != 0 and nobody.stderr.count("\n") == 1


def test_accepting_one_face_of_a_group_does_not_bar_the_rest_of_it(gallery_spec):
    """b and c look like Rosa and like each other (one group): accepting b as Rosa keeps c offered
    to her (a yes about one face says nothing against its group; a `move` out of the group would
    bar c). Accept takes kept unknown faces and an enrolled person only. Both backends."""
    import numpy as np
    from conftest import KEY

    from faceid.errors import FaceNotFoundError, PersonNotFoundError
    from faceid.gallery import NewFace, open_gallery
    from faceid.thresholds import GROUPING

    rng = np.random.default_rng(7)
    rosa = rng.normal(size=KEY.dimension)
    rosa /= np.linalg.norm(rosa)
    other = rng.normal(size=KEY.dimension)
    other -= other @ rosa * rosa
    other /= np.linalg.norm(other)
    bar = GROUPING[KEY].suggest

    def new(similarity: float, photo: str, vector=None):
        v = vector if vector is not None else similarity * rosa + np.sqrt(1 - similarity**2) * other
        return NewFace(v.astype(np.float32), photo.ljust(64, "0"), (0, 0, 90, 90), 0.99, f"/photos/{photo}.jpg")

    with open_gallery(gallery_spec) as g:
        [a] = g.add_faces("Rosa", [new(1.0, "a", rosa)], embedding_key=KEY)
        b, c = g.unknown.keep([new(bar + 0.15, "b"), new(bar + 0.1, "c")], embedding_key=KEY).ids
        g.unknown.update_groups(leftovers=True)
        assert [sorted(f.id for f in grp.faces) for grp in g.unknown.groups()] == [[b, c]]  # one group
        with pytest.raises(PersonNotFoundError):
            g.unknown.accept([b], "Nobody")
        with pytest.raises(FaceNotFoundError, match="kept unknown face"):
            g.unknown.accept([a], "Rosa")  # an enrolled face is no suggestion
        assert g.unknown.accept([b], "Rosa") == [b]
        assert [(o.face.id, o.person) for o in g.unknown.suggestions()] == [(c, "Rosa")]
        assert g.check() == []  # the audit log replays the accept as the move it is
