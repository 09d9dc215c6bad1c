"""Intents: an enrolment or keep interrupted on a store without transactions is settled at the next open.

A local gallery makes every change one SQLite transaction, so a kill leaves it before or after.
Milvus has no multi-row transaction: an enrolment is several writes (the audit entry, the person,
the faces), and a kill between two of them would leave an audit entry for faces that never came,
or a person with no face. So, above every backend, :class:`~faceid.gallery.Gallery` writes an
*intent* first (``meta('intent')``: what the change is, the ids it gave, and which process makes
it) and clears it as the change's last write. On a local gallery the intent is written and
cleared inside the transaction, so no other process ever sees one.

:func:`settle` runs when a gallery is opened. An intent whose process is gone is settled:

- every face it names is stored (with the person it names): the change had landed, and the intent
  is just cleared (*completed*);
- otherwise it is *rolled back*: a ``rollback`` audit entry (if the change's own entry landed),
  then the faces that landed are deleted (securely, as a removal), then the person the change
  created, if they have no face, then the intent. Each step can be repeated, so a kill during
  the settling is settled at the open after.

An intent of a live process (this host, a process id that runs and started when the intent says)
is a change in progress and is left alone; one from another host is settled once it is older than
:data:`LEASE` seconds (a change takes seconds), and reported until then.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from faceid.gallery.records import n_faces, utc_now

if TYPE_CHECKING:
    from faceid.gallery.backend import GalleryBackend

__all__ = ["LEASE", "Intent", "begin", "end", "settle"]

log = logging.getLogger(__name__)

KEY = "intent"  #: the meta key of the change in progress
LEASE = 600.0  #: seconds after which another host's unfinished intent is taken as interrupted


@dataclass(frozen=True)
class Intent:
    """A change in progress: ``action`` (``"enroll"`` or ``"keep"``), the person (``None``: kept
    unknown faces), whether the change creates them, the face ids it gave, and its process."""

    action: str
    person: str | None
    new_person: bool
    faces: tuple[int, ...]
    token: str
    host: str
    pid: int
    proc: str  # boot id and start time of the process, where the system tells them ("": unknown)
    at: str

    def what(self) -> str:
        if self.action == "keep":
            return f"a keep of {n_faces(len(self.faces))}"
        return f"an enrolment of {n_faces(len(self.faces))} for {self.person!r}"


def _proc_marker(pid: int) -> str:
    """The boot id and start time of process ``pid`` (Linux ``/proc``), ``""`` where unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return f"{boot}:{fields[19]}"  # field 22 of stat: start time in clock ticks after boot
    except (OSError, IndexError):
        return ""


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def begin(b: GalleryBackend, action: str, person: str | None, new_person: bool, faces: list[int]) -> Intent:
    """Record the change about to be written (inside its :meth:`~GalleryBackend.change`, its first write)."""
    pid = os.getpid()
    intent = Intent(
        action,
        person,
        bool(new_person),
        tuple(int(i) for i in faces),
        uuid.uuid4().hex,
        socket.gethostname(),
        pid,
        _proc_marker(pid),
        utc_now(),
    )
    b.set_meta(KEY, json.dumps(asdict(intent)))
    return intent


def end(b: GalleryBackend) -> None:
    """The change is written: clear its intent (its last write)."""
    b.set_meta(KEY, None)


def _load(value: str) -> Intent | None:
    try:
        raw = json.loads(value)
        raw["faces"] = tuple(int(i) for i in raw["faces"])
        return Intent(**raw)
    except (ValueError, TypeError, KeyError):
        return None


def _alive(intent: Intent) -> bool:
    """Whether the process that wrote ``intent`` may still be making the change."""
    if intent.host != socket.gethostname():
        try:
            started = datetime.fromisoformat(intent.at)
        except ValueError:
            return False
        age = (datetime.now(timezone.utc) - started.astimezone(timezone.utc)).total_seconds()
        return age < LEASE
    if intent.pid == os.getpid():
        return True  # this process (another thread's gallery) is making it
    try:
        os.kill(intent.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process runs under that id
    if _zombie(intent.pid):
        return False
    marker = _proc_marker(intent.pid)
    return not (intent.proc and marker and marker != intent.proc)  # the id was given to another process


def pending(b: GalleryBackend) -> Intent | None:
    """The intent recorded in the store, if any."""
    value = b.meta(KEY)
    return _load(value) if value else None


def settle(b: GalleryBackend) -> str | None:
    """Complete or roll back a change a killed process left (see the module's docstring); return a
    message for the user, or ``None`` when there was nothing to settle."""
    value = b.meta(KEY)
    if not value:
        return None
    intent = _load(value)
    if intent is None:  # unreadable: nothing can be settled from it; the check of the faces still runs
        with b.change(versioned=False):
            b.set_meta(KEY, None)
        return f"{b.path}: dropped an unreadable record of an interrupted change; run `faceid gallery check`"
    if _alive(intent):
        return (
            f"{b.path}: {intent.what()} is in progress on {intent.host} (process {intent.pid}) "
            "or was interrupted there; it is settled at an open once that process is gone"
        )
    person = b.person_id(intent.person) if intent.person is not None else None
    want = None if intent.action == "keep" else person
    landed = [i for i, owner, _ in b.face_rows(list(intent.faces)) if owner == want]
    if len(landed) == len(intent.faces) and (intent.action == "keep" or person is not None):
        with b.change(versioned=False):
            b.set_meta(KEY, None)
        log.info("%s: %s was interrupted after it was written; it stands", b.path, intent.what())
        return None
    stray = [i for i, _, _ in b.face_rows(list(intent.faces))]
    with b.change():
        entries = b.audit_entries()
        logged = any(e.action == intent.action and set(e.detail.get("faces", ())) == set(intent.faces) for e in entries)
        rolled = any(e.action == "rollback" and e.detail.get("token") == intent.token for e in entries)
        if logged and not rolled:
            b.audit("rollback", intent.person, of=intent.action, faces=list(intent.faces), token=intent.token)
        if stray:
            b.delete_faces(stray)
        if intent.new_person and person is not None and not b.face_ids_of(person):
            b.delete_people([person], erase=False)
        b.set_meta(KEY, None)
    if stray:
        b.erased("an interrupted change's faces", np.array(stray, np.int64), compact=True)
    again = "enrol them again" if intent.action == "enroll" else "run it again"
    return f"{b.path}: rolled back {intent.what()} that was interrupted ({n_faces(len(stray))} had landed); {again}"
