"""The gallery: enrolled people and their face embeddings.

SQLite (``gallery.db``) is the source of truth. The FAISS index is a cache of the embeddings;
its file name carries the database's write generation (``index-<generation>.faiss``), so a stale
file is never used, and a loaded file is used only if it holds exactly the database's face ids
and vectors. A file that does not is damage: it is reported (:attr:`Gallery.problems`, and by
:meth:`Gallery.check`) and left in place for ``faceid gallery rebuild-index``, and searches use an
index built from the database instead.

Every change is one SQLite transaction (``BEGIN IMMEDIATE``), so a process killed at any moment
leaves the gallery as it was before or after the change. Index files are written to a temp file
and renamed into place; index files of other generations and temp files a killed process left
behind are overwritten and deleted when the gallery is next opened or written. Reads and writes
of index files take an advisory lock on the gallery folder (shared to read, exclusive to write),
so no process reads a file while another overwrites it. Waiting for another process's lock lasts
at most ``timeout`` seconds, then :class:`GalleryBusyError`; SQLite's own errors never leave this
module (busy -> :class:`GalleryBusyError`, a damaged database -> :class:`GalleryCorruptError`).

Deleted rows are overwritten (``secure_delete``), and after a removal the database file is
rewritten (``VACUUM``): SQLite moves rows between pages as the tables change and leaves the old
copies in unused parts of pages, where ``secure_delete`` does not reach them. Every change is
recorded in an append-only audit table: when, which OS user, what, to whom, and face ids; never
embeddings, image paths or image hashes, so nothing of a removed person's photos stays behind
but their name.

Scores are cosine similarities of unit vectors (inner products), higher is closer.
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import os
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import numpy as np

from faceid._files import atomic_write_bytes, fsync_dir
from faceid.errors import (
    FaceNotFoundError,
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
    #: a small JPEG of the face (biometric data: stored beside the embedding, removed with it)
    thumbnail: bytes | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


_F = TypeVar("_F", bound=Callable[..., Any])


class _Unchanged(Exception):
    """Raised inside a write transaction to roll it back when there turned out to be nothing to write."""


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26
_INDEX_NAME = re.compile(r"index-(\d+)\.faiss")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _sqlite_kind(exc: sqlite3.Error) -> str | None:
    """``"busy"``, ``"corrupt"`` or ``None`` (another error) for an SQLite exception."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        primary = code & 0xFF
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return "busy"
        if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return "corrupt"
        return None
    message = str(exc).lower()
    if "locked" in message or "busy" in message:
        return "busy"
    if "malformed" in message or "not a database" in message:
        return "corrupt"
    return None


def _guarded(method: _F) -> _F:
    """Turn SQLite's busy and corruption errors into :class:`GalleryBusyError` and :class:`GalleryCorruptError`.

    Applied to every public method of :class:`Gallery`, so ``database is locked`` never reaches a user.
    """

    @functools.wraps(method)
    def wrapper(self: Gallery, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from exc

    return wrapper  # type: ignore[return-value]


class Gallery:
    """A folder holding ``gallery.db`` and its FAISS index cache.

    Args:
        path: the gallery folder (created, owner-only, if missing and ``create``); default
            :func:`default_gallery_dir`.
        create: create a new gallery when there is none.
        timeout: seconds to wait for another process's lock before :class:`GalleryBusyError`.

    Attributes:
        problems: damage found while this object used the gallery's files (for example an index
            file that does not match the database), one message each, saying how to repair it.
            The gallery worked around each (searches used an index built from the database);
            :meth:`check` looks for all of them.

    Use as a context manager, or call :meth:`close`. One ``Gallery`` object is for one thread;
    any number of processes may open the same gallery at once.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True, timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_gallery_dir()
        self.timeout = float(timeout)
        self.problems: list[str] = []
        self._closed = True  # until the database is open
        self._lock = threading.Lock()
        self._index: Any = None  # a faiss index, or None until first searched
        self._index_generation: int | None = None
        self._index_saved = False  # the index in memory is the one in its file
        self._damaged: set[int] = set()  # generations whose index file was found damaged
        #: who makes the changes, for the audit log (for example ``"key:phone-app"`` in the server);
        #: ``None`` records the OS user
        self.actor: str | None = None
        db = self.path / DB_NAME
        try:
            if not db.exists():
                if not create:
                    raise GalleryError(f"{self.path}: no gallery here (no {DB_NAME}); enrol someone to create one")
                self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(db, os.O_CREAT | os.O_WRONLY, 0o600)  # SQLite's journals copy these permissions
                os.close(fd)
            elif not db.is_file():
                raise GalleryError(f"{db}: not a file")
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise GalleryError(f"{self.path}: cannot create a gallery here ({reason})") from None
        try:
            self._db = sqlite3.connect(db, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise GalleryError(f"{db}: cannot open ({exc})") from None
        self._closed = False
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute("PRAGMA temp_store = MEMORY")  # VACUUM's copy of the gallery stays out of /tmp
            self._db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit'").fetchone()[0] == 0:
                self._create_schema()
            schema = self._meta("schema")
        except sqlite3.Error as exc:
            self._db.close()
            self._closed = True
            if _sqlite_kind(exc) == "busy":
                raise self._busy_error() from None
            raise GalleryCorruptError(
                f"{db}: not a readable SQLite database ({exc}); restore it from a backup, "
                "or move it away to start a new gallery"
            ) from None
        if schema != str(SCHEMA_VERSION):
            self.close()
            raise GalleryError(f"{db}: gallery schema {schema}, this faceid reads {SCHEMA_VERSION}")
        try:
            self._clear_stale_journal()
            if self._compaction_pending():  # a process was killed between a removal and its VACUUM
                self._compact(wait=False)
            self._sweep_if_needed()
        except BaseException:
            self.close()
            raise

    @_guarded
    def _clear_stale_journal(self) -> None:
        """Delete a rollback journal that a process killed early in a write left behind.

        SQLite rolls back a *hot* journal by itself on the first read; one killed before its
        journal header was synced is not hot, and SQLite leaves it until the next write. It
        holds old page images, so it is overwritten and deleted here, under the write lock
        (taken without waiting: a process writing now deletes its own journal when it commits).
        """
        journal = self.path / f"{DB_NAME}-journal"
        if not journal.exists():
            return
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return  # another process is writing; its commit deletes the journal
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        try:
            _shred(journal)  # not hot (SQLite would have rolled it back), and no one else can write now
        finally:
            self._db.execute("COMMIT")

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

    # -- errors -----------------------------------------------------------------------------------

    def _busy_error(self) -> GalleryBusyError:
        return GalleryBusyError(
            f"{self.path}: the gallery is busy: another process has held its lock for over {self.timeout:g} s; "
            "try again when it has finished"
        )

    def _translate(self, exc: sqlite3.Error) -> GalleryError | None:
        kind = _sqlite_kind(exc)
        if kind == "busy":
            return self._busy_error()
        if kind == "corrupt":
            return GalleryCorruptError(
                f"{self.path / DB_NAME}: the database is damaged ({exc}); run `faceid gallery check`, "
                "and restore gallery.db from a backup"
            )
        return None

    def _report(self, problem: str) -> None:
        """Record damage found while using the gallery (once per message)."""
        if problem not in self.problems:
            self.problems.append(problem)
            log.info("%s", problem)

    # -- context management -------------------------------------------------------------------

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Write the index cache if it is current and not yet written, and close the database."""
        if self._closed:
            return
        try:
            if self._index is not None and not self._index_saved and self._index_generation == self.generation:
                self._save_index()
        except Exception as exc:  # a cache write failing must never lose data
            log.warning("could not write the index cache: %s", exc)
        self._db.close()
        self._closed = True

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def _write(self, *, versioned: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``versioned=False`` for bookkeeping that changes no data (no new generation)."""
        self._db.execute("BEGIN IMMEDIATE")  # waits up to `timeout` for other writers
        try:
            yield self._db
            if versioned:
                self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read transaction: every query inside sees the same committed state."""
        if self._db.in_transaction:  # already inside one
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def _audit(self, action: str, person: str | None, **detail) -> None:
        self._db.execute(
            "INSERT INTO audit (at, user, action, person, detail) VALUES (?, ?, ?, ?, ?)",
            (_now(), self.actor or _user(), action, person, json.dumps(detail, sort_keys=True)),
        )

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    @_guarded
    def generation(self) -> int:
        """How many changes the gallery has seen; the index cache is tied to it."""
        return int(self._meta("generation") or 0)

    # -- embedding model ------------------------------------------------------------------------

    @property
    @_guarded
    def embedding_key(self) -> dict | None:
        """The model and preprocessing that made this gallery's embeddings, or ``None`` while empty of them."""
        value = self._meta("embedding_key")
        return json.loads(value) if value else None

    @_guarded
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

    @_guarded
    def get_setting(self, name: str) -> object | None:
        value = self._meta(f"setting:{name}")
        return json.loads(value) if value is not None else None

    @_guarded
    def set_setting(self, name: str, value: object) -> None:
        """Store a setting (for example the calibrated threshold); ``None`` removes it."""
        with self._write():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (f"setting:{name}",))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"setting:{name}", json.dumps(value)))
            self._audit("setting", None, name=name, value=value)

    # -- people ---------------------------------------------------------------------------------

    @_guarded
    def people(self) -> list[Person]:
        """Everyone enrolled, by name."""
        rows = self._db.execute(
            "SELECT p.id, p.name, COUNT(f.id), p.created_at FROM people p LEFT JOIN faces f ON f.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name COLLATE NOCASE"
        ).fetchall()
        return [Person(*row) for row in rows]

    @_guarded
    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM people").fetchone()[0])

    @_guarded
    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return self._person_id(name) is not None
        except InvalidNameError:
            return False

    @property
    @_guarded
    def face_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM faces").fetchone()[0])

    def _person_id(self, name: str) -> int | None:
        row = self._db.execute("SELECT id FROM people WHERE name = ?", (normalise_name(name),)).fetchone()
        return int(row[0]) if row else None

    @_guarded
    def person(self, name: str) -> Person:
        with self._snapshot():
            pid = self._person_id(name)
            if pid is None:
                raise PersonNotFoundError(f"no person named {normalise_name(name)!r} in {self.path}")
            return next(p for p in self.people() if p.id == pid)

    @_guarded
    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Enrolled faces (of one person, or all), oldest first."""
        query = (
            "SELECT f.id, p.name, f.image_path, f.image_sha256, f.box, f.confidence, f.created_at "
            "FROM faces f JOIN people p ON p.id = f.person_id"
        )
        args: tuple = ()
        with self._snapshot():
            if name is not None:
                if self._person_id(name) is None:
                    raise PersonNotFoundError(f"no person named {normalise_name(name)!r} in {self.path}")
                query += " WHERE p.name = ?"
                args = (normalise_name(name),)
            rows = self._db.execute(query + " ORDER BY f.id", args).fetchall()
        return [FaceRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6]) for r in rows]

    @_guarded
    def find_image(self, sha256: str) -> list[str]:
        """Names of the people who have a face enrolled from the image with this SHA-256."""
        return self._owners_of_image(sha256)

    def _owners_of_image(self, sha256: str) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.image_sha256 = ?",
            (sha256,),
        ).fetchall()
        return [r[0] for r in rows]

    @overload
    def add_faces(
        self,
        name: str,
        faces: Sequence[NewFace],
        *,
        embedding_key: dict,
        skip_known_images: Literal[False] = False,
    ) -> list[int]: ...

    @overload
    def add_faces(
        self, name: str, faces: Sequence[NewFace], *, embedding_key: dict, skip_known_images: Literal[True]
    ) -> list[int | None]: ...

    @_guarded
    def add_faces(
        self, name: str, faces: Sequence[NewFace], *, embedding_key: dict, skip_known_images: bool = False
    ) -> list[int] | list[int | None]:
        """Enrol ``faces`` for ``name`` (created if new) in one transaction; return the new face ids.

        With ``skip_known_images``, a face whose ``image_sha256`` is already in the gallery is not
        added and gets ``None`` for its id. The test is made inside the transaction, so processes
        enrolling the same photo at once add it exactly once.

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
        ids: list[int | None] = [None] * len(rows)
        try:
            with self._write():
                self.check_embedding_key(embedding_key)
                todo = [
                    i
                    for i, (_, face) in enumerate(rows)
                    if not (skip_known_images and self._owners_of_image(face.image_sha256))
                ]
                if not todo:
                    raise _Unchanged
                if self.embedding_key is None:
                    self._db.execute(
                        "INSERT INTO meta VALUES ('embedding_key', ?)", (json.dumps(embedding_key, sort_keys=True),)
                    )
                pid = self._person_id(name)
                created = pid is None
                if created:
                    pid = self._db.execute(
                        "INSERT INTO people (name, created_at) VALUES (?, ?)", (name, _now())
                    ).lastrowid
                for i in todo:
                    vector, face = rows[i]
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
                    face_id = int(cursor.lastrowid or 0)
                    ids[i] = face_id
                    if face.thumbnail is not None:
                        self._store_thumbnail(face_id, face.thumbnail)
                # who, when, what: face ids only. Image paths and hashes stay in the faces rows, which
                # `remove` overwrites, so the audit log keeps nothing of a removed person's photos.
                self._audit("enroll", name, new_person=created, faces=[ids[i] for i in todo])
        except _Unchanged:  # every photo was already enrolled: rolled back, no new generation
            pass
        return ids

    @_guarded
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

    @_guarded
    def remove(self, name: str) -> int:
        """Remove a person and every face of theirs; return how many faces went.

        The rows are overwritten in the database file (``secure_delete``), the file is then
        rewritten (``VACUUM``) so that no stale copy of them stays in an unused part of a page, and
        the index cache is rewritten without them (older index files are overwritten and
        deleted): the embeddings, image paths and hashes cannot be read back from the gallery's
        files. The rewrite waits for other processes' reads (up to ``timeout``); if they keep
        the gallery busy, the removal still stands, it is noted in :attr:`problems`, and the
        rewrite happens when the gallery is next opened.
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
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('removals', "
                "CAST(COALESCE((SELECT value FROM meta WHERE key = 'removals'), 0) AS INTEGER) + 1)"
            )
        self._scrub_after_removal(repr(name_n))
        return int(count)

    def _scrub_after_removal(self, what: str) -> None:
        """After a committed removal: rewrite the database file and the index cache (see :meth:`remove`)."""
        if not self._compact(wait=True):
            self._report(
                f"{self.path}: {what} is removed, but other processes kept the gallery busy, so "
                "old copies of the removed rows may stay in unused parts of gallery.db until faceid "
                "next opens the gallery while no one else uses it"
            )
        try:
            self._refresh_index()
        except (GalleryError, OSError) as exc:  # the removal is committed; the next open sweeps old files
            self._report(
                f"{self.path}: the index cache could not be rewritten after removing {what} ({exc}); "
                "run `faceid gallery rebuild-index`"
            )

    # -- single faces and their thumbnails ----------------------------------------------------------

    @_guarded
    def face(self, face_id: int) -> FaceRecord:
        """One enrolled face by id; :class:`FaceNotFoundError` if there is none."""
        row = self._db.execute(
            "SELECT f.id, p.name, f.image_path, f.image_sha256, f.box, f.confidence, f.created_at "
            "FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id = ?",
            (int(face_id),),
        ).fetchone()
        if row is None:
            raise FaceNotFoundError(f"no face with id {int(face_id)} in {self.path}")
        return FaceRecord(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5], row[6])

    @_guarded
    def remove_face(self, face_id: int) -> str:
        """Remove one face (securely, as :meth:`remove` does); return whose it was. The person stays."""
        face_id = int(face_id)
        with self._write():
            row = self._db.execute(
                "SELECT p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id = ?", (face_id,)
            ).fetchone()
            if row is None:
                raise FaceNotFoundError(f"no face with id {face_id} in {self.path}")
            self._db.execute("DELETE FROM faces WHERE id = ?", (face_id,))
            self._audit("remove-face", row[0], faces=[face_id])
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('removals', "
                "CAST(COALESCE((SELECT value FROM meta WHERE key = 'removals'), 0) AS INTEGER) + 1)"
            )
        self._scrub_after_removal(f"face {face_id}")
        return str(row[0])

    def _store_thumbnail(self, face_id: int, jpeg: bytes) -> None:
        """Inside a write transaction: keep ``jpeg`` as the face's thumbnail (deleted with the face)."""
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS face_thumbnails ("
            "face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE, jpeg BLOB NOT NULL)"
        )
        self._db.execute("INSERT OR REPLACE INTO face_thumbnails VALUES (?, ?)", (int(face_id), bytes(jpeg)))

    @_guarded
    def face_thumbnail(self, face_id: int) -> bytes | None:
        """The small JPEG stored for a face when it was enrolled, or ``None`` (enrolled before thumbnails)."""
        try:
            row = self._db.execute("SELECT jpeg FROM face_thumbnails WHERE face_id = ?", (int(face_id),)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return bytes(row[0]) if row else None

    @_guarded
    def _compaction_pending(self) -> bool:
        row = self._db.execute(
            "SELECT (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'removals'), "
            "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'compacted')"
        ).fetchone()
        return (row[0] or 0) > (row[1] or 0)

    @_guarded
    def _compact(self, *, wait: bool) -> bool:
        """Rewrite the database file (``VACUUM``) so no page keeps an old copy of a removed row.

        ``removals`` counts removals and ``compacted`` the removals a finished VACUUM covers, so a
        process killed in between leaves the work for the next open. Returns ``False`` if another
        process kept the database busy (without waiting, at once; else after ``timeout``).
        """
        if not wait:
            self._db.execute("PRAGMA busy_timeout = 0")
        try:
            removals = self._meta("removals") or "0"
            self._db.execute("VACUUM")
            with self._write(versioned=False):
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('compacted', "
                    "MAX(?, CAST(COALESCE((SELECT value FROM meta WHERE key = 'compacted'), 0) AS INTEGER)))",
                    (int(removals),),
                )
            return True
        except sqlite3.OperationalError as exc:
            if _sqlite_kind(exc) != "busy":
                raise
            return False
        finally:
            if not wait:
                self._db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")

    @_guarded
    def audit_log(self) -> list[AuditEntry]:
        rows = self._db.execute("SELECT id, at, user, action, person, detail FROM audit ORDER BY id").fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # -- search ---------------------------------------------------------------------------------

    @_guarded
    def embeddings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All enrolled faces as ``(face_ids (N,) int64, person_ids (N,) int64, embeddings (N, D) float32)``."""
        rows = self._db.execute("SELECT id, person_id, embedding FROM faces ORDER BY id").fetchall()
        dim = self.dimension or 0
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        people = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        blob = b"".join(r[2] for r in rows)
        if len(blob) != 4 * dim * len(rows):
            raise GalleryCorruptError(
                f"{self.path / DB_NAME}: stored embeddings do not all have {dim} float32 values; "
                "run `faceid gallery check`, and restore gallery.db from a backup"
            )
        vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), dim).copy()
        return ids, people, vectors

    @_guarded
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
    @_guarded
    def index_spec(self):
        """The kind of search index in use (:class:`faceid.index.IndexSpec`): exact or approximate, chosen by size."""
        from faceid.index import spec_of

        return spec_of(self._current_index())

    @_guarded
    def face_owners(self, face_ids: np.ndarray) -> dict[int, str]:
        """Map face ids to the names of the people they belong to (ids not found are left out)."""
        wanted = sorted({int(i) for i in np.asarray(face_ids).reshape(-1) if i >= 0})
        owners: dict[int, str] = {}
        with self._snapshot():
            for start in range(0, len(wanted), 900):
                chunk = wanted[start : start + 900]
                marks = ",".join("?" * len(chunk))
                for fid, name in self._db.execute(
                    f"SELECT f.id, p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id IN ({marks})",
                    chunk,
                ).fetchall():
                    owners[int(fid)] = name
        return owners

    # -- the index cache ------------------------------------------------------------------------

    def _index_file(self, generation: int) -> Path:
        return self.path / f"index-{generation}.faiss"

    @contextmanager
    def _files_lock(self, *, exclusive: bool) -> Iterator[None]:
        """An advisory lock on the gallery folder: shared to read index files, exclusive to write or delete them."""
        try:
            import fcntl
        except ImportError:  # no advisory locks here (Windows): index files are still replaced atomically
            yield
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(fd, operation)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._busy_error() from None
                    time.sleep(0.005)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _index_files(self) -> list[tuple[Path, int | None]]:
        """Index files and index temp files in the folder, with their generation (``None`` for temp files)."""
        found: list[tuple[Path, int | None]] = []
        for path in self.path.glob("*index-*.faiss*"):
            match = _INDEX_NAME.fullmatch(path.name)
            if match:
                found.append((path, int(match.group(1))))
            elif path.name.startswith(".index-") and path.name.endswith(".tmp"):
                found.append((path, None))
        return found

    def _sweep(self) -> None:
        """Overwrite and delete index files of other generations and leftover temp files.

        Hold the exclusive files lock: no process is then writing a temp file, and a writer that
        committed a newer generation cannot have written its file yet.
        """
        current = self.generation
        swept = False
        for path, generation in self._index_files():
            if generation != current:
                _shred(path)
                swept = True
        if swept:
            fsync_dir(self.path)

    def _sweep_if_needed(self) -> None:
        generation = self.generation
        if any(g != generation for _, g in self._index_files()):
            try:
                with self._files_lock(exclusive=True):
                    self._sweep()
            except OSError as exc:  # a read-only gallery still reads
                log.info("could not delete old index files in %s: %s", self.path, exc)

    def _current_index(self):
        with self._lock:
            generation = self.generation
            if self._index is None or self._index_generation != generation:
                self._load_or_build_index()
            return self._index

    def _load_or_build_index(self) -> None:
        with self._snapshot():  # the generation and the rows it names
            generation = self.generation
            ids, _, vectors = self.embeddings()
            dimension = self.dimension or 1
        index = self._read_index(generation, ids, vectors, dimension)
        self._index_saved = index is not None
        if index is None:
            index = _build_index(ids, vectors, dimension)
        self._index, self._index_generation = index, generation
        if not self._index_saved:
            self._save_index()

    def _read_index(self, generation: int, ids: np.ndarray, vectors: np.ndarray, dimension: int):
        """The index file of ``generation`` if it holds exactly ``ids`` and ``vectors``; else ``None``.

        A file that exists but does not match is reported (:attr:`problems`) and left in place.
        """
        path = self._index_file(generation)
        try:
            with self._files_lock(exclusive=False):
                data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._report(f"{path}: cannot read ({exc.strerror or exc}); searches use the database")
            return None
        index, problem = _parse_index(data, ids, vectors, dimension)
        if problem is not None:
            self._damaged.add(generation)
            self._report(
                f"{path}: {problem}; it was not used (searches use an index built from the database). "
                "Run `faceid gallery check`; `faceid gallery rebuild-index` rebuilds it from the database"
            )
        return index

    def _refresh_index(self) -> None:
        with self._lock:
            self._load_or_build_index()

    def _save_index(self) -> None:
        """Write the index of the current generation (atomically) and sweep away older files."""
        import faiss

        if self._index is None or self._index_generation is None:
            return
        data = faiss.serialize_index(self._index).tobytes()
        with self._files_lock(exclusive=True):
            current = self.generation
            if self._index_generation == current and current not in self._damaged:
                atomic_write_bytes(self._index_file(current), data, mode=0o600)
                self._index_saved = True
            self._sweep()

    @_guarded
    def rebuild_index(self) -> int:
        """Rebuild the index cache from SQLite and write it; return how many faces it holds."""
        with self._lock:
            self._damaged.clear()
            with self._snapshot():
                generation = self.generation
                ids, _, vectors = self.embeddings()
                dimension = self.dimension or 1
            self._index, self._index_generation = _build_index(ids, vectors, dimension), generation
            self._index_saved = False
            self._save_index()
            return int(self._index.ntotal)

    @_guarded
    def check(self) -> list[str]:
        """Problems found in the gallery's files (empty when it is sound), each with how to repair it.

        Checks SQLite's integrity, that every embedding is a finite unit vector of the gallery's
        dimension, that the faces agree with the audit log (a face deleted or added outside faceid
        shows), and that the current index file, if there is one, holds exactly the database's
        face ids and vectors.
        """
        problems = []
        db = self.path / DB_NAME
        with self._snapshot():
            result = self._db.execute("PRAGMA integrity_check").fetchall()
            if [r[0] for r in result] != ["ok"]:
                problems.append(
                    f"{db}: SQLite integrity check failed: {'; '.join(r[0] for r in result[:5])}; "
                    "restore gallery.db from a backup"
                )
                return problems
            orphans = self._db.execute(
                "SELECT COUNT(*) FROM faces WHERE person_id NOT IN (SELECT id FROM people)"
            ).fetchone()[0]
            if orphans:
                problems.append(f"{db}: {_faces(orphans)} belong to no person")
            dim = self.dimension
            if dim is not None:
                bad = self._db.execute("SELECT COUNT(*) FROM faces WHERE length(embedding) != ?", (4 * dim,))
                bad_count = bad.fetchone()[0]
                if bad_count:
                    problems.append(
                        f"{db}: {bad_count} embeddings do not have {dim} float32 values; "
                        "restore gallery.db from a backup"
                    )
                    return problems
            generation = self.generation
            ids, _, vectors = self.embeddings()
            problems += self._audit_problems()
        if len(vectors):
            norms = np.linalg.norm(vectors, axis=1)
            odd = int(np.count_nonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > 1e-3)))
            if odd:
                problems.append(
                    f"{db}: {odd} embeddings are not finite unit vectors (edited outside faceid?); "
                    "restore gallery.db from a backup"
                )
        path = self._index_file(generation)
        try:
            with self._files_lock(exclusive=False):
                data = path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            problems.append(f"{path}: cannot read ({exc.strerror or exc}); run `faceid gallery rebuild-index`")
            data = None
        if data is not None:
            _, problem = _parse_index(data, ids, vectors, dim or 1)
            if problem is not None:
                problems.append(
                    f"{path}: {problem}; if the database is right, run `faceid gallery rebuild-index`, "
                    "else restore gallery.db from a backup"
                )
        return problems

    def _audit_problems(self) -> list[str]:
        """Differences between the faces each person has and what the audit log says they should have."""
        expected: dict[str, set[int]] = {}
        for entry in self.audit_log():
            person = (entry.person or "").translate(_ASCII_LOWER)  # names are unique regardless of ASCII case
            if entry.action == "enroll":
                expected.setdefault(person, set()).update(int(i) for i in entry.detail.get("faces", []))
            elif entry.action == "rename":
                moved = expected.pop(str(entry.detail.get("old", "")).translate(_ASCII_LOWER), set())
                expected[person] = expected.get(person, set()) | moved
            elif entry.action == "remove":
                expected.pop(person, None)
            elif entry.action == "remove-face":
                expected.get(person, set()).difference_update(int(i) for i in entry.detail.get("faces", []))
        actual: dict[str, set[int]] = {}
        for fid, name in self._db.execute("SELECT f.id, p.name FROM faces f JOIN people p ON p.id = f.person_id"):
            actual.setdefault(name.translate(_ASCII_LOWER), set()).add(int(fid))
        missing = sum(len(ids - actual.get(person, set())) for person, ids in expected.items())
        extra = sum(len(ids - expected.get(person, set())) for person, ids in actual.items())
        problems = []
        db = self.path / DB_NAME
        if missing:
            problems.append(
                f"{db}: {_faces(missing)} the audit log records as enrolled missing (deleted outside faceid?); "
                "restore gallery.db from a backup"
            )
        if extra:
            problems.append(
                f"{db}: {_faces(extra)} with no enrolment in the audit log (added or moved outside faceid?); "
                "restore gallery.db from a backup"
            )
        return problems


def _faces(n: int) -> str:
    return f"{n} face{'s' if n != 1 else ''}"


def _build_index(ids: np.ndarray, vectors: np.ndarray, dimension: int):
    """The search index for these faces: exact or approximate by their number (:mod:`faceid.index`)."""
    from faceid import index as search_index

    return search_index.build(ids, vectors, max(1, dimension))


@functools.lru_cache(maxsize=8)
def _index_size(dimension: int) -> tuple[int, int]:
    """Bytes of a serialised exact index of ``dimension``: ``(empty, per face)``."""
    import faiss

    empty = len(
        faiss.serialize_index(_flat_index(np.zeros(0, np.int64), np.zeros((0, dimension), np.float32), dimension))
    )
    one = len(
        faiss.serialize_index(_flat_index(np.zeros(1, np.int64), np.zeros((1, dimension), np.float32), dimension))
    )
    return empty, one - empty


def _flat_index(ids: np.ndarray, vectors: np.ndarray, dimension: int):
    from faceid import index as search_index

    return search_index.build(ids, vectors, dimension, search_index.IndexSpec(search_index.EXACT))


def _parse_index(data: bytes, ids: np.ndarray, vectors: np.ndarray, dimension: int):
    """``(index, None)`` if ``data`` is an index holding exactly ``ids`` with ``vectors``, else ``(None, problem)``.

    The size is checked before anything is decoded, so a damaged header cannot make FAISS
    allocate without bound: exactly the exact index's size, or at most the approximate one's
    (its product-quantiser codebooks, and per face a code besides the vector and id).
    """
    import faiss

    from faceid import index as search_index

    empty, per_face = _index_size(dimension)
    expected = empty + per_face * len(ids)
    # An approximate index is larger: codebooks, and a code per face besides the vector and id.
    # Only a gallery big enough to hold one may have one.
    approximate = len(ids) >= search_index.EXACT_LIMIT // 2
    approximate_max = empty + 65536 + (per_face + dimension) * (len(ids) + 32)
    if len(data) != expected and not (approximate and expected < len(data) <= approximate_max):
        rows, rest = divmod(len(data) - empty, per_face)
        if len(data) >= empty and rest == 0:
            return None, f"holds other faces than the database ({rows} in the index, {len(ids)} in the database)"
        what = "truncated" if len(data) < expected else "too long"
        return None, f"{what} or not an index ({len(data)} bytes; {expected} expected for {_faces(len(ids))})"
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except (RuntimeError, MemoryError) as exc:
        return None, f"unreadable ({str(exc).splitlines()[0][:120]})"
    try:
        search_index.spec_of(index)
    except ValueError:
        return None, "not an index of this gallery's kind"
    if index.d != dimension:
        return None, "not an index of this gallery's kind"
    held, stored = search_index.contents(index)
    if index.ntotal != len(ids) or not np.array_equal(held, ids):
        return None, f"holds other faces than the database ({index.ntotal} in the index, {len(ids)} in the database)"
    if len(ids):
        differ = int(np.count_nonzero((stored != vectors).any(axis=1)))
        if differ:
            return None, (
                f"{differ} of its {len(ids)} vectors differ from the database's (the database was edited "
                "outside faceid, or the index damaged)"
            )
    return index, None


def _shred(path: Path) -> None:
    """Overwrite a file with zeros before unlinking it (best effort; the file system may keep copies)."""
    try:
        size = path.stat().st_size
        with open(path, "r+b") as handle:
            chunk = b"\0" * min(size, 1 << 20)
            left = size
            while left > 0:
                left -= handle.write(chunk[: min(left, len(chunk))])
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
    except FileNotFoundError:
        pass
