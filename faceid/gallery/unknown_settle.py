"""One incremental grouping step on the local gallery's SQLite store: read what
:func:`faceid.cluster.incremental.settle` needs (cached group sums, photos, the user's
exclusions), and say what to write.

The rule itself lives in :mod:`faceid.cluster.incremental`; this module only reads the store.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceid.gallery import groupsums

__all__ = ["Settled", "settle_faces"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settled:
    """What one step decided: ``ids`` (faces placed) and their ``groups`` (an existing group id,
    or ``-1, -2, ...`` for new groups, biggest first); ``merges`` old group id -> the group it
    merged into; ``sums`` ``(sum, size)`` per group (id or placeholder) to cache; counts."""

    ids: np.ndarray
    groups: np.ndarray
    sums: dict[int, tuple[np.ndarray, int]]
    merges: dict[int, int] = field(default_factory=dict)
    attached: int = 0
    new_groups: int = 0
    newly_grouped: int = 0


def _chunks(values: list[Any], size: int = 900) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def settle_faces(
    db: sqlite3.Connection,
    ids: np.ndarray,
    shas: list[str],
    vectors: np.ndarray,
    dimension: int,
    params: Any,
    exclusion_pairs: list[tuple[int, int]],
) -> Settled:
    """Settle the faces ``ids`` (in no group; ``vectors`` (n, D)) against the existing groups.

    ``exclusion_pairs``: the user's face-face exclusions involving ``ids``.
    """
    from faceid.cluster.incremental import settle

    existing = np.array(
        [r[0] for r in db.execute("SELECT DISTINCT group_id FROM faces WHERE group_id IS NOT NULL ORDER BY group_id")],
        np.int64,
    )
    group_sums, sizes, summed = groupsums.load(db, existing, dimension, usable=groupsums.exists(db))
    photo_of: dict[str, int] = {}
    photos = np.array([photo_of.setdefault(sha, len(photo_of)) for sha in shas], np.int64)

    def group_photos(dense: np.ndarray) -> np.ndarray:
        rows: list[tuple[int, int]] = []
        for chunk in _chunks([int(existing[d]) for d in dense.tolist()]):
            found = db.execute(
                f"SELECT DISTINCT image_sha256, group_id FROM faces WHERE group_id IN ({','.join('?' * len(chunk))}) "
                "AND person_id IS NULL",
                chunk,
            ).fetchall()
            rows += [
                (photo_of.setdefault(sha, len(photo_of)), int(np.searchsorted(existing, gid))) for sha, gid in found
            ]
        return np.array(rows, np.int64).reshape(-1, 2)

    position = {int(f): i for i, f in enumerate(ids.tolist())}
    others = sorted({y for p in exclusion_pairs for y in p if y not in position})
    group_of: dict[int, int] = {}
    for chunk in _chunks(others):
        found = db.execute(
            f"SELECT id, group_id FROM faces WHERE id IN ({','.join('?' * len(chunk))}) AND group_id IS NOT NULL",
            chunk,
        ).fetchall()
        group_of.update({int(f): int(np.searchsorted(existing, g)) for f, g in found})
    forbidden = sorted(
        {
            (position[a], group_of[b])
            for x, y in exclusion_pairs
            for a, b in ((x, y), (y, x))
            if a in position and b in group_of
        }
    )
    linked = [(position[x], position[y]) for x, y in exclusion_pairs if x in position and y in position]
    apart = db.execute(
        "SELECT a.group_id, b.group_id FROM face_exclusions e JOIN faces a ON a.id = e.face_id "
        "JOIN faces b ON b.id = e.other_id WHERE a.group_id IS NOT NULL AND b.group_id IS NOT NULL "
        "AND a.person_id IS NULL AND b.person_id IS NULL AND a.group_id != b.group_id"
    ).fetchall()
    group_apart = [(int(np.searchsorted(existing, a)), int(np.searchsorted(existing, b))) for a, b in apart]
    settled = settle(
        group_sums,
        sizes,
        vectors,
        params=params,
        face_photos=photos,
        group_photos=group_photos,
        forbidden=np.array(forbidden, np.int64).reshape(-1, 2),
        cannot_link=np.array(linked, np.int64).reshape(-1, 2),
        group_cannot_link=np.array(group_apart, np.int64).reshape(-1, 2),
    )
    g = len(existing)
    to = settled.faces
    new_sums = group_sums.copy()
    new_sizes = sizes.copy()
    touched = set(np.flatnonzero(summed).tolist())
    merges: dict[int, int] = {}
    for d in np.flatnonzero(settled.merged_into != np.arange(g)).tolist():
        survivor = int(settled.merged_into[d])
        new_sums[survivor] += group_sums[d]
        new_sizes[survivor] += sizes[d]
        merges[int(existing[d])] = int(existing[survivor])
        touched.add(survivor)
        touched.discard(d)
    joined = np.flatnonzero((to >= 0) & (to < g))
    for face in joined.tolist():
        new_sums[to[face]] += vectors[face]
        new_sizes[to[face]] += 1
        touched.add(int(to[face]))
    sums = {int(existing[d]): (new_sums[d], int(new_sizes[d])) for d in sorted(touched)}
    fresh = np.flatnonzero(to >= g)
    for j in range(settled.new_groups):
        members = fresh[to[fresh] == g + j]
        sums[-(j + 1)] = (vectors[members].astype(np.float64).sum(axis=0), len(members))
    placed = to >= 0
    targets = np.where(to >= g, -(to - g + 1), existing[np.clip(to, 0, max(g - 1, 0))] if g else 0)
    return Settled(
        ids[placed],
        targets[placed].astype(np.int64),
        sums,
        merges,
        attached=len(joined),
        new_groups=settled.new_groups,
        newly_grouped=len(fresh),
    )
