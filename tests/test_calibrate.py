"""Calibration on the user's own photos, with fake models (the numbers follow from the fakes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli, save_png, tile_image

from faceid.calibrate import calibrate
from faceid.errors import FaceIDError
from faceid.identify import identify

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


@pytest.fixture
def folders(tmp_path):
    for name, colour in COLOURS.items():
        save_png(tmp_path / "enrolled" / name / "a.png", tile_image([colour]))
        save_png(tmp_path / "probes" / name / "b.png", tile_image([colour]))
    rng = np.random.default_rng(0)
    for i in range(150):  # distinct colours: strangers
        colour = tuple(int(c) for c in rng.integers(40, 255, 3))
        save_png(tmp_path / "strangers" / f"s{i:03d}.png", tile_image([colour]))
    return tmp_path


def test_threshold_holds_the_target_and_is_stored(folders, gallery, fake_pipeline):
    report = calibrate(
        gallery, folders / "enrolled", folders / "probes", folders / "strangers", fake_pipeline, target_fpir=0.01
    )
    assert report.probes == 3 and report.strangers == 150 and report.warnings == []
    assert report.fpir <= 0.01 and report.dir == 1.0
    assert gallery.get_setting("threshold") == report.threshold
    fpirs = [row["fpir"] for row in report.table]
    assert fpirs == sorted(fpirs, reverse=True)  # higher threshold, fewer strangers named
    (result,) = identify([folders / "probes" / "red" / "b.png"], gallery, fake_pipeline)
    assert result.params.source == "calibrated" and result.params.threshold == report.threshold
    assert result.faces[0].name == "red"


def test_dry_run_stores_nothing_and_few_strangers_warn(folders, gallery, fake_pipeline):
    for path in sorted((folders / "strangers").iterdir())[10:]:
        path.unlink()
    report = calibrate(
        gallery, folders / "enrolled", folders / "probes", folders / "strangers", fake_pipeline, store=False
    )
    assert gallery.get_setting("threshold") is None and not report.stored
    assert report.strangers == 10 and "only 10 stranger faces" in report.warnings[0]
    assert report.fpir == 0.0


def test_probe_folder_of_someone_not_enrolled(folders, gallery, fake_pipeline):
    save_png(folders / "probes" / "nobody" / "x.png", tile_image([(90, 90, 90)]))
    with pytest.raises(FaceIDError, match="'nobody' is not enrolled"):
        calibrate(gallery, folders / "enrolled", folders / "probes", folders / "strangers", fake_pipeline)


@pytest.mark.model
def test_cli_calibrate_json(tmp_path, real_pipeline, data):
    lfw = data / "lfw" / "lfw-deepfunneled"
    for person in ("Ann_Veneman", "Colin_Powell", "Tony_Blair"):
        images = sorted((lfw / person).glob("*.jpg"))
        for i, image in enumerate(images[:3]):
            target = tmp_path / ("enrolled" if i == 0 else "probes") / person / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(image.read_bytes())
    (tmp_path / "strangers").mkdir()
    for image in sorted(lfw.glob("A*/*_0001.jpg"))[:12]:
        if image.parent.name not in ("Ann_Veneman",):
            (tmp_path / "strangers" / image.name).write_bytes(image.read_bytes())
    result = cli(
        "calibrate",
        tmp_path / "enrolled",
        tmp_path / "probes",
        tmp_path / "strangers",
        *("--gallery", tmp_path / "g", "--json", "--fpir", "0.1"),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["probes"] == 6 and report["strangers"] >= 12 and report["dir"] == 1.0
    assert report["fpir"] <= 0.1


def test_cli_calibrate_makes_a_new_gallery_with_the_model_asked_for(folders, tmp_path):
    from conftest import cli
    from test_migrate import maker

    from faceid.embedding_key import EmbeddingKey
    from faceid.gallery import Gallery

    args = ("calibrate", folders / "enrolled", folders / "probes", folders / "strangers", "--json", "-q")
    result = cli(*args, "--model", "sface", "--gallery", tmp_path / "g", models=maker)
    assert result.exit_code == 0, result.output
    with Gallery(tmp_path / "g", create=False) as g:
        assert g.embedding_key == EmbeddingKey.for_model("sface") and g.get_setting("threshold") is not None
    again = cli(*args, "--model", "facenet-20170512-110547", "--gallery", tmp_path / "g", models=maker)
    assert again.exit_code == 1 and "refusing to mix" in again.stderr  # later commands follow the gallery
