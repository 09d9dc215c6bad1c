"""Grouping that goes on from existing groups: new faces join, found groups merge, as one run would.

Average-link agglomeration (:mod:`faceid.cluster._agglomerate`) can start from groups as well as
from single faces: a group is a node holding the sum of its unit embeddings and its size, and the
average link of two nodes is still exact. :func:`settle` runs it on the existing groups plus the
faces in no group, so that, as photos arrive in batches:

- a new face joins a group when they are each other's best candidate and their link clears the
  bar (:func:`faceid.cluster._agglomerate.needed`), as it would in one run over every face;
- new faces form new groups among themselves;
- groups whose average link clears the bar merge, old ones included, and a face that clears the
  bar for several groups helps merge them (its group's link to the next one rises) instead of
  being left out or starting another group.

Only the faces that may search (``searchable``: the new ones) and the groups they reach are
compared with the rest, so a step's cost follows the new faces, not the gallery. The same rules
as one run hold: two faces of one photo never end in one group, nor a face and a group it was
moved out of, nor two groups holding such a pair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceid.cluster._agglomerate import agglomerate

__all__ = ["Settlement", "settle"]

log = logging.getLogger(__name__)

#: Rows searched per block against the node means.
SEARCH_BLOCK = 4096


@dataclass(frozen=True)
class Settlement:
    """Where :func:`settle` put things.

    ``faces`` ``(M,)`` int64: per face handed in, an existing group ``0 .. G-1`` (the surviving
    one if groups merged), a new group ``G + j`` (``j`` from 0, biggest first, ties by smallest
    face index), or ``-1`` for none. ``merged_into`` ``(G,)`` int64: each existing group's
    surviving group (itself when it did not merge; the biggest of a merge survives, ties by
    smaller index). ``new_groups``: how many new groups.
    """

    faces: np.ndarray
    merged_into: np.ndarray
    new_groups: int

    @property
    def merges(self) -> int:
        """How many existing groups were merged into another."""
        return int(np.sum(self.merged_into != np.arange(len(self.merged_into))))


def _unit_rows(faces: np.ndarray) -> np.ndarray:
    """``faces`` as C-contiguous float32 ``(M, D)`` unit rows, or ValueError saying what is wrong."""
    x = np.ascontiguousarray(faces, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"faces must be an (M, D) array, got shape {x.shape}")
    if len(x) and (not np.all(np.isfinite(x)) or np.max(np.abs(np.linalg.norm(x, axis=1) - 1.0)) > 1e-3):
        raise ValueError("faces must be finite unit rows (L2-normalised)")
    return x


def _pairs_sharing(keys: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """``(P, 2)`` node pairs with an equal key (e.g. a photo), from ``(key, node)`` rows."""
    if len(keys) == 0:
        return np.zeros((0, 2), np.int64)
    order = np.lexsort((nodes, keys))
    keys, nodes = keys[order], nodes[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    out = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        if e - s > 1:
            members = np.unique(nodes[s:e])
            i, j = np.triu_indices(len(members), 1)
            out.append(np.stack([members[i], members[j]], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), np.int64)


def settle(
    group_sums: np.ndarray,
    group_sizes: np.ndarray,
    faces: np.ndarray,
    *,
    params: Any = None,
    searchable: np.ndarray | None = None,
    touched: np.ndarray | None = None,
    face_photos: np.ndarray | None = None,
    group_photos: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
    forbidden: np.ndarray | None = None,
    cannot_link: np.ndarray | None = None,
    group_cannot_link: np.ndarray | None = None,
) -> Settlement:
    """Go on grouping from existing groups (see the module docstring).

    Args:
        group_sums: ``(G, D)`` float sums of each existing group's unit embeddings.
        group_sizes: ``(G,)`` faces per group (``0``: an empty slot, never joined).
        faces: ``(M, D)`` unit rows of the faces in no group.
        params: a :class:`faceid.cluster.GroupingParams` (its defaults otherwise).
        searchable: ``(M,)`` bool, the faces that look for candidates (default all); the others
            are found only by them.
        touched: existing group indices that also look for candidates (e.g. groups just formed).
        face_photos: ``(M,)`` int photo id per face (``-1`` = unknown).
        group_photos: ``(P, 2)`` int ``(photo id, group)`` rows, or a function that gives the rows
            of the groups it is handed (called once, with the groups a merge may reach).
        forbidden: ``(F, 2)`` ``(face, group)`` a face must not join (it was moved out of it).
        cannot_link: ``(C, 2)`` ``(face, face)`` never in one group.
        group_cannot_link: ``(Q, 2)`` ``(group, group)`` never merged.
    """
    import faiss

    from faceid.cluster import GroupingParams

    params = params or GroupingParams()
    x = _unit_rows(faces)
    sizes_g = np.asarray(group_sizes, dtype=np.int64).ravel()
    g, m = len(sizes_g), len(x)
    sums_g = np.asarray(group_sums, dtype=np.float64).reshape(g, -1) if g else np.zeros((0, x.shape[1]))
    if g and m and sums_g.shape[1] != x.shape[1]:
        raise ValueError(f"faces are {x.shape[1]}-d, the groups {sums_g.shape[1]}-d")
    out_faces = np.full(m, -1, np.int64)
    merged_into = np.arange(g, dtype=np.int64)
    search = np.ones(m, bool) if searchable is None else np.asarray(searchable, bool).ravel()
    extra = np.zeros(0, np.int64) if touched is None else np.asarray(touched, np.int64).ravel()
    if (m == 0 or not search.any()) and not len(extra):
        return Settlement(out_faces, merged_into, 0)
    d = x.shape[1] if m else sums_g.shape[1]
    node_sums = np.concatenate([sums_g, x.astype(np.float64)]).reshape(g + m, d)
    node_sizes = np.concatenate([sizes_g, np.ones(m, np.int64)]).astype(np.float64)
    live = node_sizes > 0
    means = np.zeros((g + m, d), np.float32)
    means[live] = node_sums[live] / node_sizes[live, None]
    index = faiss.IndexFlatIP(d)
    index.add(means)
    k = min(params.k, g + m - 1)
    if k < 1:
        return Settlement(out_faces, merged_into, 0)

    def edges_from(rows: np.ndarray) -> np.ndarray:
        found = []
        for start in range(0, len(rows), SEARCH_BLOCK):
            q = rows[start : start + SEARCH_BLOCK]
            s, i = index.search(means[q], k + 1)
            ok = (i >= 0) & (i != q[:, None]) & (s >= params.floor) & live[np.maximum(i, 0)]
            found.append(np.stack([np.broadcast_to(q[:, None], i.shape)[ok], i[ok]], axis=1))
        return np.concatenate(found) if found else np.zeros((0, 2), np.int64)

    face_edges = edges_from(g + np.flatnonzero(search))
    reached = np.unique(np.concatenate([face_edges.ravel(), extra]))
    groups_reached = reached[(reached < g)]
    groups_reached = groups_reached[live[groups_reached]]
    edges = np.concatenate([face_edges, edges_from(groups_reached)]).astype(np.int64)
    if not len(edges):
        return Settlement(out_faces, merged_into, 0)
    nodes = np.unique(edges.ravel())  # the compact node set, ascending (groups first)
    local = np.searchsorted(nodes, edges)
    links = [np.zeros((0, 2), np.int64)]
    node_groups = nodes[nodes < g]
    # photos: (photo, node) rows of the nodes in play, then every pair of nodes sharing a photo
    keys, owners = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    if face_photos is not None:
        p = np.asarray(face_photos, np.int64).ravel()
        face_nodes = nodes[nodes >= g]
        fp = p[face_nodes - g]
        keys.append(fp[fp >= 0])
        owners.append(face_nodes[fp >= 0])
    if group_photos is not None and len(node_groups):
        rows = group_photos(node_groups) if callable(group_photos) else np.asarray(group_photos, np.int64)
        rows = np.asarray(rows, np.int64).reshape(-1, 2)
        rows = rows[np.isin(rows[:, 1], node_groups) & (rows[:, 0] >= 0)]
        keys.append(rows[:, 0])
        owners.append(rows[:, 1])
    links.append(_pairs_sharing(np.concatenate(keys), np.concatenate(owners)))
    if forbidden is not None:
        f = np.asarray(forbidden, np.int64).reshape(-1, 2)
        links.append(np.stack([g + f[:, 0], f[:, 1]], axis=1))
    if cannot_link is not None:
        links.append(g + np.asarray(cannot_link, np.int64).reshape(-1, 2))
    if group_cannot_link is not None:
        links.append(np.asarray(group_cannot_link, np.int64).reshape(-1, 2))
    cl = np.concatenate(links)
    cl = cl[np.isin(cl, nodes).all(axis=1)]
    roots = agglomerate(
        node_sums[nodes],
        local,
        params.threshold,
        np.searchsorted(nodes, cl),
        floor=params.floor,
        sizes=node_sizes[nodes],
    )
    # read the components: one with an existing group continues the biggest of them
    new_members: list[np.ndarray] = []
    order = np.argsort(roots, kind="stable")
    starts = np.flatnonzero(np.r_[True, roots[order][1:] != roots[order][:-1]])
    for lo, hi in zip(starts.tolist(), np.r_[starts[1:], len(order)].tolist()):
        members = nodes[order[lo:hi]]
        grp = members[members < g]
        fcs = members[members >= g] - g
        if len(grp):
            survivor = int(grp[np.lexsort((grp, -sizes_g[grp]))][0])
            merged_into[grp] = survivor
            out_faces[fcs] = survivor
        elif len(fcs) >= params.min_group:
            new_members.append(np.sort(fcs))
    new_members.sort(key=lambda f: (-len(f), int(f[0])))
    for j, fcs in enumerate(new_members):
        out_faces[fcs] = g + j
    settlement = Settlement(out_faces, merged_into, len(new_members))
    log.info(
        "settled %d faces: %d joined groups, %d new groups, %d groups merged",
        m,
        int(np.sum((out_faces >= 0) & (out_faces < g))),
        len(new_members),
        settlement.merges,
    )
    return settlement
