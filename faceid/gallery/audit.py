"""The audit log: an append-only table of every change to the gallery, and its replay.

Each entry says when, who (the actor: by default the OS user), what, to whom, and face ids;
never embeddings, image paths or image hashes, so nothing of a removed person's photos stays
behind but their name. SQLite triggers refuse to update or delete an entry. :func:`problems`
replays the log and compares it with the faces the database holds, so a face deleted or added
outside faceid shows in ``faceid gallery check``.

Entries are written with the change they record, inside its transaction (see
:meth:`faceid.gallery.store.Store.write`), so a change and its entry commit or vanish together.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceid.gallery.records import n_faces, name_key, utc_now

__all__ = ["RESTORE", "SCHEMA", "AuditEntry", "entries", "problems", "record", "replay_problems"]

SCHEMA = """
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


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log: when, who (the OS user), what, to whom, and details."""

    id: int
    at: str
    user: str
    action: str
    person: str | None
    detail: dict[str, Any]


def os_user() -> str:
    """The user this process runs as: the actor of a change made through the library or CLI."""
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no passwd entry (containers), no pwd module
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def record(db: sqlite3.Connection, action: str, person: str | None, *, actor: str | None = None, **detail: Any) -> None:
    """Append an entry; call inside the write transaction of the change it records.

    ``actor`` is who made the change (default: :func:`os_user`); ``detail`` must be JSON data.
    """
    db.execute(
        "INSERT INTO audit (at, user, action, person, detail) VALUES (?, ?, ?, ?, ?)",
        (utc_now(), actor if actor is not None else os_user(), action, person, json.dumps(detail, sort_keys=True)),
    )


def entries(db: sqlite3.Connection) -> list[AuditEntry]:
    """The whole log, oldest first."""
    rows = db.execute("SELECT id, at, user, action, person, detail FROM audit ORDER BY id").fetchall()
    return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


def problems(db: sqlite3.Connection, where: Path) -> list[str]:
    """Differences between the faces each person has and what the audit log says they should have.

    Call inside a read snapshot. ``where`` (the database file) names the place in messages.
    """
    actual = db.execute("SELECT f.id, p.name FROM faces f JOIN people p ON p.id = f.person_id").fetchall()
    return replay_problems(entries(db), actual, where)


#: how to repair a local gallery whose rows were changed outside faceid
RESTORE = "restore the gallery from a backup (`faceid gallery restore BACKUP`)"


def replay_problems(
    log: Iterable[AuditEntry], faces: Iterable[tuple[int, str]], where: Path | str, *, repair: str = RESTORE
) -> list[str]:
    """Replay the audit ``log`` and compare it with ``faces``, ``(face id, owner's name)`` pairs
    (any gallery backend); ``repair``: how to repair the gallery in use, for the messages."""
    expected: dict[str, set[int]] = {}
    for entry in log:
        person = name_key(entry.person or "")  # names are unique regardless of ASCII case
        if entry.action in ("enroll", "name"):  # "name": a group of kept unknown faces became the person's
            expected.setdefault(person, set()).update(int(i) for i in entry.detail.get("faces", []))
        elif entry.action == "move":  # faces moved to the person, or (no person) back to unknown
            moved = {int(i) for i in entry.detail.get("faces", [])}
            for ids in expected.values():
                ids.difference_update(moved)
            if entry.person is not None:
                expected.setdefault(person, set()).update(moved)
        elif entry.action == "merge":
            moved = expected.pop(name_key(str(entry.detail.get("source", ""))), set())
            expected[person] = expected.get(person, set()) | moved
        elif entry.action == "rename":
            moved = expected.pop(name_key(str(entry.detail.get("old", ""))), set())
            expected[person] = expected.get(person, set()) | moved
        elif entry.action == "remove":
            expected.pop(person, None)
        elif entry.action in ("remove-face", "rollback"):  # rollback: an interrupted change undone at an open
            expected.get(person, set()).difference_update(int(i) for i in entry.detail.get("faces", []))
    actual: dict[str, set[int]] = {}
    for fid, name in faces:
        actual.setdefault(name_key(name), set()).add(int(fid))
    missing = sum(len(ids - actual.get(person, set())) for person, ids in expected.items())
    extra = sum(len(ids - expected.get(person, set())) for person, ids in actual.items())
    found = []
    if missing:
        found.append(
            f"{where}: {n_faces(missing)} the audit log records as enrolled missing (deleted outside faceid?); {repair}"
        )
    if extra:
        found.append(
            f"{where}: {n_faces(extra)} with no enrolment in the audit log (added or moved outside faceid?); {repair}"
        )
    return found
