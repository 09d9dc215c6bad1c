"""Face thumbnails: a small JPEG of each enrolled face, kept beside its embedding.

Biometric data like the embedding: the rows reference their face (``ON DELETE CASCADE``), so
removing a face or a person deletes its thumbnail in the same transaction, and the same secure
deletion (``secure_delete``, then ``VACUUM``: :mod:`faceid.gallery.deletion`) clears it from the
file. Thumbnails never go to the audit log. The table is made with the first thumbnail, so a
gallery made before thumbnails reads as having none.
"""

from __future__ import annotations

import sqlite3

__all__ = ["read", "store"]

_TABLE = (
    "CREATE TABLE IF NOT EXISTS face_thumbnails ("
    "face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE, jpeg BLOB NOT NULL)"
)


def store(db: sqlite3.Connection, face_id: int, jpeg: bytes) -> None:
    """Keep ``jpeg`` as face ``face_id``'s thumbnail; call inside the write transaction that adds the face."""
    db.execute(_TABLE)
    db.execute("INSERT OR REPLACE INTO face_thumbnails VALUES (?, ?)", (int(face_id), bytes(jpeg)))


def read(db: sqlite3.Connection, face_id: int) -> bytes | None:
    """The thumbnail of face ``face_id``, or ``None`` (enrolled before thumbnails were kept).

    Call inside a read snapshot. The table is looked up in the file itself (not SQLite's cached
    schema), so one made by another process since is seen.
    """
    if db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'face_thumbnails'").fetchone()[0] == 0:
        return None
    row = db.execute("SELECT jpeg FROM face_thumbnails WHERE face_id = ?", (int(face_id),)).fetchone()
    return bytes(row[0]) if row else None
