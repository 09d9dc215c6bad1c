"""Backups a message can point to: `faceid gallery backup DEST` / `restore SRC`, consistent while
another process writes, atomic, and refused with one line when they cannot be done."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import KEY, ROOT, cli, gallery_address, needs_milvus, unit_vectors

from faceid.backup import backup_gallery, restore_gallery
from faceid.errors import GalleryCorruptError, GalleryError
from faceid.gallery import Gallery, NewFace, open_gallery


def add(g, name: str, seed: int, n: int = 1) -> np.ndarray:
    vectors = unit_vectors(seed, n)
    g.add_faces(
        name,
        [
            NewFace(v, f"{name}{seed}{i}".encode().hex().ljust(64, "0")[:64], (1, 2, 3, 4), 0.99, None)
            for i, v in enumerate(vectors)
        ],
        embedding_key=KEY,
    )
    return vectors


def people(spec) -> dict[str, int]:
    with open_gallery(spec, create=False) as g:
        return {p.name: p.faces for p in g.people()}


@pytest.mark.parametrize("backend", ["local", pytest.param("milvus-lite", marks=needs_milvus)])
def test_backup_then_restore_brings_back_people_faces_and_search(tmp_path, backend):
    spec = gallery_address(backend, tmp_path)
    with open_gallery(spec) as g:
        alice = add(g, "Alice", 1, 2)
        add(g, "Zoë Ñandú 李", 2)
    report = backup_gallery(spec, tmp_path / "backup")
    assert (report.people, report.faces) == (2, 3)
    assert people(tmp_path / "backup") == {"Alice": 2, "Zoë Ñandú 李": 1}  # a backup is a gallery
    if backend != "local":
        return  # a Milvus gallery is restored into a folder (the next test); not back into Milvus
    with open_gallery(spec) as g:
        g.search(alice[:1], k=1)  # an index cache of this generation exists
        add(g, "Bob", 3)
        g.remove("Alice")
    done = restore_gallery(tmp_path / "backup", spec)
    assert people(spec) == {"Alice": 2, "Zoë Ñandú 李": 1}
    assert people(done.previous) == {"Bob": 1, "Zoë Ñandú 李": 1}  # nothing lost: the state before is kept
    with open_gallery(spec, create=False) as g:
        scores, _ = g.search(alice[:1], k=1)
        assert scores[0][0] > 0.99  # the index was rebuilt for the restored faces
        assert g.check() == []


@needs_milvus
def test_a_milvus_backup_restores_into_a_folder_and_not_into_milvus(tmp_path):
    spec = gallery_address("milvus-lite", tmp_path)
    with open_gallery(spec) as g:
        add(g, "Alice", 1)
    backup_gallery(spec, tmp_path / "backup")
    restore_gallery(tmp_path / "backup", tmp_path / "local")
    assert people(tmp_path / "local") == {"Alice": 1}
    with pytest.raises(GalleryError, match="restore into a folder"):
        restore_gallery(tmp_path / "backup", spec)


def test_refusals_change_nothing(tmp_path):
    spec = tmp_path / "gallery"
    with Gallery(spec) as g:
        add(g, "Alice", 1)
    (tmp_path / "taken").mkdir()
    with pytest.raises(GalleryError, match="already exists"):
        backup_gallery(spec, tmp_path / "taken")
    with pytest.raises(GalleryError, match="no such folder"):
        backup_gallery(spec, tmp_path / "nowhere" / "b")
    with pytest.raises(GalleryError, match="no backup there"):
        restore_gallery(tmp_path / "taken", spec)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "gallery.db").write_bytes(b"SQLite format 3\0" + os.urandom(4000))
    with pytest.raises(GalleryCorruptError, match="gallery.db"):
        restore_gallery(tmp_path / "bad", spec)
    assert people(spec) == {"Alice": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "gallery", "taken"]  # no half copy left


WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    from conftest import KEY, unit_vectors
    from faceid.gallery import Gallery, NewFace
    with Gallery({gallery!r}) as g:
        i = 0
        end = time.monotonic() + {seconds}
        while time.monotonic() < end:
            # every person comes with exactly 3 faces, in one transaction
            vectors = unit_vectors(i, 3)
            faces = [NewFace(v, f"{{i:032d}}{{j:032d}}", (1, 2, 3, 4), 0.99, None) for j, v in enumerate(vectors)]
            g.add_faces(f"p{{i}}", faces, embedding_key=KEY)
            i += 1
            time.sleep(0.02)  # a busy server's pace, not a loop that never lets a reader in
    print(i)
    """
)


@pytest.mark.slow
def test_a_backup_is_one_committed_state_while_another_process_writes(tmp_path):
    spec = tmp_path / "gallery"
    with Gallery(spec) as g:
        add(g, "seed", 0, 3)
    script = WRITER.format(root=str(ROOT), tests=str(ROOT / "tests"), gallery=str(spec), seconds=8)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    counts = []
    try:
        deadline = time.monotonic() + 120
        while len(people(spec)) < 3 and time.monotonic() < deadline:  # the writer has started
            time.sleep(0.1)
        while writer.poll() is None and len(counts) < 50:  # backups while it writes
            backup_gallery(spec, tmp_path / f"b{len(counts)}")
            counts.append(people(tmp_path / f"b{len(counts)}"))
            time.sleep(0.2)
    finally:
        written = int(writer.communicate(timeout=120)[0])
    assert writer.returncode == 0
    for n, found in enumerate(counts):
        assert set(found.values()) == {3}, f"backup {n} holds a person with a partial enrolment"
        db = sqlite3.connect(tmp_path / f"b{n}" / "gallery.db")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM faces").fetchone()[0] == 3 * len(found)
        db.close()
    sizes = [len(c) for c in counts]
    assert len(counts) >= 3 and sizes == sorted(sizes), sizes
    assert any(1 < n < written + 1 for n in sizes), (sizes, written)  # taken while it wrote


def test_the_cli_backs_up_and_restores_and_the_messages_name_the_command(tmp_path):
    spec = tmp_path / "gallery"
    with Gallery(spec) as g:
        add(g, "Alice", 1)
    out = cli("gallery", "backup", tmp_path / "b", "--gallery", spec)
    assert out.exit_code == 0, out.stderr
    assert f"faceid gallery restore {tmp_path / 'b'} --gallery {spec}" in out.stdout
    again = cli("gallery", "backup", tmp_path / "b", "--gallery", spec)
    assert again.exit_code == 1 and again.stderr.strip().count("\n") == 0 and "already exists" in again.stderr
    with Gallery(spec) as g:
        g.remove("Alice")
    out = cli("gallery", "restore", tmp_path / "b", "--gallery", spec)
    assert out.exit_code == 0, out.stderr
    assert people(spec) == {"Alice": 1}
    assert "state before the restore is kept in" in out.stdout
    # a damaged database's message points at the command
    db = spec / "gallery.db"
    raw = bytearray(db.read_bytes())
    raw[100:4096] = os.urandom(3996)
    db.write_bytes(bytes(raw))
    broken = cli("gallery", "check", "--gallery", spec)
    assert broken.exit_code != 0 and "faceid gallery restore" in broken.stderr, broken.stderr


def test_backup_needs_an_existing_gallery(tmp_path):
    with pytest.raises(GalleryError):
        backup_gallery(tmp_path / "none", tmp_path / "b")
    assert not (tmp_path / "b").exists() and not (tmp_path / "none").exists()


def test_restore_into_a_new_folder_creates_the_gallery(tmp_path):
    with Gallery(tmp_path / "g") as g:
        add(g, "Alice", 1)
    backup_gallery(tmp_path / "g", tmp_path / "b")
    report = restore_gallery(tmp_path / "b", tmp_path / "new")
    assert people(tmp_path / "new") == {"Alice": 1} and report.previous == ""
