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

__all__ = ["DB_NAME", "READABLE", "SCHEMA_VERSION", "Store", "guarded", "migrate", "sqlite_kind"]

SCHEMA_VERSION = 2
#: Schema versions this faceid opens: a version-1 gallery (no kept unknown faces) is migrated to
#: version 2 when first opened by a process that may write it (:func:`migrate`), and read as it is
#: otherwise.
READABLE = (1, 2)
DB_NAME = "gallery.db"

#: Every face: enrolled ones have a ``person_id``; kept unknown faces (``faceid identify
#: --remember``) have none, and a ``group_id`` while they are in a group of unknown faces. One
#: table, so ids are one sequence and naming or moving a face keeps its id.
FACES_TABLE = """
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    person_id INTEGER REFERENCES people(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    image_path TEXT,
    image_sha256 TEXT NOT NULL,
    box TEXT NOT NULL,
    confidence REAL NOT NULL,
    model TEXT NOT NULL,
    created_at TEXT NOT NULL,
    group_id INTEGER
);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
CREATE INDEX IF NOT EXISTS faces_image ON faces(image_sha256);
CREATE INDEX IF NOT EXISTS faces_group ON faces(group_id);
"""

#: What the user said about faces: a face moved out of a group must never be grouped with that
#: group's faces again (``other_id``), a face moved out of a person never named as them again
#: (``person_id``). Exactly one of the two is set; a face-face pair is stored smaller id first.
EXCLUSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS face_exclusions (
    face_id INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
    other_id INTEGER REFERENCES faces(id) ON DELETE CASCADE,
    person_id INTEGER REFERENCES people(id) ON DELETE CASCADE,
    CHECK ((other_id IS NULL) != (person_id IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS face_exclusions_pair ON face_exclusions(face_id, other_id, person_id);
CREATE INDEX IF NOT EXISTS face_exclusions_other ON face_exclusions(other_id);
CREATE INDEX IF NOT EXISTS face_exclusions_person ON face_exclusions(person_id);
"""

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at TEXT NOT NULL
);
"""
    + FACES_TABLE
    + EXCLUSIONS_TABLE
    + audit.SCHEMA
)

_V1_COLUMNS = "id, person_id, embedding, image_path, image_sha256, box, confidence, model, created_at"

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
                f"{db}: not a readable SQLite database ({exc}); restore it from a backup "
                "(`faceid gallery restore BACKUP`), or move it away to start a new gallery"
            ) from None
        if schema not in {str(v) for v in READABLE}:
            self.db.close()
            raise GalleryError(f"{db}: gallery schema {schema}, this faceid reads {SCHEMA_VERSION}")
        #: the schema version of the open file (1 only while it could not be migrated: read-only)
        self.schema = int(schema)
        if self.schema < SCHEMA_VERSION:
            try:
                self.schema = migrate(self.db)
            except sqlite3.OperationalError as exc:
                if "readonly" not in str(exc) and sqlite_kind(exc) != "busy":
                    self.db.close()
                    raise
                # read-only (or busy): read it as version 1; a later writer migrates it

    def require(self, version: int, what: str) -> None:
        """Raise :class:`GalleryError` if the open file is older than schema ``version`` (read-only, not migrated)."""
        if self.schema < version:
            raise GalleryError(
                f"{self.file}: {what} needs gallery schema {version}; this gallery is at {self.schema} and "
                "could not be upgraded (read-only?): open it once with write access"
            )

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
                "and restore gallery.db from a backup (`faceid gallery restore BACKUP`)"
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
            "restore gallery.db from a backup (`faceid gallery restore BACKUP`)"
        ]

    def generation(self) -> int:
        """How many changes the gallery has seen; the index cache is tied to it."""
        return int(self.meta("generation") or 0)


def migrate(db: sqlite3.Connection) -> int:
    """Bring a version-1 gallery to version 2 in one transaction; return the version now.

    Version 2 lets a face have no person (a kept unknown face), gives faces a ``group_id``, and
    adds ``face_exclusions``. SQLite cannot drop ``NOT NULL`` from a column in place, so the
    faces table is rebuilt (SQLite's documented twelve steps): foreign keys are off meanwhile,
    so rows that reference faces (thumbnails, ...) are neither deleted nor changed, and
    ``foreign_key_check`` must find nothing wrong before the commit. Ids, embeddings and every
    other value are copied as they are; a process killed in between leaves version 1 as it was.
    The write generation is not changed (no face is added or removed: index files stay valid).
    """
    db.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: set before it
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            (schema,) = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if schema != "1":  # another process migrated it meanwhile
                db.execute("COMMIT")
                return int(schema)
            # new table, copy, drop the old, rename the new: renaming the old one instead would
            # make the tables that reference faces (thumbnails, ...) reference the old one
            table, indexes = FACES_TABLE.split(";", 1)
            db.execute(table.replace("EXISTS faces (", "EXISTS faces_v2 ("))
            db.execute(f"INSERT INTO faces_v2 ({_V1_COLUMNS}) SELECT {_V1_COLUMNS} FROM faces")
            db.execute("DROP TABLE faces")
            db.execute("ALTER TABLE faces_v2 RENAME TO faces")
            for statement in (indexes + EXCLUSIONS_TABLE).split(";"):
                if statement.strip():
                    db.execute(statement)
            bad = db.execute("PRAGMA foreign_key_check").fetchall()
            if bad:
                raise GalleryCorruptError(
                    f"gallery.db: {len(bad)} rows reference missing rows; not upgraded. "
                    "Run `faceid gallery check`, and restore gallery.db from a backup (`faceid gallery restore BACKUP`)"
                )
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
            audit.record(db, "upgrade", None, schema=SCHEMA_VERSION)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    finally:
        db.execute("PRAGMA foreign_keys = ON")
    return SCHEMA_VERSION


_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(method: _F) -> _F:
    """Turn SQLite's busy and corruption errors into :class:`GalleryBusyError` and :class:`GalleryCorruptError`.

    For methods of an object whose ``store`` is a :class:`Store` (a folder's backend and its key
    store; :class:`faceid.gallery.Gallery` translates every backend's errors itself), so ``database is
    locked`` never reaches a user.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            translated = self.store.translate(exc)
            if translated is None:
                raise
            raise translated from exc

    return wrapper  # type: ignore[return-value]
