"""Secure deletion: what is removed from the gallery cannot be read back from its files.

Three places keep copies of removed data, and each is cleared here:

- rows: ``PRAGMA secure_delete`` (set by :class:`~faceid.gallery.store.Store`) overwrites deleted
  rows, but SQLite moves rows between pages as tables change and leaves old copies in unused
  parts of pages, where ``secure_delete`` does not reach; so after a removal the database file is
  rewritten (:func:`compact`, ``VACUUM``). ``removals`` counts removals and ``compacted`` the
  removals a finished VACUUM covers, so a process killed in between leaves the work for the next
  open (:func:`compaction_pending`).
- a rollback journal a process killed early in a write left behind holds old page images
  (:func:`clear_stale_journal`).
- index files of older generations hold old vectors: they are overwritten before they are
  deleted (:func:`shred`, used by :mod:`faceid.gallery.indexfiles`).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from faceid.gallery.store import DB_NAME, Store, sqlite_kind

__all__ = ["clear_stale_journal", "compact", "compaction_pending", "discard_copy", "note_removal", "shred"]


def shred(path: Path) -> None:
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


def discard_copy(folder: Path) -> None:
    """Shred the files of a copy that failed half-way (:meth:`faceid.gallery.Gallery.copy_to`) and its folder."""
    for leftover in folder.iterdir():
        shred(leftover)
    folder.rmdir()


def clear_stale_journal(store: Store) -> None:
    """Delete a rollback journal that a process killed early in a write left behind.

    SQLite rolls back a *hot* journal by itself on the first read; one killed before its
    journal header was synced is not hot, and SQLite leaves it until the next write. It
    holds old page images, so it is overwritten and deleted here, under the write lock
    (taken without waiting: a process writing now deletes its own journal when it commits).
    """
    journal = store.folder / f"{DB_NAME}-journal"
    if not journal.exists():
        return
    try:
        with store.without_waiting():
            store.db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return  # another process is writing; its commit deletes the journal
    try:
        shred(journal)  # not hot (SQLite would have rolled it back), and no one else can write now
    finally:
        store.db.execute("COMMIT")


def note_removal(db: sqlite3.Connection) -> None:
    """Count a removal, inside its transaction: the file needs compacting until :func:`compact` covers it."""
    db.execute(
        "INSERT OR REPLACE INTO meta VALUES ('removals', "
        "CAST(COALESCE((SELECT value FROM meta WHERE key = 'removals'), 0) AS INTEGER) + 1)"
    )


def compaction_pending(store: Store) -> bool:
    """Whether a removal is not yet covered by a finished :func:`compact` (a process was killed in between)."""
    row = store.db.execute(
        "SELECT (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'removals'), "
        "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'compacted')"
    ).fetchone()
    return bool((row[0] or 0) > (row[1] or 0))


def compact(store: Store, *, wait: bool) -> bool:
    """Rewrite the database file (``VACUUM``) so no page keeps an old copy of a removed row.

    Returns ``False`` if another process kept the database busy (without waiting, at once; else
    after the store's ``timeout``).
    """
    try:
        if wait:
            _vacuum(store)
        else:
            with store.without_waiting():
                _vacuum(store)
        return True
    except sqlite3.OperationalError as exc:
        if sqlite_kind(exc) != "busy":
            raise
        return False


def _vacuum(store: Store) -> None:
    removals = store.meta("removals") or "0"
    store.db.execute("VACUUM")
    with store.write(versioned=False):
        store.db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('compacted', "
            "MAX(?, CAST(COALESCE((SELECT value FROM meta WHERE key = 'compacted'), 0) AS INTEGER)))",
            (int(removals),),
        )
