"""The command line: a thin shell over the library, with one-line errors and honest exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceid.cli import app
from faceid.embedding_key import EmbeddingKey
from faceid.gallery import Gallery, NewFace

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "faceid" / "samples"
KEY = EmbeddingKey.for_model()

runner = CliRunner()


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kw)


def _commands(typer_app, prefix=""):
    import typer.main

    group = typer.main.get_command(typer_app)
    out = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            out += [f"{name} {sub}" for sub in command.commands]
        else:
            out.append(name)
    return out


def test_every_command_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [c for c in _commands(app) if f"faceid {c}" not in readme]
    assert missing == []


@pytest.fixture
def small_gallery(tmp_path):
    rng = np.random.default_rng(0)
    with Gallery(tmp_path / "g") as g:
        for name in ("penny", "amy"):
            v = rng.normal(size=128).astype(np.float32)
            g.add_faces(name, [NewFace(v / np.linalg.norm(v), name * 8, (1, 2, 3, 4), 0.9)], embedding_key=KEY)
    return tmp_path / "g"


def test_people_rename_remove_log(small_gallery):
    result = invoke("people", "--gallery", small_gallery)
    assert result.exit_code == 0 and result.stdout.split() == ["amy", "1", "face", "penny", "1", "face"]
    assert invoke("rename", "penny", "Penny H.", "--gallery", small_gallery).exit_code == 0
    people = [json.loads(line) for line in invoke("people", "--json", "-g", small_gallery).stdout.splitlines()]
    assert [p["name"] for p in people] == ["amy", "Penny H."]
    assert invoke("remove", "Penny H.", "--gallery", small_gallery).exit_code == 0
    log = [json.loads(line) for line in invoke("log", "--json", "-g", small_gallery).stdout.splitlines()]
    assert [e["action"] for e in log] == ["enroll", "enroll", "rename", "remove"]


def test_gallery_from_environment(small_gallery, monkeypatch):
    monkeypatch.setenv("FACEID_GALLERY", str(small_gallery))
    assert "penny" in invoke("people").stdout


def test_errors_are_one_line_and_exit_1(small_gallery, tmp_path):
    result = invoke("remove", "nobody", "--gallery", small_gallery)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "no person named 'nobody'" in result.stderr
    result = invoke("people", "--gallery", tmp_path / "none")
    assert result.exit_code == 1 and "no gallery here" in result.stderr
    assert not (tmp_path / "none").exists()


def test_gallery_check_and_rebuild(small_gallery):
    assert invoke("gallery", "check", "-g", small_gallery).exit_code == 0
    assert "2 faces" in invoke("gallery", "rebuild-index", "-g", small_gallery).stdout


def test_enroll_needs_name_and_photos():
    result = invoke("enroll")
    assert result.exit_code == 2 and "NAME and PHOTOS" in result.stderr


def test_models_list_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEID_MODELS", str(tmp_path))
    result = invoke("models", "list")
    assert result.exit_code == 0 and "facenet-20170512-110547 (default): 128-d, missing" in result.stdout


@pytest.mark.model
def test_enroll_identify_json_and_annotate(tmp_path, real_pipeline):
    gallery = tmp_path / "g"
    result = invoke("enroll", "--folders", SAMPLES / "people", "--gallery", gallery, "--quiet")
    assert result.exit_code == 0, result.output
    assert len(re.findall(r"^added", result.stdout, re.M)) == 3
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    photos = SAMPLES / "photos"
    result = invoke("identify", photos, bad, "--json", "--annotate", tmp_path / "out", "--gallery", gallery)
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
    result = invoke("enroll", "someone", group, "--gallery", gallery)
    assert result.exit_code == 1 and "2 faces found" in result.stderr and "--largest" in result.stderr
    result = invoke("enroll", "someone", group, "--largest", "--gallery", gallery)
    assert result.exit_code == 0
    result = invoke("enroll", "someone", group, "--largest", "--gallery", gallery)
    assert result.exit_code == 0 and "duplicate" in result.stdout


def test_enroll_mirror_into_a_plain_gallery_is_refused(small_gallery):
    photo = SAMPLES / "people" / "grace_hopper" / "hopper.jpg"
    result = invoke("enroll", "grace", photo, "--mirror", "--gallery", small_gallery)
    assert result.exit_code == 1 and "mirror" in result.stderr and "refusing to mix" in result.stderr
    assert "grace" not in invoke("people", "--gallery", small_gallery).stdout
