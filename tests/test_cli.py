"""The command line: a thin shell over the library, with one-line errors and honest exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, cli, save_png, tile_image, unit_vectors

from faceid.embedding_key import EmbeddingKey
from faceid.errors import FaceIDError
from faceid.gallery import NewFace, open_gallery

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "faceid" / "samples"


@pytest.fixture
def small_gallery(gallery_spec):
    """Two people, once for each backend (the gallery's address: a folder, or milvus-lite:...)."""
    rng = np.random.default_rng(0)
    with open_gallery(gallery_spec) as g:
        for name in ("penny", "amy"):
            (v,) = unit_vectors(rng, 1)
            g.add_faces(name, [NewFace(v, name * 8, (1, 2, 3, 4), 0.9)], embedding_key=KEY)
    return gallery_spec


def test_people_rename_remove_log(small_gallery):
    result = cli("people", "--gallery", small_gallery)
    assert result.exit_code == 0 and result.stdout.split() == ["amy", "1", "face", "penny", "1", "face"]
    assert cli("rename", "penny", "Penny H.", "--gallery", small_gallery).exit_code == 0
    people = [json.loads(line) for line in cli("people", "--json", "-g", small_gallery).stdout.splitlines()]
    assert [p["name"] for p in people] == ["amy", "Penny H."]
    assert cli("remove", "Penny H.", "--gallery", small_gallery).exit_code == 0
    log = [json.loads(line) for line in cli("log", "--json", "-g", small_gallery).stdout.splitlines()]
    assert [e["action"] for e in log] == ["enroll", "enroll", "rename", "remove"]


def test_gallery_from_environment(small_gallery, monkeypatch):
    monkeypatch.setenv("FACEID_GALLERY", str(small_gallery))
    assert "penny" in cli("people").stdout


def test_errors_are_one_line_and_exit_1(small_gallery, tmp_path):
    result = cli("remove", "nobody", "--gallery", small_gallery)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "no person named 'nobody'" in result.stderr
    result = cli("people", "--gallery", tmp_path / "none")
    assert result.exit_code == 1 and "no gallery here" in result.stderr
    assert not (tmp_path / "none").exists()


def test_gallery_check_and_rebuild(small_gallery):
    assert cli("gallery", "check", "-g", small_gallery).exit_code == 0
    assert "2 faces" in cli("gallery", "rebuild-index", "-g", small_gallery).stdout


def test_enroll_needs_name_and_photos():
    result = cli("enroll")
    assert result.exit_code == 2 and "NAME and PHOTOS" in result.stderr


def test_models_list_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEID_MODELS", str(tmp_path))
    result = cli("models", "list")
    assert result.exit_code == 0
    facenet = next(line for line in result.stdout.splitlines() if line.startswith("facenet-20170512-110547"))
    assert facenet.startswith("facenet-20170512-110547: 128-d, tensorflow, licence: MIT")
    assert facenet.endswith("missing; get it with `faceid models pull`")
    sface = next(line for line in result.stdout.splitlines() if line.startswith("sface"))
    assert sface.startswith("sface (default): 128-d, opencv-dnn, licence: Apache-2.0")


@pytest.mark.model
def test_enroll_identify_json_and_annotate(tmp_path, real_pipeline):
    gallery = tmp_path / "g"
    result = cli("enroll", "--folders", SAMPLES / "people", "--gallery", gallery, "--quiet")
    assert result.exit_code == 0, result.output
    assert len(re.findall(r"^added", result.stdout, re.M)) == 3
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    photos = SAMPLES / "photos"
    result = cli("identify", photos, bad, "--json", "--annotate", tmp_path / "out", "--gallery", gallery)
    assert result.exit_code == 1  # one input failed, the others were still done
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {Path(line["image"]).name: line for line in lines}
    pair = by_name["obama_and_biden.jpg"]
    assert [f["name"] for f in pair["faces"]] == ["barack_obama", "joe_biden"]
    face = pair["faces"][0]
    assert set(face) >= {"box", "confidence", "name", "similarity", "status"} and len(face["box"]) == 4
    assert all(isinstance(v, int) for v in face["box"]) and face["status"] == "known"
    assert by_name["astronaut.jpg"]["faces"][0]["name"] is None
    assert by_name["astronaut.jpg"]["faces"][0]["status"] == "unknown"
    broken = by_name["broken.jpg"]
    assert broken["faces"] == [] and "broken.jpg" in broken["error"]
    assert (tmp_path / "out" / "obama_and_biden.jpg").is_file()
    assert pair["error"] is None


@pytest.mark.model
def test_enroll_refuses_group_photo_without_largest(tmp_path, real_pipeline):
    gallery = tmp_path / "g"
    group = SAMPLES / "photos" / "obama_and_biden.jpg"
    result = cli("enroll", "someone", group, "--gallery", gallery)
    assert result.exit_code == 1 and "2 faces found" in result.stderr and "--largest" in result.stderr
    result = cli("enroll", "someone", group, "--largest", "--gallery", gallery)
    assert result.exit_code == 0
    result = cli("enroll", "someone", group, "--largest", "--gallery", gallery)
    assert result.exit_code == 0 and "duplicate" in result.stdout


def test_enroll_mirror_into_a_plain_gallery_is_refused(small_gallery):
    photo = SAMPLES / "people" / "grace_hopper" / "hopper.jpg"
    result = cli("enroll", "grace", photo, "--mirror", "--gallery", small_gallery)
    assert result.exit_code == 1 and "mirror" in result.stderr and "refusing to mix" in result.stderr
    assert "grace" not in cli("people", "--gallery", small_gallery).stdout


@pytest.mark.model
def test_command_in_its_own_process_prints_everything_and_exits_with_its_status(tmp_path):
    """`python -m faceid` ends a TensorFlow command with os._exit (no interpreter tear-down):
    every line must still arrive, and the exit status must be the command's."""
    import subprocess
    import sys

    gallery = tmp_path / "g"
    command = [sys.executable, "-m", "faceid"]
    enrolled = subprocess.run(
        [*command, "enroll", "--folders", str(SAMPLES / "people"), "-g", str(gallery), "-q"],
        capture_output=True,
        text=True,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    assert len(enrolled.stdout.splitlines()) == 3
    photos = [SAMPLES / "photos" / "obama_and_biden.jpg", tmp_path / "missing.jpg"]
    found = subprocess.run(
        [*command, "identify", *map(str, photos), "-g", str(gallery), "--json"], capture_output=True, text=True
    )
    assert found.returncode == 1 and "1 of 2 inputs" in found.stderr
    lines = [json.loads(line) for line in found.stdout.splitlines()]
    assert [len(line["faces"]) for line in lines] == [2, 0]
    assert sorted(f["name"] for f in lines[0]["faces"]) == ["barack_obama", "joe_biden"]


def test_every_command_that_runs_the_models_gets_them_from_the_context(small_gallery, tmp_path):
    """The one seam for models: each command asks the context's pipeline maker (the tests' fakes
    come in this way), with the gallery's settings where there is a gallery."""
    asked = []

    def maker(key):
        asked.append(key)
        raise FaceIDError("no models in this test")

    photo = save_png(tmp_path / "photo.png", tile_image([(200, 40, 40)]))
    save_png(tmp_path / "lfw" / "lfw-deepfunneled" / "A" / "A_0001.jpg", tile_image([(200, 40, 40)]))
    for folder in ("enrolled", "probes", "strangers"):
        (tmp_path / folder).mkdir()
    cache = ("--cache", tmp_path / "cache.db")
    commands = {
        "enroll": ("enroll", "ann", photo, "--gallery", tmp_path / "new"),
        "identify": ("identify", photo, "--gallery", small_gallery),
        "calibrate": ("calibrate", *(tmp_path / f for f in ("enrolled", "probes", "strangers")), "-g", small_gallery),
        "eval lfw": ("eval", "lfw", "--data", tmp_path / "lfw", *cache),
        "eval lfw-openset": ("eval", "lfw-openset", "--data", tmp_path / "lfw", *cache),
        "demo": ("demo", "--out", tmp_path / "demo"),
    }
    for name, args in commands.items():
        result = cli(*args, models=maker)
        assert result.exit_code == 1 and "no models in this test" in result.stderr, (name, result.output)
    default = EmbeddingKey.for_model()
    assert asked == [default, KEY, KEY, default, default, None]  # a new gallery; the gallery's; faceid's defaults


def test_serve_refuses_a_model_before_serving(small_gallery):
    pytest.importorskip("fastapi")
    unknown = cli("serve", "--model", "nosuchmodel", "--gallery", small_gallery)
    assert unknown.exit_code == 1 and "unknown model 'nosuchmodel'" in unknown.stderr
    other = cli("serve", "--model", "facenet-20170512-110547", "--gallery", small_gallery)  # an SFace gallery (KEY)
    assert other.exit_code == 1 and "refusing to mix" in other.stderr
