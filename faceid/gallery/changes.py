"""What changed since a generation: the faces an index of that generation must add and remove.

Faces are added with ids larger than any given before (:func:`faceid.gallery.people.new_ids`),
and removed. So an index that held the faces of generation ``G`` is brought up to date by adding
the faces whose ids are above the largest it has held, and removing the faces removed after
``G``, which this log records: one row per removed face id with the generation its removal
committed as. Only enrolled faces are indexed: a kept unknown face that is named enters the
index with its old id, and an enrolled face moved to unknown leaves it; both are logged here as
removed, and a consumer takes every logged face out, then puts back those enrolled now
(:class:`faceid.gallery.searchindex.Changes`). The log keeps the last
:data:`KEEP` removed faces; ``meta('removed_log_from')`` is the generation from which it is
complete (an index older than that is rebuilt from the database instead).

Face ids mean nothing once their face is gone (the audit log keeps them too), so the log keeps
nothing of a removed person's photos.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

__all__ = ["KEEP", "SCHEMA", "create", "exists", "note_removed", "note_removed_faces", "removed_since"]

#: Removed faces the log keeps; an index whose generation is older than the oldest removal it
#: keeps is rebuilt from the database.
KEEP = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS removed_faces (face_id INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS removed_faces_generation ON removed_faces(generation);
"""


def exists(db: sqlite3.Connection) -> bool:
    """Whether the gallery has the log (galleries made before it get it when next opened for writing)."""
    return bool(db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'removed_faces'").fetchone()[0])


def create(db: sqlite3.Connection, generation: int) -> None:
    """Create the log, complete from ``generation`` on; call inside a write transaction."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('removed_log_from', ?)", (str(generation),))


def note_removed(db: sqlite3.Connection, person: int, generation: int) -> None:
    """Record the faces of ``person`` as removed in ``generation``; call in the removal's transaction, before it."""
    db.execute(
        "INSERT OR REPLACE INTO removed_faces (face_id, generation) SELECT id, ? FROM faces WHERE person_id = ?",
        (generation, person),
    )
    _keep_last(db)


def note_removed_faces(db: sqlite3.Connection, face_ids: Sequence[int], generation: int) -> None:
    """Record single faces as removed in ``generation`` (``faceid serve``'s removal of one face); in its transaction."""
    db.executemany(
        "INSERT OR REPLACE INTO removed_faces (face_id, generation) VALUES (?, ?)",
        [(int(i), generation) for i in face_ids],
    )
    _keep_last(db)


def _keep_last(db: sqlite3.Connection) -> None:
    """Drop the oldest entries beyond :data:`KEEP`, and say from which generation the log is complete."""
    over = int(db.execute("SELECT COUNT(*) FROM removed_faces").fetchone()[0]) - KEEP
    if over > 0:
        (last,) = db.execute(
            "SELECT generation FROM removed_faces ORDER BY generation LIMIT 1 OFFSET ?", (over - 1,)
        ).fetchone()
        db.execute("DELETE FROM removed_faces WHERE generation <= ?", (last,))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('removed_log_from', ?)", (str(last),))


def removed_since(db: sqlite3.Connection, generation: int) -> np.ndarray | None:
    """Ids ``(n,)`` int64 of the faces removed after ``generation``; ``None`` if the log does not reach back to it."""
    if not exists(db):
        return None
    start = db.execute("SELECT value FROM meta WHERE key = 'removed_log_from'").fetchone()
    if start is None or generation < int(start[0]):
        return None
    rows = db.execute("SELECT face_id FROM removed_faces WHERE generation > ?", (generation,)).fetchall()
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
