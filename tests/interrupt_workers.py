"""The child of tests/test_interrupted.py (not a test module): it opens a gallery, counts the writes
of one enrolment or keep, and sends itself SIGKILL before its k-th write.

A write is a step the store takes towards the change: on a local gallery each SQL statement that
begins, writes or commits (the change is one transaction; a kill during a read is a kill before the
next of these), on Milvus each call that changes a collection (insert, upsert, delete, and making
a collection, its index or loading it).
"""

from __future__ import annotations

import os
import signal

import workers

SQL_WRITES = {"BEGIN", "INSERT", "REPLACE", "UPDATE", "DELETE", "COMMIT", "SAVEPOINT", "RELEASE"}
MILVUS_WRITES = ("insert", "upsert", "delete", "create_collection", "create_index", "load_collection", "compact")


def hook_writes(gallery, event) -> None:
    """Call ``event(what)`` before every write the gallery's store makes from now on."""
    b = gallery.backend
    if gallery.folder is not None:

        def statement(sql: str) -> None:
            verb = sql.split(None, 1)[0].upper() if sql.strip() else ""
            if verb in SQL_WRITES:
                event(" ".join(sql.split()[:3]))

        b.db.set_trace_callback(statement)
        return
    client = b.rows.client
    for name in MILVUS_WRITES:
        original = getattr(client, name)

        def hooked(*args, _original=original, _name=name, **kwargs):
            said = repr((args[1:], kwargs))[:300]
            intent = " intent" if "'intent'" in said or '"intent"' in said else ""  # the intent's own row
            event(f"{_name} {args[0] if args else kwargs.get('collection_name', '')}{intent}")
            return _original(*args, **kwargs)

        setattr(client, name, hooked)


def run(address: str, op: tuple, kill_at: int | None, conn) -> None:
    """Run ``op`` (``("enroll", name, tag, seed, n)`` or ``("keep", tag, seed, n)``) on the gallery at
    ``address``; with ``kill_at``, die before the ``kill_at``-th write. Sends ``("writes", [...])`` at the end."""
    from faceid.gallery import open_gallery

    seen: list[str] = []

    def event(what: str) -> None:
        seen.append(what)
        if kill_at is not None and len(seen) >= kill_at:
            conn.send(("dying", len(seen), what))
            os.kill(os.getpid(), signal.SIGKILL)

    with open_gallery(address) as g:
        hook_writes(g, event)
        if op[0] == "enroll":
            _, name, tag, seed, n = op
            g.add_faces(name, workers.new_faces(tag, seed, n), embedding_key=workers.KEY, skip_known_images=True)
        else:
            _, tag, seed, n = op
            g.unknown.keep(workers.new_faces(tag, seed, n), embedding_key=workers.KEY, min_size=0, min_confidence=0)
        seen.append("(closing)")
    conn.send(("writes", seen))
