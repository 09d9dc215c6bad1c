"""k-nearest-neighbour graphs of unit rows: exact below a size (FAISS), IVF cells above (FAISS's
k-means, the cells joined by numpy matrix products).

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
    :data:`EXACT_GRAPH_LIMIT` rows; else IVF cells (seeded k-means on a sample) with ``nprobe``
    cells searched per row (:func:`_cell_join`: what an ``IndexIVFFlat`` finds, faster). The face
    itself is left out; rows are sorted by score,
    ties by smaller index, so the graph does not depend on FAISS's order of equal scores.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if exact is None:
        exact = n <= EXACT_GRAPH_LIMIT
    want = min(k + 1, n)
    if not exact and n >= 4 * 1024:
        return _cell_join(x, k, nprobe)
    index: Any = faiss.IndexFlatIP(d)
    index.add(x)
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        s, i = index.search(x[start:stop], want)
        rows = np.arange(start, stop)[:, None]
        s = np.where((i == rows) | (i < 0), -np.inf, s)
        ids[start:stop], scores[start:stop] = _best(s, i, k)
    return Neighbours(ids, scores, True)


def _best(s: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of candidate rows ``s`` / ``i`` ``(B, C)`` (``-inf`` = none): by score, ties by
    smaller index; ``(B, k)`` ids (``-1`` = none) and scores."""
    i = np.where(np.isfinite(s), i, np.iinfo(np.int64).max)
    order = np.lexsort((i, -s), axis=1)[:, :k]
    take = min(k, order.shape[1])
    ids = np.full((len(s), k), -1, dtype=np.int64)
    scores = np.full((len(s), k), -np.inf, dtype=np.float32)
    s_sorted = np.take_along_axis(s, order, axis=1)[:, :take]
    i_sorted = np.take_along_axis(i, order, axis=1)[:, :take]
    ok = np.isfinite(s_sorted)
    ids[:, :take] = np.where(ok, i_sorted, -1)
    scores[:, :take] = np.where(ok, s_sorted, -np.inf)
    return ids, scores


def _cell_join(x: np.ndarray, k: int, nprobe: int) -> Neighbours:
    """The IVF graph as a cell self-join by matrix products.

    Seeded k-means cells (FAISS); each face belongs to its nearest cell and is compared with the
    members of its ``nprobe`` nearest cells: the same comparisons as an ``IndexIVFFlat`` search
    with that ``nprobe`` (so the same graph), but done cell by cell as one BLAS matrix product of
    the faces probing the cell against its members, instead of one face at a time (several
    times faster on a CPU). A running best ``k`` per face is merged after each cell.
    """
    import faiss
    from threadpoolctl import threadpool_limits

    n, d = x.shape
    cells = int(min(IVF_MAX_CELLS, max(64, n // IVF_FACES_PER_CELL)))
    take = min(n, IVF_TRAIN_PER_CELL * cells)
    sample = x if take >= n else x[np.sort(np.random.default_rng(0).choice(n, take, replace=False))]
    log.info("training the IVF graph cells: %d cells on %d of %d faces", cells, len(sample), n)
    kmeans = faiss.Clustering(d, cells)
    kmeans.seed = 1234
    kmeans.niter = 10  # as FAISS's IndexIVF trains its cells
    kmeans.spherical = True
    quantiser = faiss.IndexFlatIP(d)
    kmeans.train(sample, quantiser)
    probes = min(cells, nprobe)
    near = np.empty((n, probes), dtype=np.int64)
    for start in range(0, n, BLOCK):
        _, near[start : start + BLOCK] = quantiser.search(x[start : start + BLOCK], probes)
    home = near[:, 0]  # each face's own cell
    members_order = np.argsort(home, kind="stable")
    member_starts = np.searchsorted(home[members_order], np.arange(cells + 1))
    flat = near.ravel()
    probe_order = np.argsort(flat, kind="stable")  # (face, probe) pairs by cell
    probe_starts = np.searchsorted(flat[probe_order], np.arange(cells + 1))
    probers_all = probe_order // probes
    del near, flat, probe_order
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    # one BLAS thread: these products are small, and OpenBLAS's threads spin on a busy machine
    # (measured: 8x slower with 2 threads at load 10 on 2 cores)
    with threadpool_limits(1, user_api="blas"):
        for c in range(cells):
            members = members_order[member_starts[c] : member_starts[c + 1]]  # ascending face indices
            if not len(members):
                continue
            xm = x[members].T.copy()
            probers = probers_all[probe_starts[c] : probe_starts[c + 1]]
            for lo in range(0, len(probers), BLOCK):
                q = probers[lo : lo + BLOCK]
                s = x[q] @ xm
                own = np.flatnonzero(home[q] == c)  # faces of this cell: not compared with themselves
                s[own, np.searchsorted(members, q[own])] = -np.inf
                cand_s = np.hstack([scores[q], s])
                cand_i = np.hstack([ids[q], np.broadcast_to(members, s.shape)])
                if cand_s.shape[1] > k:  # the best k so far, unordered (ordered once at the end)
                    part = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
                    cand_s = np.take_along_axis(cand_s, part, axis=1)
                    cand_i = np.take_along_axis(cand_i, part, axis=1)
                scores[q, : cand_s.shape[1]], ids[q, : cand_s.shape[1]] = cand_s, cand_i
    ids = np.where(np.isfinite(scores), ids, -1)
    for start in range(0, n, BLOCK):  # by score, ties by smaller index
        ids[start : start + BLOCK], scores[start : start + BLOCK] = _best(
            scores[start : start + BLOCK], ids[start : start + BLOCK], k
        )
    return Neighbours(ids, scores, False)
