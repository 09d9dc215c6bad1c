"""A cache of each group's embedding sum and size, so attaching new faces reads only them.

:func:`faceid.cluster.attach` needs every group's mean embedding. Computing it from the faces
reads every grouped face (a million rows); this table keeps ``(group, size, sum)`` instead,
written by the grouping that makes or grows a group, in the same transaction.

It can never give a wrong group: SQLite triggers delete a group's row in the transaction of any
change to the faces that could change it (a face inserted into, updated in or deleted from
that group, whatever the statement or program: naming, moving, forgetting, removing, a
re-embedding), so a row present is always the sum of the group's faces as they are. A group
without a row is summed from its faces when next needed and its row written again. A process
killed at any moment leaves the table as consistent as the rest of the transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

__all__ = ["SCHEMA", "create", "exists", "load", "store", "wrong_rows"]

#: The table and the triggers that keep it true (one statement each).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS group_sums (group_id INTEGER PRIMARY KEY, size INTEGER NOT NULL, sum BLOB NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS group_sums_insert AFTER INSERT ON faces WHEN NEW.group_id IS NOT NULL "
    "BEGIN DELETE FROM group_sums WHERE group_id = NEW.group_id; END",
    "CREATE TRIGGER IF NOT EXISTS group_sums_update AFTER UPDATE OF group_id, person_id, embedding ON faces "
    "WHEN OLD.group_id IS NOT NULL OR NEW.group_id IS NOT NULL "
    "BEGIN DELETE FROM group_sums WHERE group_id IN (OLD.group_id, NEW.group_id); END",
    "CREATE TRIGGER IF NOT EXISTS group_sums_delete AFTER DELETE ON faces WHEN OLD.group_id IS NOT NULL "
    "BEGIN DELETE FROM group_sums WHERE group_id = OLD.group_id; END",
)


def exists(db: sqlite3.Connection) -> bool:
    """Whether the gallery has the table and its triggers (older galleries get them when next opened for writing)."""
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'group_sums%'")}
    return {"group_sums", "group_sums_insert", "group_sums_update", "group_sums_delete"} <= names


def create(db: sqlite3.Connection) -> None:
    """Create the table and its triggers, empty: every group is summed from its faces when first needed.

    Also when only the triggers are missing (a rebuild of the faces table drops them): rows kept
    from before could be stale, so they go.
    """
    for statement in SCHEMA:
        db.execute(statement)
    db.execute("DELETE FROM group_sums")


def load(
    db: sqlite3.Connection, groups: np.ndarray, dimension: int, *, usable: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sums (G, D) float64, sizes (G,) int64, summed (G,) bool)`` for the sorted group ids ``groups``.

    Groups with a cached row take it; the others (``summed`` True) are summed from their faces
    here (and should be stored again by the caller's next write). ``usable``: the table exists.
    """
    g = len(groups)
    sums = np.zeros((g, dimension), np.float64)
    sizes = np.zeros(g, np.int64)
    have = np.zeros(g, bool)
    if usable and g:
        rows = [
            r
            for r in db.execute("SELECT group_id, size, sum FROM group_sums ORDER BY group_id")
            if len(r[2]) == 8 * dimension and r[1] > 0
        ]
        if rows:
            gids = np.array([r[0] for r in rows], np.int64)
            at = np.minimum(np.searchsorted(groups, gids), g - 1)
            ok = groups[at] == gids  # rows of groups that still exist
            at = at[ok]
            sums[at] = np.frombuffer(b"".join(r[2] for r in rows), np.float64).reshape(-1, dimension)[ok]
            sizes[at] = np.array([r[1] for r in rows], np.int64)[ok]
            have[at] = True
    missing = groups[~have]
    for start in range(0, len(missing), 900):
        chunk = [int(v) for v in missing[start : start + 900]]
        marks = ",".join("?" * len(chunk))
        found = db.execute(
            f"SELECT group_id, embedding FROM faces WHERE group_id IN ({marks}) AND person_id IS NULL", chunk
        ).fetchall()
        if found:
            at = np.searchsorted(groups, np.array([r[0] for r in found], np.int64))
            vectors = np.frombuffer(b"".join(r[1] for r in found), np.float32).reshape(-1, dimension)
            np.add.at(sums, at, vectors.astype(np.float64))
            np.add.at(sizes, at, 1)
    return sums, sizes, ~have


def store(db: sqlite3.Connection, groups: Sequence[int], sums: Sequence[np.ndarray], sizes: Sequence[int]) -> None:
    """Write the rows of ``groups``; call in the transaction that gave them these faces, after its updates."""
    db.executemany(
        "INSERT OR REPLACE INTO group_sums (group_id, size, sum) VALUES (?, ?, ?)",
        [
            (int(gid), int(size), np.ascontiguousarray(total, np.float64).tobytes())
            for gid, total, size in zip(groups, sums, sizes)
            if size > 0
        ],
    )


def wrong_rows(db: sqlite3.Connection, dimension: int) -> list[int]:
    """Group ids whose cached row is not the sum and size of the group's faces as they are (never any:
    for checks and tests)."""
    rows = db.execute("SELECT group_id, size, sum FROM group_sums ORDER BY group_id").fetchall()
    if not rows:
        return []
    groups = np.array([r[0] for r in rows], np.int64)
    true_sums, true_sizes, _ = load(db, groups, dimension, usable=False)
    return [
        int(gid)
        for (gid, size, blob), total, true_size in zip(rows, true_sums, true_sizes)
        if size != true_size
        or len(blob) != 8 * dimension
        or not np.allclose(np.frombuffer(blob, np.float64), total, atol=1e-4)
    ]
