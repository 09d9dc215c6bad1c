"""An enrolment or keep killed at every write, on every backend: the next open completes or rolls
it back (faceid.gallery.intents), ``gallery check`` calls the gallery sound, and running the
command again leaves it exactly as one uninterrupted run would.

A child process (interrupt_workers.run) counts the store's writes of one uninterrupted enrolment,
then a child per write k sends itself SIGKILL before its k-th write; each time the parent opens the
gallery, checks it and runs the enrolment again. One gallery carries the whole series (a new person,
or new photos, at each k), so a leftover of one kill, or of a re-run, shows in every later check.
"""

from __future__ import annotations

import os

import pytest
import workers
from conftest import fake_cli
from workers import KEY, new_faces

from faceid.gallery import open_gallery

pytestmark = pytest.mark.slow
N = 3  # faces per enrolment or keep


def run_child(address: str, op: tuple, kill_at: int | None) -> tuple[str, list]:
    """Run ``op`` in a child; ``("killed", [write number, write])`` or ``("done", writes)``."""
    import interrupt_workers

    ctx = workers.forkserver()
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=interrupt_workers.run, args=(address, op, kill_at, theirs))
    child.start()
    theirs.close()
    messages = []
    try:
        while True:
            messages.append(mine.recv())
    except EOFError:
        pass
    child.join(120)
    assert child.exitcode is not None, "the child hung"
    if messages and messages[-1][0] == "dying":
        assert child.exitcode == -9
        return "killed", list(messages[-1][1:])
    assert child.exitcode == 0 and messages and messages[-1][0] == "writes", (child.exitcode, messages)
    return "done", messages[-1][1]


def _settled(g) -> str:
    """What the open said of an interrupted change: ``"rolled back"``, or ``""``."""
    found = [p for p in g.problems if "interrupted" in p]
    assert len(found) <= 1, found
    assert all("rolled back" in p and str(g.path) in p for p in found), found
    assert not [p for p in found if "restore" in p or "backup" in p], found  # a repair, not a lost file
    return "rolled back" if found else ""


def _kill_points(address: str, op: tuple, backend: str) -> range:
    """Before which writes of ``op`` to kill: every one; on the server with FACEID_MILVUS_SERVER_SUITES=reduced
    those from the one after the intent to the one after its clearing (the moments outside are no
    different there from milvus-lite's, which has them all)."""
    outcome, writes = run_child(address, op, None)
    assert outcome == "done"
    if backend != "milvus-server" or os.environ.get("FACEID_MILVUS_SERVER_SUITES", "all") != "reduced":
        return range(1, len(writes) + 1)
    marked = [i for i, w in enumerate(writes, 1) if w.endswith(" intent")]
    assert len(marked) == 2, writes  # written, then cleared
    return range(marked[0] + 1, marked[1] + 2)


def test_an_enrolment_killed_at_every_write_is_completed_or_rolled_back(gallery_spec, backend):
    address = gallery_spec
    with open_gallery(address) as g:
        g.add_faces("base", new_faces("base", 1, 2), embedding_key=KEY)
    points = _kill_points(address, ("enroll", "probe", "probe", 2, N), backend)
    expected = {"base": 2, "probe": N}
    outcomes = []
    for k in points:
        name = f"p{k}"
        outcome, where = run_child(address, ("enroll", name, name, 100 + k, N), k)
        with open_gallery(address) as g:
            settled = _settled(g)
            assert g.check() == [], (k, where)
            people = {p.name: p.faces for p in g.people()}
            assert all(people.get(n) == c for n, c in expected.items()), (k, where, people)
            assert people.get(name, N) == N, (k, where, people)  # all of it, or none: never a person short
            assert set(people) <= {*expected, name}, (k, where, people)
            outcomes.append((outcome, where, settled, name in people))
            ids = g.add_faces(name, new_faces(name, 100 + k, N), embedding_key=KEY, skip_known_images=True)
            assert (ids == [None] * N) == (name in people)
            expected[name] = N  # the next round's check (and the last one below) sees the re-run's result
    with open_gallery(address) as g:
        assert {p.name: p.faces for p in g.people()} == expected and not g.problems
    print(f"\n{backend}: kills before writes {points.start}-{points.stop - 1} of an enrolment:", outcomes)
    if backend == "local":  # one transaction: a kill leaves nothing to settle
        assert not any(settled for _, _, settled, _ in outcomes)
    else:  # every moment between the intent and its clearing was met, and rolled back
        assert sum(1 for _, _, settled, _ in outcomes if settled) >= 3, outcomes
    result = fake_cli("gallery", "check", "--gallery", address)
    assert result.exit_code == 0 and "sound" in result.stdout, result.output


def test_a_keep_killed_at_every_write_is_completed_or_rolled_back(gallery_spec, backend):
    address = gallery_spec
    with open_gallery(address) as g:
        g.add_faces("base", new_faces("base", 1, 2), embedding_key=KEY)
    points = _kill_points(address, ("keep", "probe", 2, N), backend)
    kept = N
    outcomes = []
    for k in points:
        tag = f"u{k}"
        outcome, where = run_child(address, ("keep", tag, 200 + k, N), k)
        with open_gallery(address) as g:
            settled = _settled(g)
            assert g.check() == [], (k, where)
            assert [(p.name, p.faces) for p in g.people()] == [("base", 2)]
            again = g.unknown.keep(new_faces(tag, 200 + k, N), embedding_key=KEY, min_size=0, min_confidence=0)
            before = sum(again.before)
            assert before in (0, N), (k, where, again)  # all of it, or none
            assert None not in again.ids
            outcomes.append((outcome, where, settled, before == N))
            kept += N
            assert g.unknown.count() == kept, (k, where)
    print(f"\n{backend}: kills before writes {points.start}-{points.stop - 1} of a keep:", outcomes)
    if backend == "local":
        assert not any(settled for _, _, settled, _ in outcomes)
    else:
        assert sum(1 for _, _, settled, _ in outcomes if settled) >= 2, outcomes
    with open_gallery(address) as g:
        assert g.check() == [] and not g.problems


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_faces_of_a_half_written_enrolment_are_taken_out_with_the_person_it_made(gallery_spec, monkeypatch):
    """Some faces of an enrolment landed, the rest never did (a store whose insert a kill split):
    the next open deletes them and the person the enrolment made, and records the rollback."""
    from faceid.gallery import intents
    from faceid.gallery.people import unit_vectors

    with open_gallery(gallery_spec) as g:
        g.add_faces("base", new_faces("base", 1, 2), embedding_key=KEY)
        faces = new_faces("half", 7, N)
        b = g.backend
        dead = _dead_pid()
        monkeypatch.setattr(intents.os, "getpid", lambda: dead)  # the intent's process: one that is gone
        with b.change():  # what a kill after the second face leaves, committed as such
            ids = b.new_face_ids(N)
            intents.begin(b, "enroll", "half", True, ids)
            b.audit("enroll", "half", new_person=True, faces=ids)
            pid = b.add_person("half")
            b.insert_faces(pid, ids[:2], unit_vectors(faces[:2], KEY.dimension), faces[:2], KEY.model)
        monkeypatch.undo()
        problems = g.check()  # as the kill left it: a face the log records is missing
        assert problems and all("missing" in p for p in problems), problems
        # the repair it names is one for the backend in use: a Milvus gallery is not restored in place
        assert all(("not restored in place" in p) == (g.folder is None) for p in problems), problems
    with open_gallery(gallery_spec) as g:
        assert [p for p in g.problems if "rolled back" in p] == [
            f"{g.path}: rolled back an enrolment of 3 faces for 'half' that was interrupted (2 faces had landed); "
            "enrol them again"
        ]
        assert [(p.name, p.faces) for p in g.people()] == [("base", 2)]
        assert g.find_image(faces[0].image_sha256) == []
        assert g.check() == []
        assert [(e.action, e.person, e.detail["faces"]) for e in g.audit_log()][-1] == ("rollback", "half", ids)
        assert intents.pending(g.backend) is None
    with open_gallery(gallery_spec) as g:  # settled once: the next open has nothing to say
        assert not [p for p in g.problems if "interrupted" in p]


def test_a_change_in_progress_elsewhere_is_left_alone_until_its_lease_ends(tmp_path, monkeypatch):
    from faceid.gallery import intents

    address = str(tmp_path / "gallery")
    with open_gallery(address) as g:
        g.add_faces("base", new_faces("base", 1, 2), embedding_key=KEY)
        with g.backend.change():
            intents.begin(g.backend, "keep", None, False, [90, 91])
    monkeypatch.setattr(intents.socket, "gethostname", lambda: "another-host")
    with open_gallery(address) as g:  # the keeper is on another host and started just now
        (said,) = [p for p in g.problems if "in progress" in p]
        assert "a keep of 2 faces is in progress on" in said and intents.pending(g.backend) is not None
    monkeypatch.setattr(intents, "LEASE", 0.0)
    with open_gallery(address) as g:  # its lease is over: taken as interrupted, and nothing of it had landed
        assert not [p for p in g.problems if "in progress" in p]
        assert intents.pending(g.backend) is None and g.check() == []
