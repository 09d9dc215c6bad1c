"""The review loop's operations, run by the crash and concurrency tests of kept unknown faces in
child processes (and replayed by the parent): each operation is one transaction, deterministic
given the gallery it runs on (not a test module)."""

from __future__ import annotations

import hashlib
import os
import signal

import conftest
import numpy as np

KEY = conftest.KEY
DIM = KEY.dimension
#: the people whose faces are kept: fixed centres, faces around them (pairwise cosine ~0.8)
CENTRES = conftest.unit_vectors(424242, 6)


def faces(tag: str, seed: int, n: int):
    """``n`` faces of random people of :data:`CENTRES`, one photo each, two photos with two faces."""
    from faceid.gallery import NewFace

    rng = np.random.default_rng(seed)
    who = rng.integers(0, len(CENTRES), n)
    noise = 0.5 * rng.normal(size=(n, DIM)).astype(np.float32) / np.sqrt(DIM)
    v = CENTRES[who] + noise
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [
        NewFace(
            v[i].astype(np.float32),
            hashlib.sha256(f"{tag}/{i // 2 if i < 4 else i}".encode()).hexdigest(),
            (100 * i, 0, 60, 60),
            0.99,
            f"/photos/{tag}/{i}.jpg",
            thumbnail=f"JPEG {tag}/{i}".encode(),
        )
        for i in range(n)
    ]


def run_op(g, op: tuple) -> None:
    """One operation on the gallery ``g``; a refusal (no such group, person...) is part of the outcome."""
    from faceid.errors import FaceNotFoundError, GroupNotFoundError, InvalidNameError, PersonNotFoundError

    kind = op[0]
    try:
        if kind == "keep":
            g.unknown.keep(faces(op[1], op[2], op[3]), embedding_key=KEY, group=False)
        elif kind == "group":
            g.unknown.update_groups()
        elif kind == "regroup":
            g.unknown.regroup()
        elif kind == "name":
            groups = g.unknown.groups()
            if len(groups) > op[1]:
                g.unknown.name(groups[op[1]].id, op[2])
        elif kind == "move-out":
            people = [p for p in g.people() if p.faces]
            if people:
                g.unknown.move([g.faces(people[op[1] % len(people)].name)[0].id], None)
        elif kind == "move-in":
            loose = g.unknown.ungrouped()
            if loose:
                g.unknown.move([loose[0].id], op[1])
        elif kind == "merge":
            g.unknown.merge(op[1], op[2])
        elif kind == "forget":
            g.unknown.forget()
        elif kind == "search":
            g.search(CENTRES, 3)
    except (FaceNotFoundError, GroupNotFoundError, InvalidNameError, PersonNotFoundError):
        pass


def crash_child(gallery_dir: str, ops: list, conn, release, kill_at: int | None, rebase: float) -> None:
    """Run ``ops``, telling the parent before and after each; SIGKILL itself at SQL statement ``kill_at``
    (negative: at a statement an operation runs after its commit, from its ``-kill_at``-th write on)."""
    count = [0]

    commits = [0]
    armed = [False]  # a write's COMMIT of the operation running was the last statement
    writing = [False]  # in a write transaction

    def event(what: object) -> None:
        if str(what).startswith("-- TRIGGER"):  # a trigger's statement: part of the one that fired it
            return
        count[0] += 1
        # kill_at > 0: at that statement; < 0: at a statement that an operation runs after one of
        # its writes' commits, from the -kill_at-th write on (the outcome "after")
        after_commit = kill_at is not None and kill_at < 0 and armed[0] and commits[0] >= -kill_at
        armed[0] = str(what).startswith("COMMIT") and writing[0]  # a write's commit, not a read's
        writing[0] = str(what).startswith("BEGIN IMMEDIATE") or (writing[0] and not armed[0])
        commits[0] += armed[0]
        if after_commit or (kill_at is not None and kill_at > 0 and count[0] >= kill_at):
            conn.send(("dying", str(what)[:80]))
            os.kill(os.getpid(), signal.SIGKILL)

    from faceid.gallery import Gallery, searchindex

    searchindex.REBASE_SHARE = rebase
    g = Gallery(gallery_dir)
    g.backend.db.set_trace_callback(event)
    for op in ops:
        conn.send(("plan", op))
        run_op(g, op)
        armed[0] = False
        conn.send(("done", op))
    g.close()
    conn.send(("end", count[0]))
    try:
        release.recv()
    except EOFError:
        pass


def busy_child(gallery_dir: str, ops: list, queue, start) -> None:
    """Run ``ops`` once ``start`` is set (with another process doing the same); report errors."""
    import traceback

    errors = []
    try:
        from faceid.gallery import Gallery

        start.wait(30)
        with Gallery(gallery_dir, timeout=60) as g:
            for op in ops:
                run_op(g, op)
    except BaseException:
        errors.append(traceback.format_exc())
    queue.put(errors)
