"""Crash safety, tested by killing: a child process enrols, renames, removes, searches and
rebuilds the index, and is killed with SIGKILL at a random moment; then the gallery must open,
pass every check, agree with its index, hold each change fully or not at all, have lost nothing
that was reported done, and keep nothing of anyone removed.

Half the children write a new index file after every change (as a small gallery does), half
never while one exists (as a large one does between rewrites): they update the index in place,
load an older file and bring it up to date, and erase removed faces in that file in place.

Three kinds of kill, chosen at random (seeded) for each cycle: a timer in the parent, uniform
over the child's run, which lands anywhere (inside SQLite's commit, between statements, in
Python); the child killing itself at a random numbered event (each SQL statement, and before and
after each ``os.replace``, ``os.fsync`` and ``os.unlink``); and the same counting file events
only, which reaches the narrow moments of index-file writes and deletions. ``FACEID_KILLS``
sets how many kills (default 60; ``make stress`` runs 400); ``FACEID_CRASH_SEED`` the seed.
"""

from __future__ import annotations

import collections
import copy
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import workers

from faceid.gallery import Gallery

KILLS = int(os.environ.get("FACEID_KILLS", "60"))
SEED = int(os.environ.get("FACEID_CRASH_SEED", "20240605"))


@dataclass
class Model:
    """What the gallery must hold: each person's enrolments ``(tag, seed, n)``, and what was removed."""

    people: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)
    removed: list[tuple[str, int, int]] = field(default_factory=list)
    writes: int = 0  # committed changes, one audit entry each

    def apply(self, op: tuple) -> Model:
        m = copy.deepcopy(self)
        kind = op[0]
        if kind == "enroll":
            _, name, tag, seed, n = op
            m.people.setdefault(name, []).append((tag, seed, n))
        elif kind == "rename":
            m.people[op[2]] = m.people.pop(op[1])
        elif kind == "remove":
            m.removed += m.people.pop(op[1])
        if kind in ("enroll", "rename", "remove"):
            m.writes += 1
        return m

    def state(self) -> dict[str, list[tuple[str, str, bytes]]]:
        out = {}
        for name, enrolments in self.people.items():
            rows = []
            for tag, seed, n in enrolments:
                vectors = workers.vectors_for(seed, n)
                rows += [(workers.face_sha(tag, i), workers.face_path(tag, i), vectors[i].tobytes()) for i in range(n)]
            out[name] = sorted(rows)
        return out


def gallery_state(g: Gallery) -> dict[str, list[tuple[str, str | None, bytes]]]:
    ids, _, vectors = g.embeddings()
    by_id = dict(zip(ids.tolist(), vectors))
    out: dict[str, list] = {}
    for face in g.faces():
        out.setdefault(face.person, []).append((face.image_sha256, face.image_path, by_id[face.id].tobytes()))
    return {name: sorted(rows) for name, rows in out.items()}


def plan(model: Model, rng: random.Random, counter: list[int]) -> list[tuple]:
    """A few random operations that are valid one after the other."""
    ops = []
    m = model
    for _ in range(rng.randint(2, 5)):
        names = sorted(m.people)
        r = rng.random()
        counter[0] += 1
        k = counter[0]
        if not names or r < 0.35 or (len(names) < 3 and r < 0.6):
            existing = names and rng.random() < 0.3
            name = rng.choice(names) if existing else f"person {k}'; DROP TABLE faces;--"
            op: tuple = ("enroll", name, f"e{k}", SEED * 1000 + k, rng.randint(1, 6))
        elif r < 0.5:
            op = ("rename", rng.choice(names), f"renamed {k}")
        elif r < 0.8 or len(names) > 8:
            op = ("remove", rng.choice(names))
        elif r < 0.92:
            op = ("search", k)
        else:
            op = ("rebuild",)
        ops.append(op)
        m = m.apply(op)
    return ops


def run_cycle(
    ctx, gallery_dir: Path, ops: list, *, delay: float | None, event: tuple[str, int] | None, rebase: float = 0.01
):
    """Run one child; kill it after ``delay`` seconds, or let it kill itself at ``event`` (see workers).

    ``rebase``: the child's REBASE_SHARE (100: it never writes a new index file while one exists,
    so it updates the index in place, loads older files and erases removed faces in them).
    """
    messages, child_messages = ctx.Pipe(duplex=False)  # (receiving end, sending end)
    child_release, release = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=workers.crash_child, args=(str(gallery_dir), ops, child_messages, child_release, event, rebase)
    )
    child.start()
    child_messages.close()
    child_release.close()
    got = []
    assert messages.poll(20), "the child did not start"
    got.append(messages.recv())
    started = time.perf_counter()
    if delay is not None:
        time.sleep(delay)  # the random moment of the kill, not a synchronisation
        os.kill(child.pid, 9)  # alive for sure: it waits for `release` after its work
    else:
        got += workers.messages_until_end(messages, 20)
    release.close()  # lets a finished child exit
    child.join(20)
    assert child.exitcode is not None, "the child did not exit"
    while True:
        try:
            if not messages.poll(5):
                break
            got.append(messages.recv())
        except EOFError:
            break
    messages.close()
    return got, time.perf_counter() - started


def verify(gallery_dir: Path, before: Model, ops: list, got: list) -> Model:
    """Open the gallery after a kill and check everything; return the model of what it now holds."""
    done = [m[1] for m in got if m[0] == "done"]
    assert done == ops[: len(done)]
    model = before
    for op in done:
        model = model.apply(op)
    inflight = ops[len(done)] if len(done) < len(ops) and any(m[0] == "plan" for m in got[len(done) * 2 :]) else None
    with Gallery(gallery_dir) as g:
        names = sorted(os.listdir(gallery_dir))
        assert not [n for n in names if n.endswith(("-journal", "-wal", ".tmp"))], names
        generation = g.generation
        files = [n for n in names if "index-" in n]  # one at most, of this generation or an older one
        assert len(files) <= 1 and all(int(n[6:-6]) <= generation for n in files), names

        state = gallery_state(g)
        if state != model.state():
            after = model.apply(inflight) if inflight is not None else None
            assert after is not None and state == after.state(), f"half-applied or lost: {inflight} {got}"
            model = after
        assert len(g.audit_log()) == model.writes

        blobs = {n: (gallery_dir / n).read_bytes() for n in os.listdir(gallery_dir)}
        removed_now = model.removed[len(before.removed) :]
        earlier = random.Random(len(model.removed)).sample(before.removed, min(20, len(before.removed)))
        for tag, seed, n in removed_now + earlier:  # all of this cycle's removals, a sample of older ones
            vectors = workers.vectors_for(seed, n)
            for i in range(n):
                secrets = (vectors[i].tobytes(), workers.face_sha(tag, i).encode(), workers.face_path(tag, i).encode())
                for name, blob in blobs.items():
                    assert not any(s in blob for s in secrets), f"removed face {tag}/{i} left in {name}"

        assert g.check() == []
        ids, _, vectors = g.embeddings()
        index = g.backend.search_index.current()
        import faiss

        held = faiss.vector_to_array(index.id_map)
        assert index.ntotal == len(ids) and np.array_equal(np.sort(held), ids)
        if len(ids):
            stored = faiss.downcast_index(index.index).reconstruct_n(0, index.ntotal)[np.argsort(held)]
            assert np.array_equal(stored, vectors)
            scores, found = g.search(vectors[:1], 1)
            assert found[0, 0] == ids[0] and scores[0, 0] > 0.999
        assert g.problems == []
    return model


def kill_many(tmp_path: Path, kills: int, seed: int) -> dict:
    ctx = workers.forkserver()
    rng = random.Random(seed)
    gallery_dir = tmp_path / "gallery"
    model = Model()
    counter = [0]
    stats: collections.Counter = collections.Counter()
    # typical length of a finished cycle (the median of recent ones: outliers would stretch the range)
    durations: collections.deque = collections.deque([0.05], maxlen=15)
    events: dict[str, collections.deque] = {k: collections.deque([n], maxlen=15) for k, n in (("any", 40), ("file", 8))}
    cycles = 0
    while stats["kills"] < kills:
        cycles += 1
        assert cycles < 4 * kills + 20, f"only {stats['kills']} kills in {cycles} cycles"
        ops = plan(model, rng, counter)
        delay: float | None = None
        event: tuple[str, int] | None = None
        if cycles <= 4:  # the first kills land while the gallery is being created
            event = ("any", [1, 3, 6, 10][cycles - 1])
        else:
            kind = rng.choice(["timer", "any", "file"])
            if kind == "timer":
                delay = rng.uniform(0, 1.2 * statistics.median(durations))
            else:
                event = (kind, rng.randint(1, max(1, round(1.2 * statistics.median(events[kind])))))
        rebase = rng.choice([0.01, 100.0])
        got, elapsed = run_cycle(ctx, gallery_dir, ops, delay=delay, event=event, rebase=rebase)
        ended = [m for m in got if m[0] == "end"]
        if ended:
            durations.append(elapsed)
            for kind, seen in events.items():
                seen.append(ended[0][1][kind])
            stats["completed"] += 1
        else:
            stats["kills"] += 1
            stats["timer kills" if delay is not None else "event kills"] += 1
            dying = [m[1] for m in got if m[0] == "dying"]
            if dying and dying[0].startswith("file"):
                stats["kills at index-file writes and deletions"] += 1
            if dying and "COMMIT" in dying[0]:
                stats["kills just before COMMIT"] += 1
            if any(m[0] == "closing" for m in got):
                stats["kills while closing"] += 1
            inflight = [m[1][0] for m in got if m[0] == "plan"][-1:] or ["open"]
            stats[f"kills during {inflight[0]}"] += 1
        model = verify(gallery_dir, model, ops, got)
        stats["changes committed"] = model.writes
    stats["cycles"] = cycles
    stats["faces removed and not found in any file"] = sum(n for _, _, n in model.removed)
    return dict(stats)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_or_half_applies(tmp_path):
    started = time.perf_counter()
    stats = kill_many(tmp_path, KILLS, SEED)
    print(f"\ncrash test: {stats} in {time.perf_counter() - started:.1f} s")
    assert stats["kills"] >= KILLS
    assert stats["timer kills"] > 0 and stats["event kills"] > 0
    assert stats["kills at index-file writes and deletions"] > 0
    assert stats["faces removed and not found in any file"] > 0


@workers.stress
def test_sigkill_stress(tmp_path):
    started = time.perf_counter()
    stats = kill_many(tmp_path, max(KILLS, 400), SEED + 1)
    print(f"\ncrash stress: {stats} in {time.perf_counter() - started:.1f} s")
    assert stats["kills at index-file writes and deletions"] > 10
