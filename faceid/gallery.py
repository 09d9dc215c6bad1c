"""The gallery: enrolled people and their face embeddings.

SQLite (``gallery.db``) is the source of truth. The FAISS index is a cache of the embeddings,
rebuilt from SQLite when it is missing, stale or does not agree with it; its file name carries
the database's write generation (``index-<generation>.faiss``), so a stale file is never used.
Every change is one SQLite transaction (``BEGIN IMMEDIATE``, waiting up to ``timeout`` seconds
for other writers), so a process killed at any moment leaves the gallery as it was before or
after the change. Deleted rows are overwritten (``secure_delete``) and every change is recorded
in an append-only audit table, without embeddings.

Scores are cosine similarities of unit vectors (inner products), higher is closer.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sqlite3
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from faceid._files import atomic_write_bytes, fsync_dir
from faceid.errors import (
    GalleryBusyError,
    GalleryCorruptError,
    GalleryError,
    InvalidNameError,
    ModelMismatchError,
    PersonNotFoundError,
)

__all__ = ["AuditEntry", "FaceRecord", "Gallery", "Person", "default_gallery_dir", "normalise_name"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_NAME_LENGTH = 200
DB_NAME = "gallery.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    image_path TEXT,
    image_sha256 TEXT NOT NULL,
    box TEXT NOT NULL,
    confidence REAL NOT NULL,
    model TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
CREATE INDEX IF NOT EXISTS faces_image ON faces(image_sha256);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    person TEXT,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def default_gallery_dir() -> Path:
    """``$FACEID_GALLERY``, else ``./gallery``."""
    return Path(os.environ.get("FACEID_GALLERY") or "gallery")


def normalise_name(name: str) -> str:
    """A person's name as stored: NFC, surrounding white space removed.

    Names are free text (spaces, accents, any script) and live only inside SQLite, never in a
    file path. Raises :class:`InvalidNameError` for empty names, names over
    ``MAX_NAME_LENGTH`` characters, and names with control characters (NUL, newlines, ...).
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"a name must be text, got {type(name).__name__}")
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise InvalidNameError("a name cannot be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"a name can have at most {MAX_NAME_LENGTH} characters, this one has {len(cleaned)}")
    bad = [c for c in cleaned if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") and c != "\u200d"]
    if bad:
        raise InvalidNameError(f"a name cannot hold control characters (found {', '.join(repr(c) for c in bad[:3])})")
    return cleaned


@dataclass(frozen=True)
class Person:
    """An enrolled person: ``name``, how many faces, and when they were first enrolled (UTC, ISO 8601)."""

    id: int
    name: str
    faces: int
    created_at: str


@dataclass(frozen=True)
class FaceRecord:
    """One enrolled face, without its embedding."""

    id: int
    person: str
    image_path: str | None
    image_sha256: str
    box: tuple[int, int, int, int]
    confidence: float
    created_at: str


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log: when, who (the OS user), what, to whom, and details."""

    id: int
    at: str
    user: str
    action: str
    person: str | None
    detail: dict


@dataclass(frozen=True)
class NewFace:
    """A face to enrol: its ``(D,)`` float32 unit embedding and where it came from."""

    embedding: np.ndarray
    image_sha256: str
    box: tuple[int, int, int, int]
    confidence: float
    image_path: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


class Gallery:
    """A folder holding ``gallery.db`` and its FAISS index cache.

    Args:
        path: the gallery folder (created, owner-only, if missing and ``create``); default
            :func:`default_gallery_dir`.
        create: create a new gallery when there is none.
        timeout: seconds to wait for another process's write lock before :class:`GalleryBusyError`.

    Use as a context manager, or call :meth:`close`. One ``Gallery`` object is for one thread.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True, timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_gallery_dir()
        self.timeout = float(timeout)
        db = self.path / DB_NAME
        if not db.exists():
            if not create:
                raise GalleryError(f"{self.path}: no gallery here (no {DB_NAME}); enrol someone to create one")
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(db, os.O_CREAT | os.O_WRONLY, 0o600)  # SQLite's journals copy these permissions
            os.close(fd)
        elif not db.is_file():
            raise GalleryError(f"{db}: not a file")
        try:
            self._db = sqlite3.connect(db, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit'").fetchone()[0] == 0:
                self._create_schema()
        except sqlite3.DatabaseError as exc:
            raise GalleryCorruptError(
                f"{db}: not a readable SQLite database ({exc}); restore it from a backup, "
                "or move it away to start a new gallery"
            ) from None
        schema = self._meta("schema")
        if schema != str(SCHEMA_VERSION):
            raise GalleryError(f"{db}: gallery schema {schema}, this faceid reads {SCHEMA_VERSION}")
        self._lock = threading.Lock()
        self._closed = False
        self._index: Any = None  # a faiss index, or None until first searched
        self._index_generation: int | None = None

    def _create_schema(self) -> None:
        try:
            self._db.executescript(
                "BEGIN IMMEDIATE;"
                + _SCHEMA
                + f"INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA_VERSION}');"
                + "INSERT OR IGNORE INTO meta VALUES ('generation', '0');"
                + "COMMIT;"
            )
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    # -- context management -------------------------------------------------------------------

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Write the index cache if it is current, and close the database."""
        if getattr(self, "_closed", True):
            return
        try:
            if self._index is not None and self._index_generation == self.generation:
                self._save_index()
        except Exception as exc:  # a cache write failing must never lose data
            log.warning("could not write the index cache: %s", exc)
        self._db.close()
        self._closed = True

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise GalleryBusyError(
                    f"{self.path}: another process has been writing to the gallery for over "
                    f"{self.timeout:g} s; try again"
                ) from None
            raise
        try:
            yield self._db
            self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _audit(self, action: str, person: str | None, **detail) -> None:
        self._db.execute(
            "INSERT INTO audit (at, user, action, person, detail) VALUES (?, ?, ?, ?, ?)",
            (_now(), _user(), action, person, json.dumps(detail, sort_keys=True)),
        )

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def generation(self) -> int:
        """How many changes the gallery has seen; the index cache is tied to it."""
        return int(self._meta("generation") or 0)

    # -- embedding model ------------------------------------------------------------------------

    @property
    def embedding_key(self) -> dict | None:
        """The model and preprocessing that made this gallery's embeddings, or ``None`` while empty of them."""
        value = self._meta("embedding_key")
        return json.loads(value) if value else None

    def check_embedding_key(self, key: dict) -> None:
        """Raise :class:`ModelMismatchError` unless ``key`` is this gallery's (or it has none yet)."""
        mine = self.embedding_key
        if mine is not None and mine != key:
            differing = sorted(k for k in set(mine) | set(key) if mine.get(k) != key.get(k))
            raise ModelMismatchError(
                f"{self.path}: its embeddings were made with {json.dumps(mine, sort_keys=True)}; refusing to mix in "
                f"embeddings made with {json.dumps(key, sort_keys=True)} (differs in {', '.join(differing)}). "
                "Use the gallery's settings, or enrol into a new gallery (--gallery DIR)."
            )

    @property
    def dimension(self) -> int | None:
        key = self.embedding_key
        return int(key["dimension"]) if key else None

    # -- settings -------------------------------------------------------------------------------

    def get_setting(self, name: str) -> object | None:
        value = self._meta(f"setting:{name}")
        return json.loads(value) if value is not None else None

    def set_setting(self, name: str, value: object) -> None:
        """Store a setting (for example the calibrated threshold); ``None`` removes it."""
        with self._write():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (f"setting:{name}",))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"setting:{name}", json.dumps(value)))
            self._audit("setting", None, name=name, value=value)

    # -- people ---------------------------------------------------------------------------------

    def people(self) -> list[Person]:
        """Everyone enrolled, by name."""
        rows = self._db.execute(
            "SELECT p.id, p.name, COUNT(f.id), p.created_at FROM people p LEFT JOIN faces f ON f.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name COLLATE NOCASE"
        ).fetchall()
        return [Person(*row) for row in rows]

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM people").fetchone()[0])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._person_id(name) is not None

    @property
    def face_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM faces").fetchone()[0])

    def _person_id(self, name: str) -> int | None:
        row = self._db.execute("SELECT id FROM people WHERE name = ?", (normalise_name(name),)).fetchone()
        return int(row[0]) if row else None

    def person(self, name: str) -> Person:
        pid = self._person_id(name)
        if pid is None:
            raise PersonNotFoundError(f"no person named {normalise_name(name)!r} in {self.path}")
        return next(p for p in self.people() if p.id == pid)

    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Enrolled faces (of one person, or all), oldest first."""
        query = (
            "SELECT f.id, p.name, f.image_path, f.image_sha256, f.box, f.confidence, f.created_at "
            "FROM faces f JOIN people p ON p.id = f.person_id"
        )
        args: tuple = ()
        if name is not None:
            if self._person_id(name) is None:
                raise PersonNotFoundError(f"no person named {normalise_name(name)!r} in {self.path}")
            query += " WHERE p.name = ?"
            args = (normalise_name(name),)
        rows = self._db.execute(query + " ORDER BY f.id", args).fetchall()
        return [FaceRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6]) for r in rows]

    def find_image(self, sha256: str) -> list[str]:
        """Names of the people who have a face enrolled from the image with this SHA-256."""
        rows = self._db.execute(
            "SELECT DISTINCT p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.image_sha256 = ?",
            (sha256,),
        ).fetchall()
        return [r[0] for r in rows]

    def add_faces(self, name: str, faces: Sequence[NewFace], *, embedding_key: dict) -> list[int]:
        """Enrol ``faces`` for ``name`` (created if new) in one transaction; return the new face ids.

        Raises:
            ModelMismatchError: the gallery's embeddings come from another model or preprocessing.
            InvalidNameError: the name is not acceptable (see :func:`normalise_name`).
            ValueError: an embedding has the wrong shape or is not finite and unit-length.
        """
        name = normalise_name(name)
        rows = []
        for face in faces:
            vector = np.asarray(face.embedding, dtype=np.float32).reshape(-1)
            if vector.shape != (int(embedding_key["dimension"]),) or not np.all(np.isfinite(vector)):
                raise ValueError(f"embedding of shape {vector.shape} for a {embedding_key['dimension']}-d gallery")
            if abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
                raise ValueError("embeddings must be L2-normalised")
            rows.append((vector, face))
        if not rows:
            return []
        with self._write():
            self.check_embedding_key(embedding_key)
            if self.embedding_key is None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('embedding_key', ?)", (json.dumps(embedding_key, sort_keys=True),)
                )
            pid = self._person_id(name)
            created = pid is None
            if created:
                pid = self._db.execute("INSERT INTO people (name, created_at) VALUES (?, ?)", (name, _now())).lastrowid
            ids = []
            for vector, face in rows:
                cursor = self._db.execute(
                    "INSERT INTO faces (person_id, embedding, image_path, image_sha256, box, confidence, model, "
                    "created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        pid,
                        vector.tobytes(),
                        face.image_path,
                        face.image_sha256,
                        json.dumps([int(v) for v in face.box]),
                        float(face.confidence),
                        embedding_key["model"],
                        _now(),
                    ),
                )
                ids.append(int(cursor.lastrowid or 0))
            self._audit(
                "enroll",
                name,
                new_person=created,
                faces=ids,
                images=[face.image_path or face.image_sha256 for _, face in rows],
            )
        return ids

    def rename(self, old: str, new: str) -> None:
        """Rename a person; their faces stay. Raises if ``old`` is absent or ``new`` is taken by someone else."""
        old_n, new_n = normalise_name(old), normalise_name(new)
        with self._write():
            pid = self._person_id(old_n)
            if pid is None:
                raise PersonNotFoundError(f"no person named {old_n!r} in {self.path}")
            other = self._person_id(new_n)
            if other is not None and other != pid:
                raise InvalidNameError(f"{new_n!r} is already enrolled; remove or rename them first")
            self._db.execute("UPDATE people SET name = ? WHERE id = ?", (new_n, pid))
            self._audit("rename", new_n, old=old_n, new=new_n)

    def remove(self, name: str) -> int:
        """Remove a person and every face of theirs; return how many faces went.

        The rows are overwritten in the database file (``secure_delete``) and the index cache is
        rewritten without them, so the embeddings cannot be read back from the gallery's files.
        """
        name_n = normalise_name(name)
        with self._write():
            pid = self._person_id(name_n)
            if pid is None:
                raise PersonNotFoundError(f"no person named {name_n!r} in {self.path}")
            count = self._db.execute("SELECT COUNT(*) FROM faces WHERE person_id = ?", (pid,)).fetchone()[0]
            self._db.execute("DELETE FROM faces WHERE person_id = ?", (pid,))
            self._db.execute("DELETE FROM people WHERE id = ?", (pid,))
            self._audit("remove", name_n, faces=int(count))
        self._refresh_index(force_write=True)
        return int(count)

    def audit_log(self) -> list[AuditEntry]:
        rows = self._db.execute("SELECT id, at, user, action, person, detail FROM audit ORDER BY id").fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # -- search ---------------------------------------------------------------------------------

    def embeddings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All enrolled faces as ``(face_ids (N,) int64, person_ids (N,) int64, embeddings (N, D) float32)``."""
        rows = self._db.execute("SELECT id, person_id, embedding FROM faces ORDER BY id").fetchall()
        dim = self.dimension or 0
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        people = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dim).copy()
        return ids, people, vectors

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar enrolled faces of each query.

        Args:
            queries: ``(n, D)`` float32 unit rows.
        Returns:
            ``(scores, face_ids)``, both ``(n, k)``: cosine similarities, best first (float32) and
            face ids (int64), ``-1`` where fewer than ``k`` faces are enrolled.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        index = self._current_index()
        n = len(queries)
        if index is None or index.ntotal == 0:
            return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        if queries.shape[1] != index.d:
            raise ModelMismatchError(f"queries have {queries.shape[1]} dimensions, the gallery {index.d}")
        from faceid.index import search

        scores, ids = search(index, queries, k)
        scores[ids < 0] = -np.inf
        return scores, ids

    @property
    def index_spec(self):
        """The kind of search index in use (:class:`faceid.index.IndexSpec`): exact or approximate, chosen by size."""
        from faceid.index import spec_of

        return spec_of(self._current_index())

    def face_owners(self, face_ids: np.ndarray) -> dict[int, str]:
        """Map face ids to the names of the people they belong to (ids not found are left out)."""
        wanted = sorted({int(i) for i in np.asarray(face_ids).reshape(-1) if i >= 0})
        owners: dict[int, str] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for fid, name in self._db.execute(
                f"SELECT f.id, p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id IN ({marks})", chunk
            ):
                owners[int(fid)] = name
        return owners

    # -- the index cache ------------------------------------------------------------------------

    def _index_file(self, generation: int) -> Path:
        return self.path / f"index-{generation}.faiss"

    def _current_index(self):
        with self._lock:
            generation = self.generation
            if self._index is None or self._index_generation != generation:
                self._load_or_build_index()
            return self._index

    def _load_or_build_index(self) -> None:
        import faiss

        self._db.execute("BEGIN")  # one snapshot: the generation and the rows it names
        try:
            generation = self.generation
            ids, _, vectors = self.embeddings()
        finally:
            self._db.execute("COMMIT")
        path = self._index_file(generation)
        index = None
        if path.is_file():
            try:
                index = faiss.read_index(str(path))
                if not _index_matches(index, ids):
                    log.warning("%s does not match the database; rebuilding it", path)
                    index = None
            except RuntimeError as exc:
                log.warning("%s is unreadable (%s); rebuilding it", path, exc)
                index = None
        if index is None:
            dimension = self.dimension or (vectors.shape[1] if vectors.size else 0)
            index = _build_index(ids, vectors, dimension, self._index)
        self._index, self._index_generation = index, generation
        if not path.is_file():
            self._save_index()

    def _refresh_index(self, *, force_write: bool = False) -> None:
        with self._lock:
            self._load_or_build_index()
            if force_write:
                self._save_index()

    def _save_index(self) -> None:
        import faiss

        if self._index is None or self._index_generation is None:
            return
        path = self._index_file(self._index_generation)
        data = faiss.serialize_index(self._index).tobytes()
        atomic_write_bytes(path, data, mode=0o600)
        for old in self.path.glob("index-*.faiss"):
            if old != path:
                _shred(old)
        fsync_dir(self.path)

    def rebuild_index(self) -> int:
        """Rebuild the index cache from SQLite and write it; return how many faces it holds."""
        with self._lock:
            for old in self.path.glob("index-*.faiss"):
                _shred(old)
            self._index = None
            self._load_or_build_index()
            self._save_index()
            return int(self._index.ntotal)

    def check(self) -> list[str]:
        """Problems found in the gallery's files (empty when it is sound)."""
        problems = []
        result = self._db.execute("PRAGMA integrity_check").fetchall()
        if [r[0] for r in result] != ["ok"]:
            problems.append(
                f"{self.path / DB_NAME}: SQLite integrity check failed: {'; '.join(r[0] for r in result[:5])}"
            )
        orphans = self._db.execute(
            "SELECT COUNT(*) FROM faces WHERE person_id NOT IN (SELECT id FROM people)"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} faces belong to no person")
        dim = self.dimension
        if dim is not None:
            bad = self._db.execute("SELECT COUNT(*) FROM faces WHERE length(embedding) != ?", (4 * dim,)).fetchone()[0]
            if bad:
                problems.append(f"{bad} embeddings do not have {dim} float32 values")
        generation = self.generation
        path = self._index_file(generation)
        if path.is_file():
            import faiss

            try:
                index = faiss.read_index(str(path))
                ids, _, vectors = self.embeddings()
                if not _index_matches(index, ids):
                    problems.append(f"{path}: holds other faces than the database; run `faceid gallery rebuild-index`")
                elif len(ids) and not np.allclose(_index_contents(index)[1], vectors, atol=1e-6):
                    problems.append(f"{path}: vectors differ from the database; run `faceid gallery rebuild-index`")
            except RuntimeError as exc:
                problems.append(f"{path}: unreadable ({exc}); run `faceid gallery rebuild-index`")
        stale = [p.name for p in self.path.glob("index-*.faiss") if p != path]
        if stale:
            problems.append(f"stale index files {', '.join(sorted(stale))}; run `faceid gallery rebuild-index`")
        return problems


def _build_index(ids: np.ndarray, vectors: np.ndarray, dimension: int, previous=None):
    """The search index for these faces: exact or approximate by their number (:mod:`faceid.index`).

    ``previous`` (the index in use, if any) keeps the kind near the switch-over size.
    """
    from faceid import index as search_index

    current = None
    if previous is not None:
        try:
            current = search_index.spec_of(previous)
        except ValueError:
            current = None
    spec = search_index.choose(len(ids), max(1, dimension), current)
    return search_index.build(ids, vectors, dimension, spec)


def _index_contents(index) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` held by a gallery index, sorted by id; empty for anything else."""
    from faceid.index import contents

    try:
        return contents(index)
    except ValueError:
        return np.zeros(0, np.int64), np.zeros((0, max(1, int(index.d))), np.float32)


def _index_matches(index, ids: np.ndarray) -> bool:
    try:
        from faceid.index import spec_of

        spec_of(index)
    except ValueError:
        return False
    return index.ntotal == len(ids) and np.array_equal(_index_contents(index)[0], ids)


def _shred(path: Path) -> None:
    """Overwrite a file with zeros before unlinking it (best effort; the file system may keep copies)."""
    try:
        size = path.stat().st_size
        with open(path, "r+b") as handle:
            handle.write(b"\0" * size)
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
    except FileNotFoundError:
        pass
