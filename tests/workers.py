"""Code that runs in child processes for the crash and concurrency tests (not a test module).

Children are forked from a forkserver that has numpy, faiss and faceid imported already, so
starting one takes about 10 ms. Every child reports to its parent through a pipe or queue;
none needs TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
import traceback

import conftest
import numpy as np

KEY = conftest.KEY
DIM = KEY.dimension


def stress(test):
    """Mark a stress variant: ``stress`` and ``slow``, and skipped unless ``FACEID_STRESS=1``
    (``make stress`` sets it), so that no selection of the default suite runs it by accident."""
    import pytest

    skip = pytest.mark.skipif(not os.environ.get("FACEID_STRESS"), reason="a stress variant: run by `make stress`")
    return pytest.mark.stress(pytest.mark.slow(skip(test)))


def forkserver():
    """The multiprocessing context the tests use: a forkserver with the heavy modules preloaded."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "faiss", "PIL.Image", "cv2", "faceid.gallery", "faceid.enroll", "workers"])
    return ctx


# -- enrolments with known vectors -------------------------------------------------------------------


def vectors_for(seed: int, n: int, dim: int = DIM) -> np.ndarray:
    """``n`` random unit vectors, the same for the same seed in every process."""
    return conftest.unit_vectors(seed, n, dim)


def face_sha(tag: str, i: int) -> str:
    return hashlib.sha256(f"{tag}/{i}".encode()).hexdigest()


def face_path(tag: str, i: int) -> str:
    return f"/photos/{tag}/face-{i}.jpg"


def new_faces(tag: str, seed: int, n: int):
    from faceid.gallery import NewFace

    return [
        NewFace(v, face_sha(tag, i), (i, i, 10, 10), 0.99, face_path(tag, i))
        for i, v in enumerate(vectors_for(seed, n))
    ]


# -- the crash child -----------------------------------------------------------------------------------


def crash_child(
    gallery_dir: str, ops: list, conn, release, kill_at: tuple[str, int] | None, rebase: float = 0.01
) -> None:
    """Run ``ops`` on the gallery, telling the parent before and after each; the parent kills it.

    With ``kill_at = (kind, n)``, the child sends itself SIGKILL at its n-th event of that kind
    instead: ``"any"`` counts every SQL statement the gallery runs and every file event,
    ``"file"`` only file events: before and after each ``os.replace``, ``os.fsync`` and
    ``os.unlink``, which faceid calls only to write index files (temp file, fsync, rename, fsync
    of the folder) and to overwrite and delete old ones. The parent's timer gives random moments
    inside SQLite. After its last operation the child waits for ``release`` (the parent closing
    its end), so the parent's SIGKILL always finds it alive and never hits a recycled process id.
    """
    counts = {"any": 0, "file": 0}

    def event(what: object, kind: str = "any") -> None:
        counts["any"] += 1
        if kind == "file":
            counts["file"] += 1
        if kill_at is not None and counts[kill_at[0]] >= kill_at[1]:
            conn.send(("dying", f"{kind}: {str(what)[:80]}"))
            os.kill(os.getpid(), signal.SIGKILL)

    if kill_at is not None:
        for name in ("replace", "fsync", "unlink"):
            original = getattr(os, name)

            def hooked(*args, _original=original, _name=name, **kwargs):
                what = f"{_name} {os.path.basename(str(args[0])) if args and not isinstance(args[0], int) else ''}"
                event(f"before {what}", "file")
                result = _original(*args, **kwargs)
                event(f"after {what}", "file")
                return result

            setattr(os, name, hooked)

    from faceid.gallery import Gallery, searchindex

    searchindex.REBASE_SHARE = rebase
    conn.send(("go",))
    g = Gallery(gallery_dir)
    g.backend.db.set_trace_callback(event)
    for op in ops:
        conn.send(("plan", op))
        kind = op[0]
        if kind == "enroll":
            _, name, tag, seed, n = op
            g.add_faces(name, new_faces(tag, seed, n), embedding_key=KEY)
        elif kind == "rename":
            g.rename(op[1], op[2])
        elif kind == "remove":
            g.remove(op[1])
        elif kind == "search":
            g.search(vectors_for(op[1], 1), k=5)
        elif kind == "rebuild":
            g.rebuild_index()
        conn.send(("done", op))
    conn.send(("closing",))
    g.close()
    conn.send(("end", counts))
    try:
        release.recv()
    except EOFError:
        pass


# -- the concurrency workers -----------------------------------------------------------------------------


def _report(queue, role: str, body) -> None:
    """Run ``body()`` and put ``{"role", "result", "errors"}`` on the queue, whatever happens."""
    errors: list[str] = []
    result = None
    try:
        result = body()
    except BaseException as exc:  # everything goes back to the parent, which fails the test
        errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    queue.put({"role": role, "result": result, "errors": errors, "pid": os.getpid()})


def fake_pipeline():
    return conftest.make_fake_pipeline()


def writer(gallery_dir: str, batches: list, queue, start) -> None:
    """Enrol each ``(person, [photo paths])`` batch with :func:`faceid.enroll.enroll`."""

    def body():
        from faceid.enroll import enroll
        from faceid.gallery import Gallery

        pipeline = fake_pipeline()
        start.wait(30)
        outcomes = []
        with Gallery(gallery_dir) as g:
            for person, photos in batches:
                for r in enroll(g, person, photos, pipeline):
                    outcomes.append((person, r.image, r.status, r.face_id))
        return outcomes

    _report(queue, "writer", body)


def remover(gallery_dir: str, names: list, queue, start) -> None:
    def body():
        from faceid.gallery import Gallery

        start.wait(30)
        removed = []
        with Gallery(gallery_dir) as g:
            for name in names:
                removed.append((name, g.remove(name)))
        return removed

    _report(queue, "remover", body)


def reader(gallery_dir: str, stable: dict, batches: list, shared: list, vector_tags: dict, queue, start, stop) -> None:
    """Identify, list and check the gallery until ``stop`` is set, asserting it is never half-written.

    ``stable``: photo -> person never changed during the run; ``batches``: sets of photo tags
    enrolled in one transaction each (all or none may be visible); ``shared``: photo tags two
    writers race to enrol (at most once); ``vector_tags``: embedding bytes -> photo tag.
    """

    def body():
        import faiss

        from faceid.gallery import Gallery
        from faceid.identify import identify

        pipeline = fake_pipeline()
        start.wait(30)
        counts = {"identify": 0, "people": 0, "faces": 0, "index": 0, "check": 0, "audit": 0}
        violations: list[str] = []
        deadline = time.monotonic() + 120
        round_ = 0
        while time.monotonic() < deadline:
            done = stop.is_set()  # one more full round after the writers finished
            with Gallery(gallery_dir) as g:
                photos = sorted(stable)
                for result in identify([photos[round_ % len(photos)]], g, pipeline):
                    counts["identify"] += 1
                    names = [f.name for f in result.faces]
                    if result.error or names != [stable[result.image]]:
                        violations.append(f"identify {result.image}: {names} {result.error}")
                g.people()
                counts["people"] += 1
                listed = [f.image_sha256 for f in g.faces()]
                counts["faces"] += 1
                violations += _half_written("faces()", listed, batches, shared)
                index = g.backend.search_index.current()
                held = faiss.downcast_index(index.index).reconstruct_n(0, index.ntotal)
                tags = [vector_tags.get(row.tobytes(), "?") for row in held]
                counts["index"] += 1
                violations += _half_written("index", tags, batches, shared)
                if "?" in tags:
                    violations.append(f"index holds {tags.count('?')} vectors no one enrolled")
                if round_ % 5 == 0:
                    problems = g.check()
                    counts["check"] += 1
                    if problems:
                        violations.append(f"check(): {problems}")
                    g.audit_log()
                    counts["audit"] += 1
                if g.problems:
                    violations.append(f"problems: {g.problems}")
            round_ += 1
            if done:
                break
        return {"counts": counts, "violations": violations}

    _report(queue, "reader", body)


def _half_written(where: str, seen: list, batches: list, shared: list) -> list[str]:
    seen_set = set(seen)
    out = []
    for batch in batches:
        present = len(seen_set & set(batch))
        if present not in (0, len(batch)):
            out.append(f"{where}: {present} of {len(batch)} faces of one enrolment")
    for tag in shared:
        if seen.count(tag) > 1:
            out.append(f"{where}: {tag} enrolled {seen.count(tag)} times")
    return out


def messages_until_end(messages, timeout: float) -> list:
    """What a crash child sends on ``messages`` (a pipe's receiving end) until its ``("end", ...)``
    message or its death, each message within ``timeout`` seconds of the last (else it hung)."""
    got: list = []
    while True:
        assert messages.poll(timeout), "the child hung"
        try:
            got.append(messages.recv())
        except EOFError:
            return got
        if got[-1][0] == "end":
            return got
