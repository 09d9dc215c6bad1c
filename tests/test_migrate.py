"""``faceid gallery migrate``: every face re-embedded with another model from its chip (or its photo),
people, ids and the audit log kept; atomic, so a kill leaves the old gallery as it was."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeDetector, FakeEmbedder, cli, save_png, tile_image

from faceid.embedding_key import EmbeddingKey
from faceid.enroll import enroll
from faceid.gallery import Gallery, NewFace
from faceid.migrate import MigrationError, migrate_gallery
from faceid.models import get_spec
from faceid.pipeline import Pipeline

OLD = EmbeddingKey.for_model("facenet-20170512-110547")
NEW = EmbeddingKey.for_model("sface")


class OtherModel(FakeEmbedder):
    """Another 'model': the fake embedder's vectors turned by a fixed rotation (same people, other vectors)."""

    def __init__(self, input_size: int) -> None:
        super().__init__(128)
        self.input_size = input_size
        q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(128, 128)))
        self.turn = q.astype(np.float32)

    def embed(self, crops):
        return super().embed(crops) @ self.turn


def maker(key):
    """Pipelines with the fake detector; the fake embedder for FaceNet's key, :class:`OtherModel` for others."""
    if key is None or key.model == OLD.model:
        return Pipeline.from_key(key, detector=FakeDetector(), embedder=FakeEmbedder())
    return Pipeline.from_key(key, detector=FakeDetector(), embedder=OtherModel(get_spec(key.model).input_size))


COLOURS = {"Ann": [(200, 30, 30), (190, 40, 30)], "Bob": [(30, 200, 30)], "Cy": [(30, 30, 200)]}


@pytest.fixture
def old_gallery(tmp_path):
    """A FaceNet gallery: Ann (2 photos), Bob (renamed from Rob), Cy; a calibrated threshold; photos kept."""
    folder = tmp_path / "gallery"
    with Gallery(folder) as g:
        for name, colours in COLOURS.items():
            photos = [save_png(tmp_path / "photos" / f"{name}-{i}.png", tile_image([c])) for i, c in enumerate(colours)]
            enroll(g, "Rob" if name == "Bob" else name, photos, maker(OLD))
        g.rename("Rob", "Bob")
        g.set_setting("threshold", 0.5)
        assert g.embedding_key == OLD
    return folder


def snapshot(folder: Path) -> dict:
    with Gallery(folder, create=False) as g:
        ids, owners, vectors = g.embeddings()
        return {
            "key": g.embedding_key,
            "people": [(p.id, p.name, p.faces) for p in g.people()],
            "faces": [(f.id, f.person, f.image_sha256) for f in g.faces()],
            "ids": ids.tolist(),
            "vectors": vectors,
            "log": [(e.id, e.action, e.person) for e in g.audit_log()],
            "check": g.check(),
        }


def named(folder: Path, colour) -> str | None:
    """Who the gallery names in a photo of one face of ``colour``, with the gallery's own model."""
    from faceid.identify import identify

    photo = save_png(folder.parent / "probe.png", tile_image([colour]))
    with Gallery(folder, create=False) as g:
        (result,) = identify([photo], g, maker(g.embedding_key), threshold=0.9)
    photo.unlink()
    return result.faces[0].name


def test_migrate_in_place_keeps_people_ids_and_log_and_uses_the_new_model(old_gallery, tmp_path):
    before = snapshot(old_gallery)
    report = migrate_gallery(old_gallery, maker(NEW))
    after = snapshot(old_gallery)
    assert (report.faces, report.from_chips, report.from_photos, report.unmigrated) == (4, 4, 0, [])
    assert report.threshold_dropped
    assert after["key"] == NEW and after["check"] == []
    for field in ("people", "faces", "ids"):
        assert after[field] == before[field]
    assert after["log"][: len(before["log"])] == before["log"]
    assert after["log"][-1][1:] == ("migrate", None)
    # the embeddings are the new model's: each is the old one turned by OtherModel's rotation
    assert np.allclose(after["vectors"], before["vectors"] @ OtherModel(112).turn, atol=1e-5)
    assert named(old_gallery, (30, 200, 30)) == "Bob" and named(old_gallery, (200, 30, 30)) == "Ann"
    with Gallery(old_gallery, create=False) as g:
        assert g.get_setting("threshold") is None  # the old model's threshold does not hold for the new one
        entry = g.audit_log()[-1]
        assert entry.detail["old"] == OLD.describe() and entry.detail["new"] == NEW.describe()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery", "photos"]  # the old copy is gone


def test_migrate_to_a_new_folder_leaves_the_old_gallery_alone(old_gallery, tmp_path):
    before = snapshot(old_gallery)
    report = migrate_gallery(old_gallery, maker(NEW), to=tmp_path / "sface-gallery")
    assert report.destination == str(tmp_path / "sface-gallery")
    unchanged = snapshot(old_gallery)
    assert unchanged["key"] == OLD and np.array_equal(unchanged["vectors"], before["vectors"])
    assert snapshot(tmp_path / "sface-gallery")["key"] == NEW
    assert oct((tmp_path / "sface-gallery").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "sface-gallery" / "gallery.db").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(MigrationError, match="already exists"):
        migrate_gallery(old_gallery, maker(NEW), to=tmp_path / "sface-gallery")
    with pytest.raises(MigrationError, match="already made with"):
        migrate_gallery(tmp_path / "sface-gallery", maker(NEW))


def add_without_chip(folder: Path, photo: Path, name: str) -> None:
    """Enrol the one face of ``photo`` as a gallery made before chips would have."""
    pixels = tile_image([(120, 120, 20)])
    save_png(photo, pixels)
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    vector = FakeEmbedder().embed(pixels[None, 8:32, 8:32])[0]
    with Gallery(folder) as g:
        g.add_faces(name, [NewFace(vector, sha, (0, 0, 40, 40), 0.99, str(photo))], embedding_key=OLD)


def test_a_face_without_chip_is_migrated_from_its_photo_and_gets_a_chip(old_gallery, tmp_path):
    add_without_chip(old_gallery, tmp_path / "old" / "dee.png", "Dee")
    report = migrate_gallery(old_gallery, maker(NEW))
    assert (report.from_chips, report.from_photos) == (4, 1)
    with Gallery(old_gallery, create=False) as g:
        dee = g.faces("Dee")[0]
        assert g.face_chip(dee.id) is not None
    assert named(old_gallery, (120, 120, 20)) == "Dee"


def test_a_face_it_cannot_migrate_stops_it_unless_dropped(old_gallery, tmp_path):
    photo = tmp_path / "old" / "dee.png"
    add_without_chip(old_gallery, photo, "Dee")
    save_png(photo, tile_image([(120, 120, 21)]))  # the photo is no longer the one enrolled
    before = snapshot(old_gallery)
    with pytest.raises(MigrationError, match="1 of 5 faces cannot be re-embedded") as caught:
        migrate_gallery(old_gallery, maker(NEW))
    assert [(u.person, "changed" in u.reason) for u in caught.value.unmigrated] == [("Dee", True)]
    after = snapshot(old_gallery)
    assert after["key"] == OLD and np.array_equal(after["vectors"], before["vectors"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery", "old", "photos"]  # no build folder left

    photo.unlink()
    result = cli("gallery", "migrate", "--model", "sface", "--gallery", old_gallery, models=maker)
    assert result.exit_code == 1
    assert "not migrated: face 5 of Dee: no chip, and its photo cannot be read" in result.stderr
    result = cli("gallery", "migrate", "--model", "sface", "--drop-unmigrated", "--gallery", old_gallery, models=maker)
    assert result.exit_code == 0, result.stderr
    assert "migrated 4 faces to sface" in result.stdout and "dropped: face 5 of Dee" in result.stderr
    assert "calibrate" in result.stdout
    after = snapshot(old_gallery)
    assert after["key"] == NEW and after["check"] == [] and 5 not in after["ids"]
    assert after["log"][-2][1:] == ("remove-face", "Dee") and after["log"][-1][1] == "migrate"


def test_cli_json(old_gallery):
    result = cli("gallery", "migrate", "--model", "sface", "--json", "--gallery", old_gallery, models=maker)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["faces"] == 4 and report["new_key"] == NEW.describe() and report["unmigrated"] == []
    result = cli("gallery", "migrate", "--model", "nosuchmodel", "--gallery", old_gallery, models=maker)
    assert result.exit_code == 1 and result.stderr.startswith("faceid: error:")
    result = cli(
        "gallery", "migrate", "--model", "sface", "--to", old_gallery / "no" / "new", "-g", old_gallery, models=maker
    )
    assert result.exit_code == 1 and "no such folder" in result.stderr and result.stderr.count("\n") == 1


# -- a kill mid-way ---------------------------------------------------------------------------------


def _migrate_slowly(folder: str, ready) -> None:  # in a child process
    def progress(done: int) -> None:
        ready.set()
        time.sleep(60)

    migrate_gallery(folder, maker(NEW), progress=progress)


def test_a_migration_killed_mid_way_leaves_the_old_gallery_usable(old_gallery, tmp_path):
    import multiprocessing

    before = snapshot(old_gallery)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_migrate_slowly, args=(str(old_gallery), ready))
    child.start()
    try:
        assert ready.wait(60), "the migration did not start"
    finally:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    builds = [p.name for p in tmp_path.iterdir() if ".migrating-" in p.name]
    assert builds == [f".gallery.migrating-{child.pid}"]  # killed while re-embedding into the copy
    after = snapshot(old_gallery)
    for field in ("key", "people", "faces", "ids", "log", "check"):
        assert after[field] == before[field]
    assert np.array_equal(after["vectors"], before["vectors"]) and after["check"] == []
    assert named(old_gallery, (30, 200, 30)) == "Bob"
    migrate_gallery(old_gallery, maker(NEW))  # a second run finishes and sweeps the killed one's folder
    assert snapshot(old_gallery)["key"] == NEW
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery", "photos"]


def test_a_change_made_during_the_migration_stops_it(old_gallery, monkeypatch):
    import faceid.migrate as migrate

    real = migrate._rebuild

    def rebuild_then_enrol(*args, **kwargs):
        result = real(*args, **kwargs)
        with Gallery(old_gallery) as g:
            g.rename("Cy", "Cyd")
        return result

    monkeypatch.setattr(migrate, "_rebuild", rebuild_then_enrol)
    with pytest.raises(MigrationError, match="changed while it was being migrated"):
        migrate_gallery(old_gallery, maker(NEW))
    assert snapshot(old_gallery)["key"] == OLD and "Cyd" in [p[1] for p in snapshot(old_gallery)["people"]]


def test_kept_unknown_faces_are_migrated_from_their_chips_and_stay_unknown(old_gallery, tmp_path):
    import sqlite3

    from faceid.chips import make_chip

    pixels = tile_image([(90, 160, 60), (160, 60, 90)])
    detections = FakeDetector().detect(pixels)
    vectors = FakeEmbedder().embed(np.stack([pixels[8:32, 8 + 40 * i : 32 + 40 * i] for i in range(2)]))
    faces = [
        NewFace(v, "c" * 64, d.box, d.confidence, None, chip=make_chip(pixels, d)) for v, d in zip(vectors, detections)
    ]
    with Gallery(old_gallery) as g:
        kept = g.unknown.keep(faces, embedding_key=OLD, group=False, min_size=0, min_confidence=0)
        assert len([i for i in kept.ids if i is not None]) == 2

    def unknown_rows():
        with sqlite3.connect(old_gallery / "gallery.db") as db:
            rows = db.execute("SELECT id, embedding FROM faces WHERE person_id IS NULL ORDER BY id").fetchall()
        return [r[0] for r in rows], np.stack([np.frombuffer(r[1], np.float32) for r in rows])

    ids, before = unknown_rows()
    report = migrate_gallery(old_gallery, maker(NEW))
    assert (report.faces, report.from_chips, report.unmigrated) == (6, 6, [])
    again, after = unknown_rows()
    assert again == ids and np.allclose(after, before @ OtherModel(112).turn, atol=1e-5)
    assert snapshot(old_gallery)["check"] == []
