"""Concurrency: processes enrolling, removing and identifying on one gallery at once, and the
bounded wait for another process's lock.

The big test runs 4 writer processes (two enrolling their own 50 photos each, two racing to
enrol the same 50 photos), a remover and 2 readers through the real ``enroll``/``identify`` code
with the fake detector and embedder. Every photo must land exactly once, readers must never see
part of an enrolment, and no SQLite error may reach any of them. ``FACEID_WRITERS`` and
``FACEID_PHOTOS`` scale it (``make stress``).
"""

from __future__ import annotations

import fcntl
import inspect
import os
import random
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import workers
from conftest import KEY, cli, save_png, tile_image, unit_vectors

from faceid.enroll import enroll
from faceid.errors import GalleryBusyError
from faceid.gallery import Gallery
from faceid.images import read_image

WRITERS = int(os.environ.get("FACEID_WRITERS", "4"))  # half of them race on the same photos
PHOTOS = int(os.environ.get("FACEID_PHOTOS", "50"))  # per writer
READERS = 2
GONE = 20


def _colours():
    """Distinct colours whose fake embeddings are distinct (the fake embedder quantises by 16)."""
    for r in range(8, 256, 16):
        for g in range(8, 256, 16):
            for b in range(8, 256, 16):
                yield (r, g, b)


def _photo_set(folder: Path, count: int, colours) -> list[str]:
    return [str(save_png(folder / f"{i:04d}.png", tile_image([next(colours)]))) for i in range(count)]


def _batches(photos: list[str], person_of, sizes: list[int]) -> list[tuple[str, list[str]]]:
    """Split photos into enrolment batches of one person each, with the given sizes in turn."""
    by_person: dict[str, list[str]] = {}
    for p in photos:
        by_person.setdefault(person_of(p), []).append(p)
    out = []
    k = 0
    for person, theirs in sorted(by_person.items()):
        while theirs:
            size = sizes[k % len(sizes)]
            out.append((person, theirs[:size]))
            theirs = theirs[size:]
            k += 1
    return out


@pytest.mark.slow
def test_writers_readers_and_a_remover_at_once(tmp_path, fake_pipeline):
    started = time.perf_counter()
    gallery_dir = tmp_path / "gallery"
    colours = iter(_colours())
    stable = {p: f"stable {i}" for i, p in enumerate(_photo_set(tmp_path / "stable", 5, colours))}
    gone = _photo_set(tmp_path / "gone", GONE, colours)
    own = [_photo_set(tmp_path / f"own{w}", PHOTOS, colours) for w in range(WRITERS // 2)]
    shared = _photo_set(tmp_path / "shared", PHOTOS, colours)

    sha = {p: read_image(p).sha256 for p in list(stable) + gone + shared + [p for ps in own for p in ps]}
    vector_tags = {
        fake_pipeline.faces(read_image(p).pixels)[0].embedding.tobytes(): sha[p]
        for p in list(stable) + gone + shared + [p for ps in own for p in ps]
    }
    with Gallery(gallery_dir) as g:
        for photo, person in stable.items():
            enroll(g, person, [photo], fake_pipeline)
        for i, photo in enumerate(gone):
            enroll(g, f"gone {i}", [photo], fake_pipeline)
        g.search(np.zeros((1, 128), np.float32), 1)  # an index file for the readers to find

    rng = random.Random(7)
    plans = []
    for w, photos in enumerate(own):
        plans.append(_batches(photos, lambda p, w=w: f"writer {w} person {int(Path(p).stem) % 4}", [1, 2, 3, 4, 5]))
    racing = _batches(shared, lambda p: f"shared {int(Path(p).stem) % 5}", [rng.randint(1, 5) for _ in range(9)])
    for _ in range(WRITERS - len(own)):  # these race: the same photos in the same order, started together
        plans.append(racing)
    own_batches = [[sha[p] for p in photos] for plan in plans[: len(own)] for _, photos in plan]

    ctx = workers.forkserver()
    queue, start, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=workers.writer, args=(str(gallery_dir), plan, queue, start)) for plan in plans]
    procs.append(
        ctx.Process(target=workers.remover, args=(str(gallery_dir), [f"gone {i}" for i in range(GONE)], queue, start))
    )
    readers = [
        ctx.Process(
            target=workers.reader,
            args=(str(gallery_dir), stable, own_batches, [sha[p] for p in shared], vector_tags, queue, start, stop),
        )
        for _ in range(READERS)
    ]
    for p in procs + readers:
        p.start()
    start.set()
    reports = []
    for _ in procs:  # writers and the remover
        reports.append(queue.get(timeout=180))
    stop.set()
    for _ in readers:
        reports.append(queue.get(timeout=180))
    for p in procs + readers:
        p.join(30)
        assert p.exitcode == 0

    errors = [e for r in reports for e in r["errors"]]
    assert errors == []
    assert "database is locked" not in repr(reports)
    reader_results = [r["result"] for r in reports if r["role"] == "reader"]
    assert [v for r in reader_results for v in r["violations"]] == []

    outcomes = [o for r in reports if r["role"] == "writer" for o in r["result"]]
    statuses: dict[str, list[str]] = {}
    for _, image, status, _ in outcomes:
        statuses.setdefault(image, []).append(status)
    for photos in own:
        assert all(statuses[p] == ["added"] for p in photos)
    racers = WRITERS - len(own)
    for p in shared:  # exactly one of the racing writers added it; the others saw a duplicate
        assert sorted(statuses[p]) == ["added"] + ["duplicate"] * (racers - 1), (p, statuses[p])

    with Gallery(gallery_dir) as g:
        faces = g.faces()
        count = {}
        for f in faces:
            count[f.image_sha256] = count.get(f.image_sha256, 0) + 1
        assert all(count.get(sha[p]) == 1 for p in list(stable) + shared + [p for ps in own for p in ps])
        assert not any(sha[p] in count for p in gone)
        assert len(faces) == len(stable) + len(shared) + sum(len(ps) for ps in own)
        people = {p.name: p.faces for p in g.people()}
        assert all(people[f"shared {k}"] == PHOTOS // 5 for k in range(5))
        assert not any(name.startswith("gone") for name in people)
        assert g.check() == [] and g.problems == []
        ids, _, vectors = g.embeddings()
        _, found = g.search(vectors, 1)
        assert np.array_equal(found[:, 0], ids)
    blobs = [f.read_bytes() for f in gallery_dir.iterdir()]
    for photo in gone:
        vector = fake_pipeline.faces(read_image(photo).pixels)[0].embedding.tobytes()
        assert not any(vector in b or sha[photo].encode() in b for b in blobs)

    reader_ops = {k: sum(r["counts"][k] for r in reader_results) for k in reader_results[0]["counts"]}
    print(
        f"\nconcurrency: {len(outcomes)} enrolment outcomes from {WRITERS} writers "
        f"({sum(len(p) for p in plans)} enrol calls), {GONE} removals, reader operations {reader_ops}, "
        f"in {time.perf_counter() - started:.1f} s"
    )
    assert reader_ops["identify"] >= READERS and reader_ops["check"] >= READERS


# -- the bounded wait ------------------------------------------------------------------------------------


def _unit(seed: int, n: int = 1) -> np.ndarray:
    return unit_vectors(seed, n)


def _faces(tag: str, n: int = 1):
    from faceid.gallery import NewFace

    return [
        NewFace(v, f"{tag}-{i}", (0, 0, 1, 1), 0.9, f"/p/{tag}-{i}.jpg")
        for i, v in enumerate(_unit(hash(tag) % 1000, n))
    ]


@pytest.fixture
def populated(tmp_path):
    with Gallery(tmp_path / "g") as g:
        g.add_faces("ann", _faces("a", 2), embedding_key=KEY)
        g.add_faces("bob", _faces("b"), embedding_key=KEY)
    return tmp_path / "g"


def _locked(path: Path, how: str) -> sqlite3.Connection:
    """Another connection holding SQLite's lock: ``EXCLUSIVE`` stops readers too, ``IMMEDIATE`` writers only."""
    con = sqlite3.connect(path / "gallery.db", isolation_level=None)
    con.execute(f"BEGIN {how}")
    if how == "IMMEDIATE":
        con.execute("UPDATE meta SET value = value WHERE key = 'schema'")
    return con


# Every public entry point, as (name, call). A new public method of Gallery must be added here
# (test_every_public_method_is_listed fails otherwise).
CALLS = {
    "people": lambda g: g.people(),
    "__len__": lambda g: len(g),
    "__contains__": lambda g: "ann" in g,
    "face_count": lambda g: g.face_count,
    "person": lambda g: g.person("ann"),
    "faces": lambda g: g.faces(),
    "find_image": lambda g: g.find_image("a-0"),
    "audit_log": lambda g: g.audit_log(),
    "embeddings": lambda g: g.embeddings(),
    "search": lambda g: g.search(_unit(1), 2),
    "index_spec": lambda g: g.index_spec,
    "face_owners": lambda g: g.face_owners(np.array([1, 2])),
    "check": lambda g: g.check(),
    "generation": lambda g: g.generation,
    "embedding_key": lambda g: g.embedding_key,
    "dimension": lambda g: g.dimension,
    "check_embedding_key": lambda g: g.check_embedding_key(KEY),
    "get_setting": lambda g: g.get_setting("threshold"),
    "add_faces": lambda g: g.add_faces("cy", _faces("c"), embedding_key=KEY),
    "rename": lambda g: g.rename("bob", "robert"),
    "remove": lambda g: g.remove("bob"),
    "set_setting": lambda g: g.set_setting("threshold", 0.5),
    "rebuild_index": lambda g: g.rebuild_index(),
    "face": lambda g: g.face(1),
    "face_thumbnail": lambda g: g.face_thumbnail(1),
    "remove_face": lambda g: g.remove_face(3),
    "compaction_pending": lambda g: g.compaction_pending,
    "compact": lambda g: g.compact(),  # nothing due here: it reads only
    "face_chip": lambda g: g.face_chip(1),
    "face_sources": lambda g: g.face_sources(),
    "copy_to": lambda g: g.copy_to(g.path.parent / f"copy-{time.monotonic_ns()}"),
    "exclusive": lambda g: g.exclusive().__enter__(),
    "replace_embeddings": lambda g: g.replace_embeddings(KEY, dict(zip(*g.embeddings()[::2]))),
    "adopt_embedding_key": lambda g: g.adopt_embedding_key(KEY),  # outside a change: one write of its own
}
WRITES = {
    "add_faces",
    "adopt_embedding_key",
    "exclusive",
    "replace_embeddings",
    "rename",
    "remove",
    "remove_face",
    "set_setting",
}  # change the database (rebuild_index only reads it)
NOT_DATABASE = {"close", "guard", "not_found", "actor", "backend", "folder"}  # work without the database lock


def test_every_public_method_is_listed():
    public = {
        name
        for name, _ in inspect.getmembers(Gallery)
        if (not name.startswith("_") or name in ("__len__", "__contains__")) and name not in ("path", "timeout")
    }
    assert public - NOT_DATABASE == set(CALLS)


def _dump(path: Path):
    with Gallery(path) as g:
        return g.people(), g.faces(), g.audit_log(), g.generation


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_entry_point_waits_then_says_busy(populated, name):
    before = _dump(populated)
    g = Gallery(populated, timeout=0.2)
    con = _locked(populated, "EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(GalleryBusyError) as caught:
            CALLS[name](g)
        waited = time.monotonic() - started
    finally:
        con.execute("ROLLBACK")
        con.close()
        g.close()
    message = str(caught.value)
    assert "busy" in message and str(populated) in message and "0.2 s" in message and "\n" not in message
    assert not isinstance(caught.value, sqlite3.Error) and "database is locked" not in message
    assert 0.15 < waited < 5
    assert _dump(populated) == before  # nothing half-done


@pytest.mark.parametrize("name", sorted(WRITES))
def test_writers_wait_for_a_writer_and_readers_do_not(populated, name):
    g = Gallery(populated, timeout=0.2)
    con = _locked(populated, "IMMEDIATE")
    try:
        for reader in sorted(set(CALLS) - WRITES):
            CALLS[reader](g)  # readers (and index rebuilds) go on while another process writes
        with pytest.raises(GalleryBusyError):
            CALLS[name](g)
    finally:
        con.execute("ROLLBACK")
        con.close()
        g.close()


def test_a_commit_blocked_by_a_long_reader_is_rolled_back(populated):
    before = _dump(populated)
    reader = sqlite3.connect(populated / "gallery.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM faces").fetchall()  # holds a shared lock: the commit cannot finish
    try:
        with Gallery(populated, timeout=0.2) as g, pytest.raises(GalleryBusyError):
            g.add_faces("cy", _faces("c"), embedding_key=KEY)
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert _dump(populated) == before
    with Gallery(populated) as g:
        g.add_faces("cy", _faces("c"), embedding_key=KEY)  # and the gallery is fine afterwards
        assert g.check() == []


def test_opening_a_locked_gallery_says_busy_not_corrupt(populated):
    con = _locked(populated, "EXCLUSIVE")
    try:
        with pytest.raises(GalleryBusyError, match="busy"):
            Gallery(populated, timeout=0.2)
    finally:
        con.execute("ROLLBACK")
        con.close()


def test_index_files_lock_is_bounded_too(populated):
    with Gallery(populated) as g:
        g.search(_unit(1), 1)
        g.add_faces("cy", _faces("c"), embedding_key=KEY)  # the index file is one generation behind now
        g.remove("cy")  # ... and cy's faces are erased from it in place
        g.search(_unit(1), 1)  # a file of the current generation replaces it: nothing left to do on open
    (populated / ".index-99.faiss.x1.tmp").write_bytes(b"left by a killed writer")
    fd = os.open(populated, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a process writing index files would
    try:
        try:
            g = Gallery(populated, timeout=0.2)  # opening sweeps the temp file: waits, then says busy
        except GalleryBusyError:
            pass
        else:
            g.close()
            pytest.fail("opening did not wait for the index files lock")
        (populated / ".index-99.faiss.x1.tmp").unlink()
        with Gallery(populated, timeout=0.2) as g, pytest.raises(GalleryBusyError, match="busy"):
            g.search(_unit(1), 1)  # nothing to sweep, so it opens at once; reading the index file waits
    finally:
        os.close(fd)


def test_cli_says_busy_in_one_line(populated):
    con = _locked(populated, "EXCLUSIVE")
    try:
        result = cli("--timeout", "0.2", "people", "--gallery", populated)
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "busy" in result.stderr and "locked" not in result.stderr


@workers.stress
def test_more_writers_and_photos(tmp_path, fake_pipeline, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "WRITERS", max(WRITERS, 8))
    monkeypatch.setattr(sys.modules[__name__], "PHOTOS", max(PHOTOS, 100))
    test_writers_readers_and_a_remover_at_once(tmp_path, fake_pipeline)


def test_a_photo_another_process_enrols_meanwhile_lands_once(tmp_path, fake_pipeline):
    """The duplicate test of enrolment is repeated inside the write transaction (no check-then-act race)."""
    photos = [str(save_png(tmp_path / f"{i}.png", tile_image([(40 + 16 * i, 90, 200)]))) for i in range(3)]
    with Gallery(tmp_path / "g") as g, Gallery(tmp_path / "g") as other:
        add = g.add_faces

        def add_after_the_other_process(*args, **kwargs):
            # between this process's duplicate test and its write, another process enrols photo 1
            enroll(other, "ann", photos[1:2], fake_pipeline)
            return add(*args, **kwargs)

        g.add_faces = add_after_the_other_process  # type: ignore[method-assign]
        results = enroll(g, "ann", photos, fake_pipeline)
        assert [r.status for r in results] == ["added", "duplicate", "added"]
        assert "already enrolled for ann" in results[1].message
        assert sorted(f.image_path for f in g.faces()) == sorted(os.path.abspath(p) for p in photos)
        assert g.check() == []
