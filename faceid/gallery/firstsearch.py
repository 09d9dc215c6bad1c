"""A big gallery's first searches in a new process, answered before its index is loaded.

Loading a gallery's index file means reading it, decoding it with FAISS and checking every
vector it holds against the database (:func:`faceid.gallery.indexfiles.compare`): at a million
faces, seconds. Meanwhile a search can be answered exactly from the file itself, memory-mapped
(:func:`faceid.index.mapped`: nothing decoded or copied, the pages come from the page cache),
less the faces removed since the file was written, plus those added since (read from the
database), by brute force. Nothing of it is trusted: every face such a search reports is looked
up in the database, and its score computed again from the stored embedding; if one differs or
is no longer enrolled, the answer is dropped and the search waits for the checked index.

What that check cannot see is a face the file holds damaged (another vector than the database's)
and so does not report: until the background check is done (seconds at a million faces), such a
search may miss it. The file is written by faceid alone, atomically, so that takes damage on
disk or a database edited by hand; if the check then finds it, the gallery's problems say how
many searches were answered from the file, and the index is built from the database as always.

:class:`Loader` does the load and the check in a background thread, with a connection of its
own to the database; the index it returns is installed by the thread that next needs it. A
small gallery's file (under :data:`PROVISIONAL_FACES`) that holds every change answers the first
search only, and is loaded by the second, in a fraction of a second: a command that searches
once (``faceid identify PHOTO``) then never imports FAISS nor decodes the index. One that is
behind the database is loaded, brought up to date and written again, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["PROVISIONAL_FACES", "Loader", "check", "search"]

log = logging.getLogger(__name__)

#: Index files of at least this many faces (where the approximate index starts) are searched
#: memory-mapped while they load in the background. Below, loading and checking the file takes a
#: fraction of a second (at 100,000 faces 0.48 s, load 3): the first search is answered from the
#: file, and the second loads it.
PROVISIONAL_FACES = 50_000

#: Scores computed at a time (queries x rows): 64 MB of floats.
SCORES = 1 << 24

#: How far a reported score may be from the one computed again from the database's embedding
#: (float32 sums in another order differ by about 1e-6).
TOLERANCE = 1e-4


class Loader:
    """Runs ``work`` in a daemon thread; :meth:`result` waits for it and returns its value (``None`` if it failed)."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._value: Any = None
        self._thread = threading.Thread(target=self._run, name="faceid-index-load", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except Exception as exc:  # the waiting thread then loads the index itself, and reports what is wrong
            log.info("loading the index in the background failed: %s", exc)

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> Any:
        self._thread.join()
        return self._value


def search(
    ids: np.ndarray,
    vectors: np.ndarray,
    skip: np.ndarray,
    extra_ids: np.ndarray,
    extra_vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact search of ``(n, D)`` float32 ``queries`` over the rows of ``ids`` ``(N,)`` / ``vectors`` ``(N, D)``
    (memory-mapped) but those at the places ``skip`` ``(s,)``, and over ``extra_ids`` ``(M,)`` /
    ``extra_vectors`` ``(M, D)``.

    Returns ``(scores (n, k) float32, ids (n, k) int64)``, best first; ``-inf`` and ``-1`` where
    there are fewer than ``k`` faces.
    """
    n = len(queries)
    best_scores = np.full((n, 0), -np.inf, np.float32)
    best_ids = np.zeros((n, 0), np.int64)

    def merge(scores: np.ndarray, row: np.ndarray) -> None:
        nonlocal best_scores, best_ids
        found = np.concatenate([best_ids, np.broadcast_to(row, scores.shape)], axis=1)
        scores = np.concatenate([best_scores, scores], axis=1)
        if scores.shape[1] > k:
            keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores, found = np.take_along_axis(scores, keep, 1), np.take_along_axis(found, keep, 1)
        best_scores, best_ids = scores, found

    rows = max(1, SCORES // max(1, n))
    for first in range(0, len(ids), rows):
        scores = queries @ vectors[first : first + rows].T
        scores[:, skip[(skip >= first) & (skip < first + rows)] - first] = -np.inf
        merge(scores, ids[first : first + rows])
    if len(extra_ids):
        merge(queries @ extra_vectors.T, extra_ids)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    scores, found = np.take_along_axis(best_scores, order, 1), np.take_along_axis(best_ids, order, 1)
    found = np.where(np.isfinite(scores), found, -1)
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        found = np.pad(found, ((0, 0), (0, pad)), constant_values=-1)
    return scores.astype(np.float32), found.astype(np.int64)


def check(
    queries: np.ndarray,
    scores: np.ndarray,
    found: np.ndarray,
    lookup: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> bool:
    """Whether every face in ``found`` ``(n, k)`` is enrolled in the database and scores what ``scores`` says.

    ``lookup(ids)`` returns ``(ids (m,), embeddings (m, D))`` of those of ``ids`` that are enrolled.
    """
    wanted = np.unique(found[found >= 0])
    held, stored = lookup(wanted)
    if len(held) != len(wanted) or not np.array_equal(np.sort(held), wanted):
        return False
    row = {int(i): j for j, i in enumerate(held.tolist())}
    for q, (line, faces) in enumerate(zip(scores, found)):
        for score, face in zip(line.tolist(), faces.tolist()):
            if face >= 0 and abs(float(stored[row[face]] @ queries[q]) - score) > TOLERANCE:
                return False
    return True
