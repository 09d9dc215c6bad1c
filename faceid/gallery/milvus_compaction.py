"""Compaction of a Milvus gallery after a removal: the erasure of rows a delete has hidden.

A Milvus delete takes effect at once (no search, query or export returns the rows) but leaves
tombstones in the segments until a compaction rewrites them, and a compaction only rewrites
segments that are flushed (written to storage). milvus-lite flushes and compacts in a second or so
and is waited for (the removed rows must leave the folder's files before the removal returns).

A server does both in its own time (on Milvus 2.3.5 standalone a flush about 2.5 s, a compaction
about 10-18 s a collection), so there a removal only asks for the flush (it returns once the
server has sealed the segments, about 20 ms) and records the collections; the compactions are
started by whoever next looks (:func:`advance`: ``gallery check``, ``Gallery.compact``, the next
open of the gallery) once the server has flushed them, and recorded as job ids until done. Until
then ``gallery check`` reports the erasure as pending (exit 0). A pending entry in
``meta('compacting')`` is a job id (a number) or a collection whose flush is awaited (its name).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["PENDING", "advance", "finished", "flush", "start", "unfinished", "wait"]

#: what ``gallery check`` says of unfinished jobs (not a problem: the removal has taken effect)
PENDING = (
    "Milvus is still compacting after a removal ({n} job(s)): the removed faces are gone from every "
    "search, listing and export; their rows are erased from its segments when it ends"
)

#: segment states of a flush still under way
_FLUSHING = ("sealed", "flushing")


def finished(state: object) -> bool:
    """A compaction state that pymilvus reports as done (or one the server no longer knows)."""
    text = str(state).lower()
    return "complet" in text or "undefined" in text


def flush(client: Any, collections: list[str], timeout: float, *, wait: bool) -> None:
    """Flush the collections in one request (``MilvusClient.flush`` takes one name, its connection a
    list: the server seals and writes them side by side). With ``wait=False`` it returns once the
    server has sealed them (see :func:`flushed`), not when they are written."""
    if collections:
        client._get_connection().flush(list(collections), timeout=timeout, _async=not wait)


def flushed(client: Any, collection: str) -> bool:
    """Whether no segment of ``collection`` is still being flushed (one round trip)."""
    return not any(str(s.state).lower().endswith(_FLUSHING) for s in client.list_persistent_segments(collection))


def start(client: Any, collections: list[str], timeout: float) -> list[int]:
    """Flush the collections, waiting (one request), and ask for a compaction of each; the job ids
    (a falsy job, nothing to compact, is left out)."""
    flush(client, collections, timeout, wait=True)
    return _compact(client, collections)


def _compact(client: Any, collections: list[str]) -> list[int]:
    jobs = []
    for name in collections:
        job = client.compact(name)
        if job:
            jobs.append(int(job))
    return jobs


def advance(client: Any, pending: list[int | str], timeout: float, *, wait: bool) -> list[int | str]:
    """Start the compaction of each awaited collection whose flush has ended (waiting for it up to
    ``timeout`` if ``wait``); the entries left: awaited collections and job ids."""
    out: list[int | str] = []
    for entry in pending:
        if isinstance(entry, int):
            out.append(entry)
            continue
        deadline = time.monotonic() + timeout
        while not flushed(client, entry) and wait and time.monotonic() < deadline:
            time.sleep(0.1)
        out += _compact(client, [entry]) if flushed(client, entry) else [entry]
    return out


def wait(client: Any, jobs: list[int], timeout: float, report: Callable[[str], None], where: str) -> None:
    """Poll each job until it is done, up to ``timeout`` seconds each; report one that is not."""
    for job in jobs:
        deadline = time.monotonic() + timeout
        while not finished(client.get_compaction_state(job)):
            if time.monotonic() >= deadline:
                report(
                    f"{where}: Milvus had not finished compacting after {timeout:g} s; removed "
                    "rows stay in its segments until it has"
                )
                break
            time.sleep(0.2)


def unfinished(client: Any, jobs: list[int]) -> list[int]:
    """The jobs the server has not finished (one round trip each)."""
    return [job for job in jobs if not finished(client.get_compaction_state(job))]
