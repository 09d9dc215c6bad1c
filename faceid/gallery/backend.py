"""The gallery contract: the row-level operations a store of faces implements.

:class:`faceid.gallery.Gallery` holds every rule once (embedding-key checks, names, duplicates,
exclusions, keep filters, naming, moving, merging, forgetting, the audit entries) and reaches its
store only through :class:`GalleryBackend`. Two backends implement it:
:class:`~faceid.gallery.sqlite.SqliteBackend` (a folder: SQLite the truth, a FAISS index its
cache) and :class:`~faceid.gallery.milvus.MilvusBackend` (Milvus or milvus-lite). One behaviour
suite, ``tests/test_gallery_contract.py``, runs on each.

Conventions:

- A *change* is :meth:`GalleryBackend.change`: every write happens inside one. SQLite makes it
  one transaction; Milvus has no multi-row transactions, so its writes land in the order the
  rules make them, which is chosen so that a crash between any two leaves a usable gallery (the
  audit entry first, then the person, then the faces; a removal records itself before it
  deletes). An enrolment or keep also records its intent first and clears it last, and the next
  open completes or rolls back one a kill interrupted (:mod:`faceid.gallery.intents`, above the
  backends: it needs only :meth:`GalleryBackend.meta` and the row operations). Raising
  :class:`Unchanged` inside a change, before any write, ends it with nothing
  written and no new generation.
- Names handed to a backend are normalised (:func:`~faceid.gallery.records.normalise_name`); two
  names are one person when they are equal ignoring ASCII case.
- Person ids and face ids start at 1 and are never given twice. A face with no person
  (``None``) is a kept unknown face: never searched, never counted as enrolled.
- Embeddings are ``(D,)`` float32 unit rows; scores are inner products (cosine similarities).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from faceid.gallery.store import Unchanged

if TYPE_CHECKING:
    from faceid.errors import GalleryError
    from faceid.gallery.audit import AuditEntry
    from faceid.gallery.chips import FaceChip
    from faceid.gallery.records import FaceRecord, GroupingUpdate, NewFace, Person, UnknownFace
    from faceid.index import IndexSpec

__all__ = ["KEEP", "GalleryBackend", "KeyStore", "Unchanged"]


class _Keep:
    """The value that leaves a field as it is (:meth:`GalleryBackend.set_faces`)."""

    def __repr__(self) -> str:
        return "KEEP"


#: leave a field as it is (:meth:`GalleryBackend.set_faces`)
KEEP: Any = _Keep()


class KeyStore(Protocol):
    """The API keys of a gallery, as :class:`faceid.apikeys.ApiKeys` reads and writes them. Each
    write is audited by the store with the gallery's actor (never a token or a hash)."""

    def entries(self) -> list[tuple[str, str, str, str, str | None]]:
        """Every key as ``(name, sha256 of its token, scope, created_at, last_used)``, by name (ASCII case ignored)."""
        ...

    def add(self, name: str, digest: str, scope: str, created_at: str) -> bool:
        """Store a new key; ``False`` (and nothing written) if a key of that name (ASCII case ignored) exists."""
        ...

    def remove(self, name: str) -> bool:
        """Delete a key; ``False`` if there was none of that name."""
        ...

    def touch(self, name: str, when: str) -> None:
        """Record that a key was used at ``when`` (bookkeeping: no new generation, not audited)."""
        ...


class GalleryBackend(Protocol):
    """Row-level operations on one gallery's store; see the module's docstring for the conventions."""

    @property
    def path(self) -> Path | str:
        """The gallery as the user named it (a folder, or ``milvus://...`` / ``milvus-lite:...``), for messages."""
        ...

    @property
    def source(self) -> Path | str:
        """The file or address that messages about stored rows name (``.../gallery.db``)."""
        ...

    @property
    def folder(self) -> Path | None:
        """The folder a local gallery lives in (``None`` for a store that is not a folder)."""
        ...

    @property
    def timeout(self) -> float:
        """Seconds to wait for another process (a lock, a server, a compaction)."""
        ...

    @property
    def another(self) -> str:
        """How to name another gallery of this kind in a message (``--gallery DIR``)."""
        ...

    @property
    def keys(self) -> KeyStore:
        """The gallery's API keys."""
        ...

    #: damage found and worked around while using the store, one message each
    problems: list[str]
    #: who makes the changes, for the audit log (``None``: the OS user); set by the gallery
    actor: str | None

    # -- the store ---------------------------------------------------------------------------------

    def close(self) -> None: ...

    def translate(self, exc: Exception) -> GalleryError | None:
        """The gallery error for one of the store's own exceptions (busy, damaged, refused), or ``None``."""
        ...

    def change(self, *, versioned: bool = True) -> AbstractContextManager[None]:
        """One change: every write happens inside one (``versioned=False``: bookkeeping, no new generation)."""
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads inside see one committed state (where the store can give one)."""
        ...

    def require_unknown(self, what: str) -> None:
        """Raise :class:`GalleryError` if this store cannot hold kept unknown faces (an old file opened read-only)."""
        ...

    def generation(self) -> int: ...

    def meta(self, key: str) -> str | None:
        """A stored value (the embedding key, ``setting:NAME``...), or ``None``."""
        ...

    def set_meta(self, key: str, value: str | None) -> None:
        """Store a value; ``None`` removes it."""
        ...

    def audit(self, action: str, person: str | None, **detail: Any) -> None:
        """Append an entry to the audit log (by :attr:`actor`)."""
        ...

    def audit_entries(self) -> list[AuditEntry]: ...

    # -- people ------------------------------------------------------------------------------------

    def person_id(self, name: str) -> int | None:
        """The id of the person called ``name`` (ASCII case ignored), or ``None``."""
        ...

    def people(self, ids: Sequence[int] | None = None) -> list[Person]:
        """Everyone (or the people of ``ids``), with their number of enrolled faces, in any order."""
        ...

    def count_people(self) -> int: ...

    def add_person(self, name: str) -> int: ...

    def rename_person(self, person: int, name: str) -> None: ...

    def delete_people(self, people: Sequence[int], *, erase: bool = True) -> None:
        """Delete people, every face of theirs and what was said about them (``erase``: their rows are
        to be erased from the store's files, :meth:`erased`; ``False`` for people left with no face)."""
        ...

    # -- faces -------------------------------------------------------------------------------------

    def new_face_ids(self, count: int) -> list[int]: ...

    def insert_faces(
        self,
        person: int | None,
        ids: Sequence[int],
        vectors: Sequence[np.ndarray],
        faces: Sequence[NewFace],
        model: str,
    ) -> None:
        """Store new faces of ``person`` (``None``: kept unknown), with their thumbnails and chips, in one batch."""
        ...

    def faces(self, person: int | None = None) -> list[FaceRecord]:
        """Enrolled faces (of one person, or all), by id."""
        ...

    def faces_by_id(self, ids: Sequence[int]) -> list[FaceRecord]:
        """The enrolled faces among ``ids``, by id."""
        ...

    def face_rows(self, ids: Sequence[int]) -> list[tuple[int, int | None, int | None]]:
        """``(id, person or None, group or None)`` of the faces among ``ids`` (enrolled or kept)."""
        ...

    def face_ids_of(self, person: int) -> list[int]:
        """The ids of a person's faces, ascending."""
        ...

    def photos_of(self, ids: Sequence[int]) -> dict[int, str]:
        """The photo (SHA-256) of each face among ``ids``."""
        ...

    def enrolled_count(self) -> int: ...

    def image_owners(self, shas: Sequence[str]) -> dict[str, list[str]]:
        """For each photo SHA-256 with enrolled faces, the names of their people."""
        ...

    def face_owners(self, ids: Sequence[int]) -> dict[int, str]:
        """The enrolled faces among ``ids`` and their people's names."""
        ...

    def thumbnail(self, face_id: int) -> bytes | None: ...

    def chip(self, face_id: int) -> FaceChip | None: ...

    def embeddings(self, dimension: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Enrolled faces: ``(ids (N,) int64 ascending, person ids (N,) int64, vectors (N, D) float32)``."""
        ...

    def face_sources(self) -> list[FaceRecord]:
        """Every face, by id (a kept face's ``person`` is ``""``)."""
        ...

    def set_faces(self, ids: Sequence[int], *, person: int | None = KEEP, group: int | None = KEEP) -> None:
        """Give faces a person (``None``: kept unknown) and/or a group (``None``: none); :data:`KEEP` leaves it."""
        ...

    def delete_faces(self, ids: Sequence[int]) -> None:
        """Delete faces (enrolled or kept) and what was said about them."""
        ...

    def erased(self, what: str, gone: np.ndarray, *, compact: bool) -> None:
        """After a change that deleted rows (``gone``: the enrolled face ids among them; ``what``: a noun
        for messages): leave nothing of them in the store's files (``compact=False``: later,
        :meth:`compact`); problems go to :attr:`problems`."""
        ...

    def compaction_pending(self) -> bool: ...

    def compact(self, *, wait: bool) -> bool:
        """Do the erasure removals left due; ``True`` when nothing is due any more."""
        ...

    # -- search ------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest enrolled faces of ``(n, D)`` unit ``queries``: ``(scores, ids)``, ``-1`` padded."""
        ...

    def index_spec(self) -> IndexSpec: ...

    def rebuild_index(self) -> int: ...

    def storage_problems(self, dimension: int | None) -> tuple[list[str], bool]:
        """Damage the store itself shows (``(problems, fatal)``: ``fatal`` when its rows cannot be read)."""
        ...

    def index_problems(self) -> list[str]: ...

    # -- kept unknown faces --------------------------------------------------------------------------

    def unknown_count(self) -> int: ...

    def unknown_faces(self, *, group: int | None = None, grouped: bool | None = None) -> list[UnknownFace]:
        """Kept faces (those of ``group``; ``grouped``: only those in a group, or in none), by id."""
        ...

    def unknown_embeddings(self, dimension: int) -> np.ndarray:
        """``(N, D)`` float32 embeddings of every kept face, by id."""
        ...

    def kept_at(self, spots: Sequence[tuple[str, tuple[int, int, int, int]]]) -> dict[tuple[str, tuple[int, ...]], int]:
        """Faces already stored at these ``(photo SHA-256, box)`` spots: the smallest id at each."""
        ...

    def unknown_before(self, cutoff: str | None) -> list[int]:
        """Ids of the kept faces made before ``cutoff`` (ISO 8601; ``None``: all), ascending."""
        ...

    def exclusions(self, *, faces: Sequence[int] = (), person: int | None = None) -> list[tuple[int, int, int]]:
        """What the user said, as ``(face, other face or 0, person or 0)`` rules: those with a face of ``faces``
        at either end, or about ``person``."""
        ...

    def exclude(self, rules: Sequence[tuple[int, int, int]]) -> None:
        """Add ``(face, other or 0, person or 0)`` rules (a pair of faces with the smaller id first)."""
        ...

    def unexclude(self, faces: Sequence[int], person: int) -> None:
        """Lift the rules that keep ``faces`` out of ``person``."""
        ...

    def move_exclusions(self, source: int, target: int) -> None:
        """Rules about person ``source`` become rules about ``target`` (a merge)."""
        ...

    def group_faces(self, *, full: bool, leftovers: bool | None, params: Any) -> GroupingUpdate:
        """One grouping step over the kept faces (:meth:`faceid.gallery.unknown.UnknownFaces.update_groups`)."""
        ...

    # -- moving to another model --------------------------------------------------------------------

    def copy_to(self, folder: Path) -> int:
        """Write the gallery, as one committed state, into the new folder as a local gallery; return its generation."""
        ...

    def exclusive(self) -> AbstractContextManager[int]:
        """Hold off other writers (where the store can) and yield the generation."""
        ...

    def set_embeddings(self, vectors: dict[int, np.ndarray], model: str, chips: dict[int, FaceChip]) -> None:
        """Give faces new embeddings (and chips) of another model, inside a change."""
        ...


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``values`` in slices of at most ``size``."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
