"""Average-link agglomeration over a sparse graph, with cannot-link pairs, in vectorised rounds.

The average link of two groups of unit vectors ``A`` and ``B`` (the mean cosine similarity of
their ``|A| x |B|`` pairs) is the inner product of their mean vectors, so it is computed exactly
from per-group sums: no pairwise matrix is ever formed. The graph only says which groups are
candidates for a merge.

Each round, every group finds its best candidate (highest average link, ties by smaller group
id); pairs that chose each other ("reciprocal nearest neighbours") with a link of at least the
threshold merge, unless a cannot-link pair joins them, in which case that candidate edge is
dropped for good. The link a merge needs falls with the groups' sizes, from ``threshold`` for
two single faces towards ``floor`` (:func:`needed`); an edge whose link falls below ``floor`` is
dropped (no merge can use it again: a link to a merged group is a weighted mean of the links
to its parts). With ``floor == threshold`` and the complete graph, this is plain average link
and gives exactly the groups of the classic greedy agglomeration cut at the threshold (average
link is "reducible", so merging reciprocal pairs in parallel changes nothing); the tests check
that against scipy. A group's id is its smallest face index.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

#: Edges whose average link is recomputed per block (bounds the gathered ``block x D`` scratch).
LINK_BLOCK = 262_144


def _links(sums: np.ndarray, sizes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float64)
    for start in range(0, len(a), LINK_BLOCK):
        stop = min(len(a), start + LINK_BLOCK)
        ia, ib = a[start:stop], b[start:stop]
        out[start:stop] = np.einsum("ij,ij->i", sums[ia], sums[ib]) / (sizes[ia] * sizes[ib])
    return out


def agglomerate(
    x: np.ndarray,
    edges: np.ndarray,
    threshold: float,
    cannot_link: np.ndarray | None = None,
    *,
    floor: float | None = None,
    sizes: np.ndarray | None = None,
) -> np.ndarray:
    """Group rows of ``x`` ``(N, D)`` (unit rows) by average link over the candidate ``edges``.

    Args:
        x: ``(N, D)`` float32 or float64 unit rows.
        edges: ``(E, 2)`` int64 face index pairs that may start a merge (any order, duplicates allowed).
        threshold: the average cosine similarity two single faces need to merge.
        cannot_link: ``(P, 2)`` int64 face index pairs that must never end up in one group.
        floor: the limit of the needed average link for big groups (see :func:`needed`);
            ``None`` (or ``threshold``) gives plain average link cut at ``threshold``.
        sizes: ``(N,)`` to start from groups: then row ``i`` of ``x`` is the *sum* of the unit
            embeddings of a group of ``sizes[i]`` faces (``None``: every row one face).

    Returns:
        ``(N,)`` int64: each face's group id, the smallest face index in its group.
    """
    x = np.asarray(x)
    n = len(x)
    sums = x.astype(np.float64, copy=True)
    sizes = np.ones(n, dtype=np.float64) if sizes is None else np.asarray(sizes, dtype=np.float64).copy()
    root = np.arange(n, dtype=np.int64)
    a, b = _normalised(np.asarray(edges, dtype=np.int64).reshape(-1, 2), n)
    link = _links(sums, sizes, a, b)
    floor = threshold if floor is None else min(floor, threshold)
    keep = link >= floor
    a, b, link = a[keep], b[keep], link[keep]
    cl = (
        np.asarray(cannot_link, dtype=np.int64).reshape(-1, 2)
        if cannot_link is not None
        else np.zeros((0, 2), np.int64)
    )
    cl = cl[cl[:, 0] != cl[:, 1]]
    rounds = 0
    while len(a):
        rounds += 1
        eligible = link >= needed(sizes[a], sizes[b], threshold, floor)
        if not eligible.any():
            break
        best = _best_choice(a[eligible], b[eligible], link[eligible], n)
        mutual = eligible & (best[a] == b) & (best[b] == a)
        if not mutual.any():  # cannot happen: the smallest group on a best edge and its pick choose each other
            break
        if len(cl):
            ca, cb = root[cl[:, 0]], root[cl[:, 1]]
            blocked_keys = np.minimum(ca, cb) * n + np.maximum(ca, cb)
            blocked = mutual & np.isin(a * n + b, blocked_keys)
            if blocked.any():
                keep = ~blocked
                a, b, link = a[keep], b[keep], link[keep]
                continue  # choices change once those edges are gone
        ma, mb = a[mutual], b[mutual]  # ma < mb; each group in at most one pair
        sums[ma] += sums[mb]
        sizes[ma] += sizes[mb]
        sums[mb] = 0.0
        step = np.arange(n, dtype=np.int64)
        step[mb] = ma
        root = step[root]
        a, b = step[a], step[b]
        a, b = np.minimum(a, b), np.maximum(a, b)
        live = a != b
        a, b, link = a[live], b[live], link[live]
        merged = np.zeros(n, dtype=bool)
        merged[ma] = True
        changed = merged[a] | merged[b]
        # parallel edges appear only where an endpoint merged: keep one of each, recompute those
        key = a * n + b
        _, first = np.unique(key, return_index=True)
        unique = np.zeros(len(a), dtype=bool)
        unique[first] = True
        keep = unique
        a, b, link, changed = a[keep], b[keep], link[keep], changed[keep]
        if changed.any():
            link[changed] = _links(sums, sizes, a[changed], b[changed])
        keep = link >= floor
        a, b, link = a[keep], b[keep], link[keep]
    log.info("agglomeration: %d rounds, %d groups", rounds, len(np.unique(root)))
    return root


def needed(sa: np.ndarray | float, sb: np.ndarray | float, threshold: float, floor: float) -> np.ndarray:
    """The average link two groups of ``sa`` and ``sb`` faces need to merge: ``threshold`` for two
    single faces, falling towards ``floor`` as ``(sa * sb) ** -0.25`` (an average over more pairs
    is a steadier estimate, so it may be trusted at a lower value)."""
    sa, sb = np.asarray(sa, dtype=np.float64), np.asarray(sb, dtype=np.float64)
    if floor >= threshold:
        return np.full(np.broadcast(sa, sb).shape, threshold)
    return floor + (threshold - floor) * (sa * sb) ** -0.25


def _normalised(edges: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges ``(a, b)`` with ``a < b``, sorted; self-loops and ``-1`` entries dropped."""
    a, b = edges[:, 0], edges[:, 1]
    ok = (a >= 0) & (b >= 0) & (a != b)
    a, b = a[ok], b[ok]
    if len(a) and (max(a.max(), b.max()) >= n):
        raise ValueError(f"edge face index out of range for {n} faces")
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = np.unique(lo * n + hi)
    return key // n, key % n


def _best_choice(a: np.ndarray, b: np.ndarray, link: np.ndarray, n: int) -> np.ndarray:
    """``(n,)`` int64: each group's best neighbour over the edges (highest link, ties by smaller id), ``-1`` if none."""
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    val = np.concatenate([link, link])
    order = np.lexsort((dst, -val, src))
    src_sorted = src[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = src_sorted[1:] != src_sorted[:-1]
    best = np.full(n, -1, dtype=np.int64)
    best[src_sorted[first]] = dst[order][first]
    return best
