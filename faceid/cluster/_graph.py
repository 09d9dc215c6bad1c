"""k-nearest-neighbour graphs of unit rows, by FAISS: exact below a size, an IVF index above.

Scores are cosine similarities of unit vectors (inner products), higher is closer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Up to this many faces the graph is exact (every face compared with every face, in blocks).
EXACT_GRAPH_LIMIT = 60_000
#: Rows searched per block (bounds the ``block x N`` similarity scratch FAISS allocates).
BLOCK = 16_384
#: IVF index for larger sets: ``N / IVF_FACES_PER_CELL`` cells, at most ``IVF_MAX_CELLS``, ``nprobe``
#: of them searched per face, k-means trained on ``IVF_TRAIN_PER_CELL`` faces per cell. Measured
#: on the bench's synthetic identities (100,000 faces, neighbours of cosine >= 0.6 found, load
#: 13 on 2 cores): 1,264 cells found 81% at nprobe 16; 4,096 cells 86% at nprobe 2, 94% at 16
#: (in 128 dimensions, identities far apart, small cells fit identities better).
IVF_FACES_PER_CELL = 24
IVF_MAX_CELLS = 4096
IVF_NPROBE = 16
IVF_TRAIN_PER_CELL = 40


@dataclass(frozen=True)
class Neighbours:
    """Each face's ``k`` nearest other faces.

    ``ids`` ``(N, k)`` int64 face indices (``-1`` where there are fewer than ``k``), ``scores``
    ``(N, k)`` float32 cosine similarities, best first; ``exact`` says whether every face was
    compared with every face.
    """

    ids: np.ndarray
    scores: np.ndarray
    exact: bool


def knn_brute_force(x: np.ndarray, k: int) -> Neighbours:
    """The exact oracle: numpy similarities of every pair; ties by smaller index. For tests, small N."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    k_eff = min(k, max(0, n - 1))
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), -s), axis=1)[:, :k_eff]
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    ids[:, :k_eff] = order
    scores[:, :k_eff] = np.take_along_axis(s, order, axis=1)
    return Neighbours(ids, scores, True)


def knn_graph(x: np.ndarray, k: int, *, exact: bool | None = None, nprobe: int = IVF_NPROBE) -> Neighbours:
    """The ``k`` nearest other rows of each row of ``x`` ``(N, D)`` float32 (unit rows).

    Exact (``IndexFlatIP``, searched in blocks) when ``exact`` or, by default, up to
    :data:`EXACT_GRAPH_LIMIT` rows; else an ``IndexIVFFlat`` (seeded k-means on a sample) with
    ``nprobe`` cells searched per row. The face itself is left out; rows are sorted by score,
    ties by smaller index, so the graph does not depend on FAISS's order of equal scores.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if exact is None:
        exact = n <= EXACT_GRAPH_LIMIT
    want = min(k + 1, n)
    index: Any
    if exact or n < 4 * 1024:
        index = faiss.IndexFlatIP(d)
        exact = True
    else:
        cells = int(min(IVF_MAX_CELLS, max(64, n // IVF_FACES_PER_CELL)))
        quantiser = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantiser, d, cells, faiss.METRIC_INNER_PRODUCT)
        take = min(n, IVF_TRAIN_PER_CELL * cells)
        sample = x if take >= n else x[np.sort(np.random.default_rng(0).choice(n, take, replace=False))]
        index.cp.seed = 1234
        log.info("training the IVF graph index: %d cells on %d of %d faces", cells, len(sample), n)
        index.train(sample)
        index.nprobe = min(cells, nprobe)
    index.add(x)
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        s, i = index.search(x[start:stop], want)
        rows = np.arange(start, stop)[:, None]
        s = np.where((i == rows) | (i < 0), -np.inf, s)
        i = np.where(np.isfinite(s), i, np.iinfo(np.int64).max)
        order = np.lexsort((i, -s), axis=1)[:, :k]
        take = min(k, order.shape[1])
        s_sorted = np.take_along_axis(s, order, axis=1)[:, :take]
        i_sorted = np.take_along_axis(i, order, axis=1)[:, :take]
        ok = np.isfinite(s_sorted)
        ids[start:stop, :take] = np.where(ok, i_sorted, -1)
        scores[start:stop, :take] = np.where(ok, s_sorted, -np.inf)
    return Neighbours(ids, scores, bool(exact))
