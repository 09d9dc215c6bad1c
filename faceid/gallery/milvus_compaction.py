"""Compaction of a Milvus gallery after a removal: the erasure of rows a delete has hidden.

A Milvus delete takes effect at once (no search, query or export returns the rows) but leaves
tombstones in the segments until a compaction rewrites them. milvus-lite compacts in a second or
so and is waited for (the removed rows must leave the folder's files before the removal returns).
A server compacts in its own time (about 18 s a collection measured on Milvus 2.3.5 standalone,
polled 182 times a removal), so there the jobs are only started, recorded by the gallery, and
reported as pending by ``gallery check`` until the server says they are done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["PENDING", "finished", "start", "unfinished", "wait"]

#: what ``gallery check`` says of unfinished jobs (not a problem: the removal has taken effect)
PENDING = (
    "Milvus is still compacting after a removal ({n} job(s)): the removed faces are gone from every "
    "search, listing and export; their rows are erased from its segments when it ends"
)


def finished(state: object) -> bool:
    """A compaction state that pymilvus reports as done (or one the server no longer knows)."""
    text = str(state).lower()
    return "complet" in text or "undefined" in text


def start(client: Any, collections: list[str], timeout: float) -> list[int]:
    """Flush the collections (rows still in the write-ahead log go to segments first) and ask for a
    compaction of each; the job ids (a falsy job, nothing to compact, is left out).

    The flush is one request for every collection (``MilvusClient.flush`` takes one name, its
    connection a list): the server seals and writes them side by side, so a removal waits for one
    flush, not one a collection (about 0.8 s each on Milvus 2.3.5 standalone)."""
    if collections:
        client._get_connection().flush(list(collections), timeout=timeout)
    jobs = []
    for name in collections:
        job = client.compact(name)
        if job:
            jobs.append(int(job))
    return jobs


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
