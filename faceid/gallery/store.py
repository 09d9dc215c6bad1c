"""The truth store: the gallery's SQLite database, its schema, and its transactions.

:class:`Store` opens (or creates, owner-only) ``gallery.db`` with the pragmas the gallery relies
on (foreign keys, ``secure_delete``, temp data in memory, a busy timeout), checks the schema
version, and gives the two kinds of transaction every other part uses: :meth:`Store.write`
(``BEGIN IMMEDIATE``; a committed change bumps the write *generation*, which ties the index cache
to the data) and :meth:`Store.snapshot` (every query inside sees one committed state).

SQLite's own errors never leave the gallery: :func:`guarded` turns busy and locked into
:class:`GalleryBusyError` and a damaged file into :class:`GalleryCorruptError`.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from faceid.errors import GalleryBusyError, GalleryCorruptError, GalleryError
from faceid.gallery import audit

__all__ = ["DB_NAME", "SCHEMA_VERSION", "Store", "guarded", "sqlite_kind"]

SCHEMA_VERSION = 1
DB_NAME = "gallery.db"

SCHEMA = (
    """
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
"""
    + audit.SCHEMA
)

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26


def sqlite_kind(exc: sqlite3.Error) -> str | None:
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


class Unchanged(Exception):
    """Raised inside a write transaction to roll it back when there turned out to be nothing to write."""


class Store:
    """An open ``gallery.db`` in ``folder``.

    Raises :class:`GalleryError` when there is no gallery (and not ``create``) or the folder
    cannot hold one, :class:`GalleryCorruptError` when the file is not a readable database,
    :class:`GalleryBusyError` when another process holds it for over ``timeout`` seconds.
    """

    def __init__(self, folder: Path, *, create: bool, timeout: float) -> None:
        self.folder = folder
        self.timeout = timeout
        self.file = folder / DB_NAME
        db = self.file
        try:
            if not db.exists():
                if not create:
                    raise GalleryError(f"{folder}: no gallery here (no {DB_NAME}); enrol someone to create one")
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(db, os.O_CREAT | os.O_WRONLY, 0o600)  # SQLite's journals copy these permissions
                os.close(fd)
            elif not db.is_file():
                raise GalleryError(f"{db}: not a file")
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise GalleryError(f"{folder}: cannot create a gallery here ({reason})") from None
        try:
            self.db = sqlite3.connect(db, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise GalleryError(f"{db}: cannot open ({exc})") from None
        try:
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA secure_delete = ON")
            self.db.execute("PRAGMA temp_store = MEMORY")  # VACUUM's copy of the gallery stays out of /tmp
            self.db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            if self.db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit'").fetchone()[0] == 0:
                self._create_schema()
            schema = self.meta("schema")
        except sqlite3.Error as exc:
            self.db.close()
            if sqlite_kind(exc) == "busy":
                raise self.busy_error() from None
            raise GalleryCorruptError(
                f"{db}: not a readable SQLite database ({exc}); restore it from a backup, "
                "or move it away to start a new gallery"
            ) from None
        if schema != str(SCHEMA_VERSION):
            self.db.close()
            raise GalleryError(f"{db}: gallery schema {schema}, this faceid reads {SCHEMA_VERSION}")

    @property
    def _busy_ms(self) -> int:
        return int(self.timeout * 1000)

    def _create_schema(self) -> None:
        try:
            self.db.executescript(
                "BEGIN IMMEDIATE;"
                + SCHEMA
                + f"INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA_VERSION}');"
                + "INSERT OR IGNORE INTO meta VALUES ('generation', '0');"
                + "COMMIT;"
            )
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    # -- errors -----------------------------------------------------------------------------------

    def busy_error(self) -> GalleryBusyError:
        return GalleryBusyError(
            f"{self.folder}: the gallery is busy: another process has held its lock for over {self.timeout:g} s; "
            "try again when it has finished"
        )

    def translate(self, exc: sqlite3.Error) -> GalleryError | None:
        """The gallery error for an SQLite error (busy, damaged), or ``None`` for any other."""
        kind = sqlite_kind(exc)
        if kind == "busy":
            return self.busy_error()
        if kind == "corrupt":
            return GalleryCorruptError(
                f"{self.file}: the database is damaged ({exc}); run `faceid gallery check`, "
                "and restore gallery.db from a backup"
            )
        return None

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def write(self, *, versioned: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``versioned=False`` for bookkeeping that changes no data (no new generation)."""
        self.db.execute("BEGIN IMMEDIATE")  # waits up to `timeout` for other writers
        try:
            yield self.db
            if versioned:
                self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every query inside sees the same committed state."""
        if self.db.in_transaction:  # already inside one
            yield
            return
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            if self.db.in_transaction:
                self.db.execute("COMMIT")

    @contextmanager
    def without_waiting(self) -> Iterator[None]:
        """Inside, a statement that finds the database locked fails at once instead of waiting ``timeout``."""
        self.db.execute("PRAGMA busy_timeout = 0")
        try:
            yield
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    # -- the meta table -------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def integrity_problems(self) -> list[str]:
        """SQLite's own check of the file (``PRAGMA integrity_check``): empty when sound."""
        result = self.db.execute("PRAGMA integrity_check").fetchall()
        if [r[0] for r in result] == ["ok"]:
            return []
        return [
            f"{self.file}: SQLite integrity check failed: {'; '.join(r[0] for r in result[:5])}; "
            "restore gallery.db from a backup"
        ]

    def generation(self) -> int:
        """How many changes the gallery has seen; the index cache is tied to it."""
        return int(self.meta("generation") or 0)


_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(method: _F) -> _F:
    """Turn SQLite's busy and corruption errors into :class:`GalleryBusyError` and :class:`GalleryCorruptError`.

    For methods of an object whose ``_store`` is a :class:`Store`; applied to every public
    method of :class:`faceid.gallery.Gallery`, so ``database is locked`` never reaches a user.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            translated = self._store.translate(exc)
            if translated is None:
                raise
            raise translated from exc

    return wrapper  # type: ignore[return-value]
