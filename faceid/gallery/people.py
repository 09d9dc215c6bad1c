"""People and their faces: the rows of the truth store, read, written and checked.

Functions over an open connection; the caller chooses the transaction
(:meth:`~faceid.gallery.store.Store.write` or :meth:`~faceid.gallery.store.Store.snapshot`).
Embeddings are stored as ``D`` float32 values in native byte order.

Ids are never reused. They name faces and people to users and in the audit log, so an id once
given is not given again, even after its row is removed: SQLite would hand the largest rowid out
again once it is deleted, so ids come from a counter in ``meta`` (``last_id:<table>``) that only
grows (a gallery made before the counter starts it at its largest id).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceid.errors import GalleryCorruptError
from faceid.gallery import chips, thumbnails
from faceid.gallery.records import FaceRecord, NewFace, Person, n_faces, normalise_name, utc_now

__all__ = [
    "add_face",
    "add_person",
    "insert_face",
    "enrolled_count",
    "new_ids",
    "delete_person",
    "embeddings",
    "face_owners",
    "faces",
    "faces_by_id",
    "face_sources",
    "owners_of_image",
    "people",
    "person_id",
    "row_problems",
    "unit_vectors",
    "vector_problems",
]


def person_id(db: sqlite3.Connection, name: str) -> int | None:
    row = db.execute("SELECT id FROM people WHERE name = ?", (normalise_name(name),)).fetchone()
    return int(row[0]) if row else None


def people(db: sqlite3.Connection) -> list[Person]:
    """Everyone enrolled, by name, with their number of faces."""
    rows = db.execute(
        "SELECT p.id, p.name, COUNT(f.id), p.created_at FROM people p LEFT JOIN faces f ON f.person_id = p.id "
        "GROUP BY p.id ORDER BY p.name COLLATE NOCASE"
    ).fetchall()
    return [Person(*row) for row in rows]


def faces(db: sqlite3.Connection, name: str | None = None) -> list[FaceRecord]:
    """Enrolled faces (of the person named exactly ``name`` as stored, or all), oldest first."""
    query = (
        "SELECT f.id, p.name, f.image_path, f.image_sha256, f.box, f.confidence, f.created_at "
        "FROM faces f JOIN people p ON p.id = f.person_id"
    )
    args: tuple[str, ...] = ()
    if name is not None:
        query += " WHERE p.name = ?"
        args = (name,)
    rows = db.execute(query + " ORDER BY f.id", args).fetchall()
    return [FaceRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6]) for r in rows]


def faces_by_id(db: sqlite3.Connection, ids: Sequence[int]) -> list[FaceRecord]:
    """The faces with these ids (those that exist), by id."""
    wanted = sorted({int(i) for i in ids})
    marks = ",".join("?" * len(wanted))
    rows = db.execute(
        "SELECT f.id, p.name, f.image_path, f.image_sha256, f.box, f.confidence, f.created_at "
        f"FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id IN ({marks}) ORDER BY f.id",
        wanted,
    ).fetchall()
    return [FaceRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6]) for r in rows]


def face_sources(db: sqlite3.Connection) -> list[FaceRecord]:
    """Every face, by id, its person's name ``""`` where it has none."""
    rows = db.execute(
        "SELECT f.id, COALESCE(p.name, ''), f.image_path, f.image_sha256, f.box, f.confidence, f.created_at "
        "FROM faces f LEFT JOIN people p ON p.id = f.person_id ORDER BY f.id"
    ).fetchall()
    return [FaceRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6]) for r in rows]


def owners_of_image(db: sqlite3.Connection, sha256: str) -> list[str]:
    """Names of the people who have a face enrolled from the image with this SHA-256."""
    rows = db.execute(
        "SELECT DISTINCT p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.image_sha256 = ?",
        (sha256,),
    ).fetchall()
    return [r[0] for r in rows]


def face_owners(db: sqlite3.Connection, face_ids: np.ndarray) -> dict[int, str]:
    """Map face ids to the names of the people they belong to (ids not found are left out)."""
    wanted = sorted({int(i) for i in np.asarray(face_ids).reshape(-1) if i >= 0})
    owners: dict[int, str] = {}
    for start in range(0, len(wanted), 900):
        chunk = wanted[start : start + 900]
        marks = ",".join("?" * len(chunk))
        for fid, name in db.execute(
            f"SELECT f.id, p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id IN ({marks})",
            chunk,
        ).fetchall():
            owners[int(fid)] = name
    return owners


def embeddings(
    db: sqlite3.Connection, dimension: int, where: Path, after: int = -1, also: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Enrolled faces with ids above ``after``, and those of ``also`` ``(m,)`` int64 that are enrolled:
    ``(face_ids (N,) int64 ascending, person_ids (N,) int64, embeddings (N, D) float32)``.

    Only faces with a person: kept unknown faces are never searched. Raises
    :class:`GalleryCorruptError` (naming ``where``) if a stored embedding has another size.
    """
    rows = db.execute(
        "SELECT id, person_id, embedding FROM faces WHERE id > ? AND person_id IS NOT NULL ORDER BY id", (after,)
    ).fetchall()
    extra = sorted({int(i) for i in (also if also is not None else ()) if int(i) <= after})
    if extra:
        for start in range(0, len(extra), 900):
            chunk = extra[start : start + 900]
            rows += db.execute(
                "SELECT id, person_id, embedding FROM faces WHERE person_id IS NOT NULL "
                f"AND id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        rows.sort(key=lambda r: r[0])
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    owners = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    blob = b"".join(r[2] for r in rows)
    if len(blob) != 4 * dimension * len(rows):
        raise GalleryCorruptError(
            f"{where}: stored embeddings do not all have {dimension} float32 values; "
            "run `faceid gallery check`, and restore gallery.db from a backup (`faceid gallery restore BACKUP`)"
        )
    vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), dimension).copy()
    return ids, owners, vectors


def enrolled_count(db: sqlite3.Connection) -> int:
    """How many faces have a person (the faces the search index holds)."""
    return int(db.execute("SELECT COUNT(*) FROM faces WHERE person_id IS NOT NULL").fetchone()[0])


def unit_vectors(faces: Sequence[NewFace], dimension: int) -> list[np.ndarray]:
    """The embeddings of ``faces`` as ``(dimension,)`` float32 rows; ``ValueError`` unless each is a unit vector."""
    out = []
    for face in faces:
        vector = np.asarray(face.embedding, dtype=np.float32).reshape(-1)
        if vector.shape != (dimension,) or not np.all(np.isfinite(vector)):
            raise ValueError(f"embedding of shape {vector.shape} for a key of {dimension}-d embeddings")
        if abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
            raise ValueError("embeddings must be L2-normalised")
        out.append(vector)
    return out


def new_ids(db: sqlite3.Connection, table: str, count: int = 1) -> list[int]:
    """``count`` ids for new rows of ``table`` (``"people"`` or ``"faces"``) that no row of it ever had."""
    if table not in ("people", "faces"):
        raise ValueError(f"no id counter for table {table!r}")
    key = f"last_id:{table}"
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    largest = db.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]
    last = max(int(row[0]) if row else 0, int(largest))
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(last + count)))
    return list(range(last + 1, last + count + 1))


def add_person(db: sqlite3.Connection, name: str) -> int:
    """Insert a person (``name`` already normalised); return their id."""
    (pid,) = new_ids(db, "people")
    db.execute("INSERT INTO people (id, name, created_at) VALUES (?, ?, ?)", (pid, name, utc_now()))
    return pid


def add_face(
    db: sqlite3.Connection, face_id: int, person: int | None, vector: np.ndarray, face: NewFace, model: str
) -> None:
    """Insert face ``face_id`` (from :func:`new_ids`) of ``person`` (``None``: a kept unknown face) with its
    float32 ``vector``."""
    db.execute(
        "INSERT INTO faces (id, person_id, embedding, image_path, image_sha256, box, confidence, model, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            face_id,
            person,
            vector.tobytes(),
            face.image_path,
            face.image_sha256,
            json.dumps([int(v) for v in face.box]),
            float(face.confidence),
            model,
            utc_now(),
        ),
    )


def insert_face(
    db: sqlite3.Connection, face_id: int, person: int | None, vector: np.ndarray, face: NewFace, model: str
) -> None:
    """Store a new face and what comes with it (its thumbnail, its chip: :mod:`faceid.gallery.chips`): the
    one way faces are added, enrolled (``person``) or kept unknown (``None``); call inside the write transaction."""
    add_face(db, face_id, person, vector, face, model)
    if face.thumbnail is not None:
        thumbnails.store(db, face_id, face.thumbnail)
    if face.chip is not None:
        chips.store(db, face_id, face.chip)


def delete_person(db: sqlite3.Connection, person: int) -> int:
    """Delete a person and their faces; return how many faces went."""
    count = int(db.execute("SELECT COUNT(*) FROM faces WHERE person_id = ?", (person,)).fetchone()[0])
    db.execute("DELETE FROM faces WHERE person_id = ?", (person,))
    db.execute("DELETE FROM people WHERE id = ?", (person,))
    return count


def row_problems(db: sqlite3.Connection, dimension: int | None, where: Path) -> tuple[list[str], bool]:
    """Faces of a person who is not there, embeddings of the wrong size (kept unknown faces' too).

    Returns ``(problems, fatal)``; ``fatal`` when the embeddings cannot be read.
    """
    problems = []
    orphans = db.execute(
        "SELECT COUNT(*) FROM faces WHERE person_id IS NOT NULL AND person_id NOT IN (SELECT id FROM people)"
    ).fetchone()[0]
    if orphans:
        problems.append(f"{where}: {n_faces(orphans)} belong to no person")
    if dimension is not None:
        bad = db.execute("SELECT COUNT(*) FROM faces WHERE length(embedding) != ?", (4 * dimension,)).fetchone()[0]
        if bad:
            problems.append(
                f"{where}: {bad} embeddings do not have {dimension} float32 values; "
                "restore gallery.db from a backup (`faceid gallery restore BACKUP`)"
            )
            return problems, True
    return problems, False


def vector_problems(
    vectors: np.ndarray,
    where: Path | str,
    *,
    what: str = "embeddings",
    repair: str = "restore the gallery from a backup (`faceid gallery restore BACKUP`, docs/backup.md)",
) -> list[str]:
    """Stored embeddings that are not finite unit vectors (edited outside faceid)."""
    if not len(vectors):
        return []
    norms = np.linalg.norm(vectors, axis=1)
    odd = int(np.count_nonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > 1e-3)))
    if not odd:
        return []
    return [f"{where}: {odd} {what} are not finite unit vectors (edited outside faceid?); {repair}"]
