"""Backups of a gallery and restores from them (``faceid gallery backup DEST`` / ``restore SRC``).

A backup is a new folder that is itself a local gallery: its ``gallery.db`` (the index cache is
left out: it is rebuilt from the database). Any faceid command can open it with ``--gallery``.

- A local gallery is copied with SQLite's online backup API inside one read transaction
  (:meth:`Gallery.copy_to`): one committed state, while other processes go on writing (they wait
  for the copy's read lock, at most the gallery's timeout).
- A Milvus gallery is exported (:func:`faceid.gallery.milvus_export.export_to_folder`); Milvus has
  no snapshot across collections, so its write generation is compared before and after and a
  backup taken while something wrote is refused.

The copy is checked (``PRAGMA integrity_check``) and synced before it is moved into place; an
interrupted backup leaves no ``DEST``. A restore checks the backup the same way, keeps the
gallery's current state as a backup of its own beside it, then writes the backup's state into
the gallery in one SQLite transaction (other processes see the gallery before or after, never
between) with a write generation newer than any the gallery had, so every index cache is rebuilt.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from faceid._files import fsync_dir
from faceid.errors import GalleryCorruptError, GalleryError
from faceid.gallery import DB_NAME, Gallery
from faceid.gallery.deletion import discard_copy
from faceid.gallery.location import MilvusLocation, gallery_location

log = logging.getLogger(__name__)

__all__ = ["BackupReport", "RestoreReport", "backup_gallery", "restore_gallery"]


@dataclass(frozen=True)
class BackupReport:
    """A backup written: where from, where to, how many people and faces, the generation copied."""

    source: str
    backup: str
    people: int
    faces: int
    generation: int


@dataclass(frozen=True)
class RestoreReport:
    """A restore done: the gallery, the backup it now holds, and where its previous state was kept."""

    gallery: str
    backup: str
    people: int
    faces: int
    previous: str


def _check_copy(db_file: Path) -> tuple[int, int]:
    """``(people, faces)`` of a gallery database file; :class:`GalleryCorruptError` unless it is sound."""
    try:
        db = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
        try:
            problems = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                raise GalleryCorruptError(f"{db_file}: SQLite integrity check failed: {'; '.join(problems[:3])}")
            people = db.execute("SELECT COUNT(*) FROM people").fetchone()[0]
            faces = db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
            db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise GalleryCorruptError(f"{db_file}: not a faceid gallery database ({exc})") from None
    return int(people), int(faces)


def _sync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(folder)


def _new_folder(dest: Path) -> Path:
    if dest.exists() or dest.is_symlink():
        raise GalleryError(f"{dest}: already exists; a backup goes into a new folder")
    if not dest.parent.is_dir():
        raise GalleryError(f"{dest.parent}: no such folder")
    return dest.parent / f".{dest.name}.backup-{os.getpid()}"


def backup_gallery(
    spec: str | os.PathLike[str] | None, dest: str | os.PathLike[str], *, timeout: float = 30.0
) -> BackupReport:
    """Write a consistent backup of the gallery ``spec`` into the new folder ``dest``.

    Raises:
        GalleryError: ``dest`` exists or its parent does not; the gallery does not exist; a Milvus
            gallery changed while it was exported (nothing is left at ``dest``).
        GalleryCorruptError: the copy failed SQLite's integrity check.
    """
    dest = Path(dest)
    build = _new_folder(dest)
    where = gallery_location(spec)
    source = where.spec if isinstance(where, MilvusLocation) else str(where)
    try:
        with Gallery(spec, create=False, timeout=timeout) as gallery:
            generation = gallery.copy_to(build)  # a local gallery: SQLite's backup API; Milvus: its export
        people, faces = _check_copy(build / DB_NAME)
        _sync_folder(build)
        os.rename(build, dest)
        fsync_dir(dest.parent)
    except BaseException:
        if build.exists():
            discard_copy(build)  # shredded: a backup holds embeddings
        raise
    log.info("backed up %s (%d people, %d faces) into %s", source, people, faces, dest)
    return BackupReport(source, str(dest), people, faces, generation)


def _backup_file(src: Path) -> Path:
    db_file = src / DB_NAME if src.is_dir() else src
    if not db_file.is_file():
        raise GalleryError(f"{src}: no backup there (a folder written by `faceid gallery backup`, holding {DB_NAME})")
    return db_file


def restore_gallery(
    src: str | os.PathLike[str], spec: str | os.PathLike[str] | None, *, timeout: float = 30.0
) -> RestoreReport:
    """Make the local gallery ``spec`` hold the backup ``src`` (a folder from :func:`backup_gallery`).

    The gallery's state before the restore is kept as a backup folder beside it
    (``<gallery>.before-restore-<UTC time>``); a gallery that does not exist yet is created.

    Raises:
        GalleryError: ``src`` holds no backup; ``spec`` is a Milvus gallery (restore into a
            folder; :mod:`faceid.backup` says why).
        GalleryCorruptError: the backup fails SQLite's integrity check (nothing was changed).
    """
    db_file = _backup_file(Path(src))
    people, faces = _check_copy(db_file)
    where = gallery_location(spec)
    if isinstance(where, MilvusLocation):
        raise GalleryError(
            f"{where.spec}: restoring into a Milvus gallery is not supported; restore into a folder "
            "(faceid gallery restore SRC --gallery DIR) and serve that, or migrate it back"
        )
    target = Path(where)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    previous = target.parent / f"{target.name}.before-restore-{stamp}"
    fresh = not (target / DB_NAME).is_file()
    if not fresh:
        backup_gallery(target, previous, timeout=timeout)
    with Gallery(target, create=True, timeout=timeout):  # a new gallery is created (empty) first
        pass
    staged = target / f".{DB_NAME}.restoring-{os.getpid()}"
    try:
        _write_into(db_file, staged, target / DB_NAME, timeout)
    finally:
        staged.unlink(missing_ok=True)
    log.info("restored %s from %s (%d people, %d faces)", target, src, people, faces)
    return RestoreReport(str(target), str(src), people, faces, "" if fresh else str(previous))


def _write_into(db_file: Path, staged: Path, live: Path, timeout: float) -> None:
    """Copy the backup ``db_file`` over the ``live`` database in one SQLite transaction (the backup API's own).

    The copy is first staged with a write generation past the live one, so no index cache file of
    the gallery fits it and every process rebuilds its index. (A write by another process in the
    milliseconds between reading that generation and the copy could still leave a cache file of
    the same generation; stop writers while restoring.)
    """
    source = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    copy = sqlite3.connect(staged)
    target = sqlite3.connect(live, timeout=timeout)
    try:
        source.backup(copy)
        row = target.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        copy.execute(
            "UPDATE meta SET value = CAST(MAX(CAST(value AS INTEGER), ?) + 1 AS TEXT) WHERE key = 'generation'",
            (int(row[0]) if row else 0,),
        )
        copy.commit()
        copy.backup(target)
    except sqlite3.Error as exc:
        raise GalleryError(f"{live}: the restore could not be written ({exc}); the gallery was not changed") from None
    finally:
        target.close()
        copy.close()
        source.close()
