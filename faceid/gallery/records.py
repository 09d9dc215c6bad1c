"""What the gallery stores and hands out: people, faces, names, timestamps.

Frozen dataclasses out (:class:`Person`, :class:`FaceRecord`; for kept unknown faces
:class:`UnknownFace`, :class:`Group`, :class:`Kept`, :class:`GroupingUpdate`, :class:`Named`), one in
(:class:`NewFace`), and the rules for names (:func:`normalise_name`, :func:`name_key`). Nothing here
touches a file.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceid.errors import InvalidNameError, NameTakenError

if TYPE_CHECKING:
    from faceid.gallery.chips import FaceChip

__all__ = [
    "MAX_NAME_LENGTH",
    "FaceRecord",
    "Group",
    "GroupingUpdate",
    "Kept",
    "Named",
    "NewFace",
    "Person",
    "UnknownFace",
    "default_gallery_dir",
    "name_key",
    "name_taken",
    "normalise_name",
]

MAX_NAME_LENGTH = 200
_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner: format characters names need


def default_gallery_dir() -> Path:
    """``$FACEID_GALLERY``, else ``./gallery``."""
    return Path(os.environ.get("FACEID_GALLERY") or "gallery")


def name_taken(name: str) -> NameTakenError:
    """The error for renaming someone to ``name`` (already normalised), which is another person's."""
    return NameTakenError(f"{name!r} is already enrolled; remove or rename them first")


def normalise_name(name: str) -> str:
    """A person's name as stored: NFC, surrounding white space removed.

    Names are free text (spaces, accents, any script) and live only inside SQLite, never in a
    file path. Letters of any script, combining marks and the joiners U+200C/U+200D (which
    Persian and Indic names need, as do emoji sequences) are allowed. Raises
    :class:`InvalidNameError` for empty names, names over ``MAX_NAME_LENGTH`` characters, and
    names with other control or format characters (NUL, newlines, bidi overrides such as U+202E,
    ...), surrogates, private-use or unassigned code points.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"a name must be text, got {type(name).__name__}")
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise InvalidNameError("a name cannot be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"a name can have at most {MAX_NAME_LENGTH} characters, this one has {len(cleaned)}")
    bad = [c for c in cleaned if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") and c not in _JOINERS]
    if bad:
        found = ", ".join(f"U+{ord(c):04X}" for c in bad[:3])
        raise InvalidNameError(
            f"a name cannot hold control characters or format characters other than joiners ({found})"
        )
    return cleaned


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def name_key(name: str) -> str:
    """What makes two (normalised) names one person: equal ignoring ASCII case, as SQLite's ``NOCASE``.
    People are listed in the order of this key."""
    return name.translate(_ASCII_LOWER)


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
class NewFace:
    """A face to enrol: its ``(D,)`` float32 unit embedding and where it came from."""

    embedding: np.ndarray
    image_sha256: str
    box: tuple[int, int, int, int]
    confidence: float
    image_path: str | None = None
    #: a small JPEG of the face (biometric data: stored beside the embedding, removed with it)
    thumbnail: bytes | None = None
    #: the photo around the face with its box and five landmarks, from which any registered model's
    #: crop can be made again (:func:`faceid.gallery.chips.make_chip`; biometric data like the thumbnail)
    chip: FaceChip | None = None


def utc_now() -> str:
    """The time as stored: UTC, ISO 8601, milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def n_faces(n: int) -> str:
    """``"1 face"``, ``"3 faces"``: for messages."""
    return f"{n} face{'s' if n != 1 else ''}"


@dataclass(frozen=True)
class UnknownFace:
    """A kept unknown face, without its embedding; ``group`` is ``None`` while it is in no group."""

    id: int
    group: int | None
    image_path: str | None
    image_sha256: str
    box: tuple[int, int, int, int]
    confidence: float
    created_at: str


@dataclass(frozen=True)
class Group:
    """A group of kept unknown faces that look like one person; ``faces`` by id."""

    id: int
    faces: tuple[UnknownFace, ...]

    @property
    def size(self) -> int:
        return len(self.faces)


@dataclass(frozen=True)
class Kept:
    """What :meth:`UnknownFaces.keep` did with each face handed in.

    ``ids``: per face, in order, the id of the kept face (new, or the one already kept for the
    same photo and box), ``None`` for a face too small or unsure to keep. ``added`` new faces,
    ``filtered`` too small or unsure, ``duplicates`` already in the gallery. ``reasons``: per
    face, why it was not kept (``"confidence 0.81 below 0.90"``), ``None`` if it was;
    ``before``: per face, whether it was already kept.
    """

    ids: tuple[int | None, ...]
    added: int
    filtered: int
    duplicates: int
    reasons: tuple[str | None, ...] = ()
    before: tuple[bool, ...] = ()


@dataclass(frozen=True)
class GroupingUpdate:
    """What a grouping changed: faces ``attached`` to existing groups, ``new_groups`` formed (of
    ``newly_grouped`` faces), how many kept faces are left in no group, and how many existing
    groups ``merged`` into another."""

    attached: int
    new_groups: int
    newly_grouped: int
    ungrouped: int
    merged: int = 0


@dataclass(frozen=True)
class Named:
    """The result of naming a group: the ``person``, the ``faces`` that became theirs, the faces
    ``kept_out`` (moved out of that person before, or from a photo of theirs: left unknown), and
    whether the person is new."""

    person: str
    faces: tuple[int, ...]
    kept_out: tuple[int, ...]
    new_person: bool
