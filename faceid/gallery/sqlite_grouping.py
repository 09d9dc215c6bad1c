"""Grouping kept unknown faces in a local gallery: each step reads only what it must from SQLite.

:func:`group_step` is :meth:`SqliteBackend.group_faces <faceid.gallery.sqlite.SqliteBackend.group_faces>`:
new faces are settled against the existing groups through their cached embedding sums
(:mod:`faceid.gallery.groupsums`; :func:`faceid.cluster.incremental.settle`: they join groups,
form new ones, and groups whose link clears the bar merge), so its cost follows the new faces,
not the gallery; the faces left over are settled with them while they are few, when their number
grew by a quarter, or when the step brings at least as many new faces (:data:`LEFTOVERS_ALWAYS`).
The plan is computed in a read snapshot and written only if
nothing changed meanwhile (else computed again under the write lock).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceid.gallery import groupsums
from faceid.gallery.records import GroupingUpdate
from faceid.gallery.store import Store, Unchanged
from faceid.gallery.unknown_settle import settle_faces

__all__ = ["LEFTOVERS_ALWAYS", "group_step", "unknown_embeddings"]


def group_step(store: Store, dimension: int, *, full: bool, leftovers: bool | None, params: Any) -> GroupingUpdate:
    """One grouping step (``full``: every kept face grouped again from scratch)."""
    if store.schema < 2:
        return GroupingUpdate(0, 0, 0, 0)
    # computed outside the write lock (minutes for a million faces), written only if
    # nothing changed meanwhile; else computed again under the lock
    with store.snapshot():
        generation = store.generation()
        plan = _plan(store.db, dimension, full, leftovers, params)
    if plan is None:
        return GroupingUpdate(0, 0, 0, _unknown_count(store.db))
    try:
        return _write_plan(store, plan, generation, dimension, leftovers, params)
    except Unchanged:  # another process placed the faces meanwhile
        return GroupingUpdate(0, 0, 0, _unknown_count(store.db))


def _unknown_count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM faces WHERE person_id IS NULL").fetchone()[0])


def _write_plan(
    store: Store, plan: _Plan, generation: int, dimension: int, leftovers: bool | None, params: Any
) -> GroupingUpdate:
    # a plan that changes no face (only the cache and the bookkeeping) makes no new generation
    versioned = bool(len(plan.ids)) or plan.full or bool(plan.merges)
    with store.write(versioned=versioned) as db:
        if store.generation() != generation:
            again = _plan(db, dimension, plan.full, leftovers, params)
            if again is None:
                raise Unchanged
            plan = again
            if not versioned and (len(plan.ids) or plan.full or plan.merges):
                db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        fresh = sorted({g for g in plan.groups.tolist() if g < 0})  # placeholders for new groups: -1, -2, ...
        numbers = dict(zip(sorted(fresh, reverse=True), _new_group_ids(db, len(fresh))))
        if plan.full:
            db.execute("UPDATE faces SET group_id = NULL WHERE person_id IS NULL AND group_id IS NOT NULL")
            if groupsums.exists(db):
                db.execute("DELETE FROM group_sums")
        db.executemany(
            "UPDATE faces SET group_id = ? WHERE id = ? AND person_id IS NULL",
            [(numbers.get(g, g) if g != 0 else None, i) for i, g in zip(plan.ids.tolist(), plan.groups.tolist())],
        )
        db.executemany(
            "UPDATE faces SET group_id = ? WHERE group_id = ? AND person_id IS NULL",
            [(into, old) for old, into in plan.merges.items()],
        )
        if plan.sums and groupsums.exists(db):  # after the updates: their triggers dropped the old rows
            gids = list(plan.sums)
            groupsums.store(
                db,
                [numbers.get(g, g) for g in gids],
                [plan.sums[g][0] for g in gids],
                [plan.sums[g][1] for g in gids],
            )
        _set_meta(db, "grouping:tried", plan.tried)
        if plan.left is not None:
            _set_meta(db, "grouping:left", plan.left)
    return plan.update


def _rows(db: sqlite3.Connection, query: str, ids: Sequence[int]) -> list[tuple[Any, ...]]:
    """``query`` (with ``IN ({})``) over ``ids`` in chunks SQLite accepts."""
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), 900):
        chunk = list(ids[start : start + 900])
        out += db.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall()
    return out


def _new_group_ids(db: sqlite3.Connection, count: int) -> list[int]:
    """``count`` group ids never given before (a counter in ``meta`` that only grows)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'last_id:groups'").fetchone()
    largest = db.execute("SELECT COALESCE(MAX(group_id), 0) FROM faces").fetchone()[0]
    last = max(int(row[0]) if row else 0, int(largest))
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_id:groups', ?)", (str(last + count),))
    return list(range(last + 1, last + count + 1))


#: Faces in no group are settled at every grouping step while there are at most this many; above,
#: when their number grew by a quarter of what was left last time (at least this many more), or when
#: the step brings at least as many new faces as are waiting (settling them then costs at most about
#: twice the step's own search). :meth:`UnknownFaces.update_groups`. It was 2,000: then 20,000 faces
#: kept in 4 shuffled batches ended at BCubed F 0.88 against one run's 1.0, with 2,981 faces waiting
#: in no group, while settling them took 0.37 s (`faceid bench --only unknown --sizes 20000`,
#: ``unknown_batches``). Leftovers are always settled against the groups, never grouped among
#: themselves only: above 20,000 they once were, and the groups they formed never met the groups
#: of the same people (200,000 faces in 4 batches: BCubed F 0.899 after settling, one run 0.996).
LEFTOVERS_ALWAYS = 20_000

#: Rows read from SQLite at a time when reading many faces' embeddings.
_READ_BATCH = 10_000


@dataclass(frozen=True)
class _Plan:
    """What a grouping step writes: ``groups`` per face of ``ids`` (an existing group id, ``0`` for
    none, ``-1, -2, ...`` for new groups, biggest first); ``sums``: ``(sum, size)`` to cache per group
    (id or placeholder); ``tried``: the largest face id attach has seen; ``left``: faces left in no
    group when the leftovers were grouped (``None``: they were not); ``merges``: old group id -> the
    group it merged into."""

    ids: np.ndarray
    groups: np.ndarray
    update: GroupingUpdate
    sums: dict[int, tuple[np.ndarray, int]]
    tried: int
    left: int | None
    full: bool
    merges: dict[int, int] = field(default_factory=dict)


def _meta_int(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def _set_meta(db: sqlite3.Connection, key: str, value: int) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(int(value))))


def _read(
    db: sqlite3.Connection, where: str, args: Sequence[Any], dimension: int
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``(ids (N,) int64, photo hashes, embeddings (N, D) float32)`` of the kept unknown faces ``where``, by id;
    read in batches into one array (no list of a million blobs)."""
    where = f"person_id IS NULL AND {where}"
    (n,) = db.execute(f"SELECT COUNT(*) FROM faces WHERE {where}", args).fetchone()
    ids = np.zeros(n, np.int64)
    vectors = np.zeros((n, dimension), np.float32)
    shas: list[str] = []
    cursor = db.execute(f"SELECT id, image_sha256, embedding FROM faces WHERE {where} ORDER BY id", args)
    done = 0
    while batch := cursor.fetchmany(_READ_BATCH):
        end = min(done + len(batch), n)
        batch = batch[: end - done]
        ids[done:end] = [r[0] for r in batch]
        shas += [r[1] for r in batch]
        vectors[done:end] = np.frombuffer(b"".join(r[2] for r in batch), np.float32).reshape(-1, dimension)
        done = end
    return ids[:done], shas, vectors[:done]


def unknown_embeddings(db: sqlite3.Connection, dimension: int) -> np.ndarray:
    """``(N, D)`` float32 embeddings of every kept unknown face, by id (for ``gallery check``)."""
    return _read(db, "1", (), dimension)[2]


def _exclusion_pairs(db: sqlite3.Connection, ids: np.ndarray) -> list[tuple[int, int]]:
    """Every face-face exclusion ``(face, other)`` that involves one of ``ids`` (either end)."""
    query = "SELECT face_id, other_id FROM face_exclusions WHERE other_id IS NOT NULL AND {} IN ({})"
    pairs: set[tuple[int, int]] = set()
    values = ids.tolist()
    for column in ("face_id", "other_id"):
        for start in range(0, len(values), 900):
            chunk = values[start : start + 900]
            pairs.update(db.execute(query.format(column, ",".join("?" * len(chunk))), chunk).fetchall())
    return sorted(pairs)


def _plan(db: sqlite3.Connection, dimension: int, full: bool, leftovers: bool | None, params: Any) -> _Plan | None:
    """What a grouping step would write, or ``None`` if it would change nothing."""
    if dimension <= 0:
        return None
    if full:
        ids, shas, vectors = _read(db, "1", (), dimension)
        if not len(ids):
            return None
        groups, update, new_sums = _group_new(db, ids, shas, vectors, params)
        grouped = groups != 0  # the others are in no group once the write has cleared every group
        return _Plan(ids[grouped], groups[grouped], update, new_sums, int(ids.max()), update.ungrouped, True)
    tried_before = _meta_int(db, "grouping:tried")
    (largest,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM faces").fetchone()  # ids only grow
    tried = max(tried_before, int(largest))
    (ungrouped,) = db.execute("SELECT COUNT(*) FROM faces WHERE group_id IS NULL AND person_id IS NULL").fetchone()
    left_before = _meta_int(db, "grouping:left")

    def due(unplaced: int) -> bool:  # the leftovers are grouped while few, or when they grew by a quarter
        return unplaced <= LEFTOVERS_ALWAYS or unplaced - left_before >= max(LEFTOVERS_ALWAYS, left_before // 4)

    sums: dict[int, tuple[np.ndarray, int]] = {}
    merges: dict[int, int] = {}
    ids, groups = np.zeros(0, np.int64), np.zeros(0, np.int64)
    attached = new_groups = newly = 0
    left: int | None = None
    everyone = False
    if db.execute("SELECT 1 FROM faces WHERE group_id IS NOT NULL LIMIT 1").fetchone():
        # go on from the groups (faceid.cluster.incremental): first the new faces; then, when the
        # leftovers are due, every face in no group (the new ones with them) in one settle instead
        if leftovers is None and tried > tried_before:
            (arrived,) = db.execute(
                "SELECT COUNT(*) FROM faces WHERE group_id IS NULL AND person_id IS NULL AND id > ?", (tried_before,)
            ).fetchone()
            if 0 < ungrouped - arrived <= arrived:  # as many new faces as waiting ones: settle them all together
                leftovers = True
        settled = None
        if not leftovers and tried > tried_before:
            new_ids, new_shas, new_vectors = _read(db, "group_id IS NULL AND id > ?", (tried_before,), dimension)
            if len(new_ids):
                settled = settle_faces(
                    db, new_ids, new_shas, new_vectors, dimension, params, _exclusion_pairs(db, new_ids)
                )
        placed = settled.attached + settled.newly_grouped if settled else 0
        if leftovers is None:
            leftovers = due(ungrouped - placed)
        everyone = bool(leftovers)
        if everyone:
            face_ids, shas, vectors = _read(db, "group_id IS NULL", (), dimension)
            settled = settle_faces(db, face_ids, shas, vectors, dimension, params, _exclusion_pairs(db, face_ids))
        if settled is not None:
            ids, groups, sums, merges = settled.ids, settled.groups, dict(settled.sums), settled.merges
            attached, new_groups, newly = settled.attached, settled.new_groups, settled.newly_grouped
        if everyone:
            left = ungrouped - attached - newly
    elif (due(ungrouped) if leftovers is None else leftovers) and ungrouped >= 2:
        rest_ids, rest_shas, rest_vectors = _read(db, "group_id IS NULL", (), dimension)
        rest_groups, grouping, sums = _group_new(db, rest_ids, rest_shas, rest_vectors, params)
        grouped = rest_groups != 0
        ids, groups = rest_ids[grouped], rest_groups[grouped]
        new_groups, newly = grouping.new_groups, grouping.newly_grouped
        left = grouping.ungrouped
    elif leftovers or (leftovers is None and due(ungrouped)):
        left = ungrouped
    if not len(ids) and not merges and tried == tried_before and not sums and (left is None or left == left_before):
        return None
    update = GroupingUpdate(attached, new_groups, newly, ungrouped - attached - newly, len(merges))
    return _Plan(ids, groups, update, sums, tried, left, False, merges)


def _group_new(
    db: sqlite3.Connection, ids: np.ndarray, shas: list[str], vectors: np.ndarray, params: Any
) -> tuple[np.ndarray, GroupingUpdate, dict[int, tuple[np.ndarray, int]]]:
    """Group the faces ``ids`` among themselves: ``(group per face: -1, -2, ... new, 0 none; summary;
    sums of the new groups by placeholder)``."""
    from faceid.cluster import group_faces

    groups = np.zeros(len(ids), np.int64)
    if len(ids) < 2:
        return groups, GroupingUpdate(0, 0, 0, len(ids)), {}
    photo_of: dict[str, int] = {}
    photos = np.array([photo_of.setdefault(sha, len(photo_of)) for sha in shas], np.int64)
    pairs = np.array(
        db.execute(
            "SELECT e.face_id, e.other_id FROM face_exclusions e JOIN faces a ON a.id = e.face_id "
            "JOIN faces b ON b.id = e.other_id WHERE a.person_id IS NULL AND b.person_id IS NULL"
        ).fetchall(),
        np.int64,
    ).reshape(-1, 2)
    inside = np.isin(pairs, ids).all(axis=1)
    links = np.searchsorted(ids, pairs[inside])  # face ids -> row indices (ids are sorted)
    grouping = group_faces(np.ascontiguousarray(vectors), photos=photos, cannot_link=links, params=params)
    grouped = grouping.labels >= 0
    groups[grouped] = -(grouping.labels[grouped] + 1)
    from faceid.cluster import GroupCentroids

    centroids = GroupCentroids.from_labels(vectors, grouping.labels)
    sums = {-(g + 1): (centroids.sums[g], int(centroids.sizes[g])) for g in range(grouping.groups)}
    newly = int(grouped.sum())
    return groups, GroupingUpdate(0, grouping.groups, newly, len(ids) - newly), sums
