"""Integrity: damaged gallery files are detected, reported with the repair, and never silently
used. The damage: a truncated index, an index from another gallery, an embedding edited in the
database, a faces row deleted or added behind faceid's back, a database that is not SQLite or
was cut short; and, separately, owner-only permissions and no pickle anywhere."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, fake_cli, save_png, tile_image, unit_vectors

from faceid.errors import GalleryCorruptError
from faceid.gallery import Gallery, NewFace

RED, GREEN = (200, 40, 40), (40, 200, 40)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sound(tmp_path):
    """A gallery of ann (red) and bob (green) enrolled through the CLI, searched once (index written)."""
    photos = tmp_path / "photos"
    for name, colour in (("ann", RED), ("bob", GREEN)):
        save_png(photos / f"{name}.png", tile_image([colour]))
        assert fake_cli("enroll", name, photos / f"{name}.png", "--gallery", tmp_path / "g").exit_code == 0
    assert fake_cli("identify", photos / "ann.png", "--gallery", tmp_path / "g").exit_code == 0
    with Gallery(tmp_path / "g") as g:
        assert g.check() == []
        index = tmp_path / "g" / f"index-{g.generation}.faiss"
    assert index.is_file()
    return tmp_path / "g", index, photos


def identify_ann(gallery: Path, photos: Path):
    result = fake_cli("identify", "--json", photos / "ann.png", "--gallery", gallery)
    assert result.exit_code == 0, result.stderr
    return result


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("faceid: warning:")]


def test_truncated_index_is_reported_not_used_and_repaired(sound):
    gallery, index, photos = sound
    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 2])
    result = identify_ann(gallery, photos)
    assert '"name": "ann"' in result.stdout  # the answer comes from the database
    (warning,) = warnings_of(result)
    assert "truncated" in warning and "faceid gallery check" in warning and "rebuild-index" in warning
    assert index.read_bytes() == data[: len(data) // 2]  # left for the repair, not silently replaced
    check = fake_cli("gallery", "check", "--gallery", gallery)
    assert check.exit_code == 1 and "truncated" in check.stderr and "rebuild-index" in check.stderr
    assert fake_cli("gallery", "rebuild-index", "--gallery", gallery).stdout == "index rebuilt: 2 faces\n"
    assert fake_cli("gallery", "check", "--gallery", gallery).stdout == "gallery is sound\n"
    assert warnings_of(identify_ann(gallery, photos)) == []


@pytest.mark.parametrize("size", [0, 1, 89, "one byte short", "one byte more"])
def test_index_of_wrong_size_is_caught_before_faiss_reads_it(sound, size):
    gallery, index, _ = sound
    data = index.read_bytes()
    cut = {"one byte short": data[:-1], "one byte more": data + b"\0"}.get(
        size, data[: size if isinstance(size, int) else 0]
    )
    index.write_bytes(cut)
    with Gallery(gallery) as g:
        scores, ids = g.search(unit_vectors(0, 1), 2)
        assert (ids >= 0).sum() == 2 and len(g.problems) == 1
    with Gallery(gallery) as g:
        assert any("expected" in p for p in g.check())


def test_index_from_another_gallery_of_the_same_size(sound, tmp_path):
    gallery, index, photos = sound
    with Gallery(tmp_path / "other") as other:  # the same face ids (1, 2), other vectors
        other.add_faces(
            "x", [NewFace(v, f"x{i}", (0, 0, 1, 1), 0.9) for i, v in enumerate(unit_vectors(9, 2))], embedding_key=KEY
        )
        other.search(unit_vectors(9, 1), 1)
        foreign = next((tmp_path / "other").glob("index-*.faiss")).read_bytes()
    assert len(foreign) == len(index.read_bytes())
    index.write_bytes(foreign)
    result = identify_ann(gallery, photos)
    assert '"name": "ann"' in result.stdout
    (warning,) = warnings_of(result)
    assert "2 of its 2 vectors differ" in warning
    check = fake_cli("gallery", "check", "--gallery", gallery)
    assert check.exit_code == 1 and "vectors differ" in check.stderr


def test_an_embedding_edited_in_the_database(sound):
    gallery, index, photos = sound
    with sqlite3.connect(gallery / "gallery.db") as con:  # behind faceid's back: no new generation
        con.execute("UPDATE faces SET embedding = ? WHERE id = 2", (unit_vectors(5, 1)[0].tobytes(),))
    check = fake_cli("gallery", "check", "--gallery", gallery)
    assert check.exit_code == 1
    assert "1 of its 2 vectors differ from the database's" in check.stderr and "edited" in check.stderr
    result = identify_ann(gallery, photos)
    assert len(warnings_of(result)) == 1


def test_an_embedding_edited_to_garbage(sound):
    gallery, _, _ = sound
    with sqlite3.connect(gallery / "gallery.db") as con:
        con.execute("UPDATE faces SET embedding = ? WHERE id = 1", (np.full(128, np.nan, np.float32).tobytes(),))
    with Gallery(gallery) as g:
        problems = g.check()
    assert any("not finite unit vectors" in p for p in problems)
    with sqlite3.connect(gallery / "gallery.db") as con:
        con.execute("UPDATE faces SET embedding = ? WHERE id = 1", (b"short",))
    with Gallery(gallery) as g:
        assert any("do not have 128 float32 values" in p for p in g.check())
        with pytest.raises(GalleryCorruptError, match="gallery check"):
            g.search(unit_vectors(0, 1), 1)


def test_a_kept_unknown_faces_embedding_edited_to_garbage(tmp_path):
    """Kept unknown faces are never in the index, so only the check of the database can find them."""
    with Gallery(tmp_path / "g") as g:
        vectors = unit_vectors(3, 3)
        faces = [
            NewFace(v, f"{i:064x}", (0, 0, 90, 90), 0.99, image_path=f"/photos/{i}.jpg") for i, v in enumerate(vectors)
        ]
        kept = g.unknown.keep(faces, embedding_key=KEY, group=False)
        assert g.check() == []
    with sqlite3.connect(tmp_path / "g" / "gallery.db") as con:
        bad = np.full(128, np.nan, np.float32).tobytes()
        con.execute("UPDATE faces SET embedding = ? WHERE id = ?", (bad, kept.ids[1]))
    with Gallery(tmp_path / "g") as g:
        assert any("1 kept unknown faces' embeddings are not finite unit vectors" in p for p in g.check())


@pytest.mark.parametrize("index_file", [True, False])
def test_a_faces_row_deleted_behind_faceids_back(sound, index_file):
    gallery, index, _ = sound
    if not index_file:
        index.unlink()
    with sqlite3.connect(gallery / "gallery.db") as con:
        con.execute("DELETE FROM faces WHERE id = 2")
    result = fake_cli("gallery", "check", "--gallery", gallery)
    assert result.exit_code == 1
    assert "1 face the audit log records as enrolled missing" in result.stderr  # with or without an index
    assert ("holds other faces than the database" in result.stderr) == index_file


def test_a_faces_row_added_behind_faceids_back(sound):
    gallery, _, _ = sound
    with sqlite3.connect(gallery / "gallery.db") as con:
        con.execute(
            "INSERT INTO faces (person_id, embedding, image_path, image_sha256, box, confidence, model, created_at) "
            "VALUES (1, ?, NULL, 'x', '[0,0,1,1]', 1.0, 'm', 'now')",
            (unit_vectors(6, 1)[0].tobytes(),),
        )
    result = fake_cli("gallery", "check", "--gallery", gallery)
    assert result.exit_code == 1 and "1 face with no enrolment in the audit log" in result.stderr


def test_renames_and_removals_keep_the_audit_replay_consistent(tmp_path):
    with Gallery(tmp_path / "g") as g:
        for i, name in enumerate(["Ann", "bob", "Cy"]):
            g.add_faces(name, [NewFace(unit_vectors(i, 1)[0], f"s{i}", (0, 0, 1, 1), 0.9)], embedding_key=KEY)
        g.add_faces(
            "ann", [NewFace(unit_vectors(7, 1)[0], "s7", (0, 0, 1, 1), 0.9)], embedding_key=KEY
        )  # Ann, any case
        g.rename("ANN", "anne")
        g.rename("bob", "Ann")  # a name that was someone else's
        g.remove("cy")
        g.add_faces("CY", [NewFace(unit_vectors(8, 1)[0], "s8", (0, 0, 1, 1), 0.9)], embedding_key=KEY)
        assert g.check() == []


def test_a_database_that_is_not_sqlite(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "gallery.db").write_bytes(b"not sqlite at all" * 300)
    result = fake_cli("people", "--gallery", tmp_path / "g")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "not a readable SQLite database" in result.stderr and "backup" in result.stderr


def test_a_database_cut_short(sound):
    gallery, _, photos = sound
    db = gallery / "gallery.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    for args in (["people"], ["log"], ["gallery", "check"], ["identify", photos / "ann.png"], ["remove", "ann"]):
        result = fake_cli(*args, "--gallery", gallery)
        assert result.exit_code == 1, (args, result.stdout)
        lines = [line for line in result.stderr.splitlines() if line]
        assert len(lines) == 1 and ("damaged" in lines[0] or "integrity" in lines[0] or "readable" in lines[0]), lines


def test_a_flipped_byte_in_the_database(sound):
    gallery, _, _ = sound
    db = gallery / "gallery.db"
    data = bytearray(db.read_bytes())
    with sqlite3.connect(db) as con:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
    problems_seen = 0
    for page in range(1, len(data) // page_size):  # damage the b-tree header of each page in turn
        damaged = bytearray(data)
        damaged[page * page_size] ^= 0xFF
        db.write_bytes(bytes(damaged))
        try:
            with Gallery(gallery) as g:
                problems_seen += bool(g.check())
        except GalleryCorruptError:
            problems_seen += 1
    db.write_bytes(bytes(data))
    assert problems_seen == len(data) // page_size - 1  # every page's damage was seen


# -- files ----------------------------------------------------------------------------------------------


def test_files_are_owner_only_whatever_the_umask_including_journals_and_temp_files(tmp_path, monkeypatch):
    seen: dict[str, int] = {}
    replace = os.replace

    def recording_replace(src, dst, *args, **kwargs):  # the index temp file, just before its rename
        seen[os.path.basename(src)] = stat.S_IMODE(os.stat(src).st_mode)
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", recording_replace)
    old_umask = os.umask(0)
    try:
        with Gallery(tmp_path / "g") as g:
            g.add_faces("a", [NewFace(unit_vectors(1, 1)[0], "a", (0, 0, 1, 1), 0.9)], embedding_key=KEY)
            with g.backend.store.write():  # a write in progress: SQLite's journal exists now
                g.backend.db.execute("INSERT INTO people (name, created_at) VALUES ('b', 'now')")
                journal = tmp_path / "g" / "gallery.db-journal"
                seen[journal.name] = stat.S_IMODE(journal.stat().st_mode)
            g.search(unit_vectors(2, 1), 1)
            g.remove("b")
    finally:
        os.umask(old_umask)
    assert any(name.startswith(".index-") for name in seen) and "gallery.db-journal" in seen
    assert set(seen.values()) == {0o600}, seen
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == 0o700
    for f in (tmp_path / "g").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_nothing_is_loaded_with_pickle():
    risky = re.compile(
        r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|shelve|marshal)\b|\bpickle\.|allow_pickle\s*=\s*True"
        r"|\b(np|numpy)\.load\(|torch\.load\(|yaml\.load\(",
        re.M,
    )
    found = {
        str(path.relative_to(ROOT)): risky.findall(path.read_text())
        for path in sorted((ROOT / "faceid").rglob("*.py"))
        if risky.search(path.read_text())
    }
    assert found == {}
