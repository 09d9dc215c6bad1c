"""The gallery: enrolled people and their face embeddings, on any backend.

:class:`Gallery` holds every rule once: the embedding-key check, names, duplicates, the order of
a change's writes and its audit entry, removals, search's shapes, the check of a gallery's
soundness; kept unknown faces' rules are in :mod:`~faceid.gallery.unknown`. It reaches its store
only through the :class:`~faceid.gallery.backend.GalleryBackend` contract, which a folder
(:class:`~faceid.gallery.sqlite.SqliteBackend`) and Milvus
(:class:`~faceid.gallery.milvus.MilvusBackend`) implement. Scores are cosine similarities of
unit vectors (inner products), higher is closer.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import (
    EmbeddingKeyError,
    FaceIDError,
    FaceNotFoundError,
    GalleryCorruptError,
    InvalidNameError,
    ModelMismatchError,
    PersonNotFoundError,
)
from faceid.gallery import audit, intents
from faceid.gallery.backend import GalleryBackend, KeyStore, Unchanged
from faceid.gallery.location import MilvusLocation, gallery_location
from faceid.gallery.people import unit_vectors, vector_problems
from faceid.gallery.records import FaceRecord, NewFace, Person, n_faces, name_key, name_taken, normalise_name
from faceid.gallery.unknown import UnknownFaces

if TYPE_CHECKING:
    from faceid.gallery.audit import AuditEntry
    from faceid.gallery.chips import FaceChip
    from faceid.index import IndexSpec

__all__ = ["Gallery", "open_backend"]

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(method: _F) -> _F:
    """The backend's own errors (busy, damaged, refused) as :class:`GalleryError` lines naming the gallery."""

    @functools.wraps(method)
    def wrapper(self: Gallery, *args: Any, **kwargs: Any) -> Any:
        with self.guard():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def open_backend(spec: str | os.PathLike[str] | None, *, create: bool = True, timeout: float = 30.0) -> GalleryBackend:
    """The backend of the gallery ``spec`` names: a folder, ``milvus://HOST:PORT/NAME`` or ``milvus-lite:PATH.db``."""
    where = gallery_location(spec)  # default: $FACEID_GALLERY, else ./gallery
    if isinstance(where, MilvusLocation):
        from faceid.gallery.milvus import MilvusBackend, require_milvus

        require_milvus(where.spec)
        return MilvusBackend(where, create=create, timeout=timeout)
    from faceid.gallery.sqlite import SqliteBackend

    return SqliteBackend(where, create=create, timeout=timeout)


class Gallery:
    """A gallery wherever it lives: a folder (``gallery.db`` and its index cache), or Milvus.

    Args:
        path: a folder (created, owner-only, if missing and ``create``), ``milvus://HOST:PORT/NAME``
            or ``milvus-lite:PATH.db``; default ``$FACEID_GALLERY``, else ``./gallery``.
        create: create a new gallery when there is none.
        timeout: seconds to wait for another process's lock (or a server, or a compaction) before
            :class:`GalleryBusyError`.
        backend: an open :class:`~faceid.gallery.backend.GalleryBackend` to use instead.

    Attributes:
        problems: damage found while this object used the gallery (for example an index file that
            does not match the database), one message each, saying how to repair it. The gallery
            worked around each; :meth:`check` looks for all of them.
        unknown: kept unknown faces (:class:`~faceid.gallery.unknown.UnknownFaces`).
        keys: the gallery's API keys (:class:`~faceid.gallery.backend.KeyStore`; :mod:`faceid.apikeys`).

    Use as a context manager, or call :meth:`close`. One ``Gallery`` object is for one thread;
    any number of processes may open a folder gallery at once. The store's own errors never leave
    it (busy -> :class:`GalleryBusyError`, damaged -> :class:`GalleryCorruptError`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        timeout: float = 30.0,
        backend: GalleryBackend | None = None,
    ) -> None:
        self._b = backend if backend is not None else open_backend(path, create=create, timeout=timeout)
        self.path = self._b.path
        self.timeout = self._b.timeout
        self.problems: list[str] = self._b.problems
        self.keys: KeyStore = self._b.keys
        self.unknown = UnknownFaces(self, self._b)  #: kept unknown faces: keep, group, name, move, merge, forget
        try:
            with self.guard():
                settled = intents.settle(self._b)  # an enrolment or keep a killed process left half written
        except BaseException:
            if backend is None:
                self._b.close()
            raise
        if settled is not None and settled not in self.problems:
            self.problems.append(settled)
            log.info("%s", settled)

    @property
    def actor(self) -> str | None:
        """Who makes the changes, for the audit log (``"key:NAME"`` through ``faceid serve``); ``None``: the OS user."""
        return self._b.actor

    @actor.setter
    def actor(self, value: str | None) -> None:
        self._b.actor = value

    @property
    def backend(self) -> GalleryBackend:
        """The store under the rules (:mod:`faceid.gallery.backend`): for tools that need its own parts."""
        return self._b

    @property
    def folder(self) -> Path | None:
        """The folder the gallery lives in, or ``None`` (a gallery in Milvus)."""
        return self._b.folder

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Inside, the backend's own errors become :class:`GalleryError` lines (busy, damaged, refused)."""
        try:
            yield
        except FaceIDError:
            raise
        except Exception as exc:
            translated = self._b.translate(exc)
            if translated is None:
                raise
            raise translated from exc

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Write what is pending (a local gallery's index cache) and close the store."""
        self._b.close()

    @property
    @_guarded
    def generation(self) -> int:
        """How many changes the gallery has seen."""
        return self._b.generation()

    # -- embedding model ------------------------------------------------------------------------

    @property
    @_guarded
    def embedding_key(self) -> EmbeddingKey | None:
        """The model and preprocessing that made this gallery's embeddings, or ``None`` while empty of them.

        Raises:
            GalleryCorruptError: the stored key is not a valid embedding key.
        """
        value = self._b.meta("embedding_key")
        if not value:
            return None
        try:
            return EmbeddingKey.from_json(value)
        except EmbeddingKeyError as exc:
            raise GalleryCorruptError(
                f"{self.path}: the stored {exc}; restore the gallery from a backup (`faceid gallery restore`, "
                "docs/backup.md)"
            ) from None

    @_guarded
    def check_embedding_key(self, key: EmbeddingKey) -> EmbeddingKey | None:
        """Raise :class:`ModelMismatchError` unless ``key`` is this gallery's (or it has none yet);
        return the gallery's key (``None``: none yet)."""
        if not isinstance(key, EmbeddingKey):
            raise TypeError(f"an EmbeddingKey is needed, not {type(key).__name__}")
        mine = self.embedding_key
        if mine is not None and mine != key:
            raise ModelMismatchError(
                f"{self.path}: its embeddings were made with {mine.describe()}; refusing to mix in embeddings "
                f"made with {key.describe()} (differs in {', '.join(mine.differences(key))}). "
                f"Use the gallery's settings, or enrol into a new gallery ({self._b.another})."
            )
        return mine

    @_guarded
    def adopt_embedding_key(self, key: EmbeddingKey) -> None:
        """Inside a change, once :meth:`check_embedding_key` found none: make ``key`` the gallery's."""
        self._b.set_meta("embedding_key", key.dumps())

    @property
    def dimension(self) -> int | None:
        return key.dimension if (key := self.embedding_key) else None

    # -- settings -------------------------------------------------------------------------------

    @_guarded
    def get_setting(self, name: str) -> object | None:
        value = self._b.meta(f"setting:{name}")
        return json.loads(value) if value is not None else None

    @_guarded
    def set_setting(self, name: str, value: object) -> None:
        """Store a setting (for example the calibrated threshold); ``None`` removes it."""
        with self._b.change():
            self._b.audit("setting", None, name=name, value=value)
            self._b.set_meta(f"setting:{name}", None if value is None else json.dumps(value))

    # -- people and faces -----------------------------------------------------------------------

    @_guarded
    def people(self) -> list[Person]:
        """Everyone enrolled, by name (ASCII case ignored)."""
        return sorted(self._b.people(), key=lambda p: (name_key(p.name), p.id))

    @_guarded
    def __len__(self) -> int:
        return self._b.count_people()

    @_guarded
    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return self._b.person_id(normalise_name(name)) is not None
        except InvalidNameError:
            return False

    @property
    @_guarded
    def face_count(self) -> int:
        """Enrolled faces (kept unknown faces are not counted: see :attr:`unknown`)."""
        return self._b.enrolled_count()

    def not_found(self, name: str) -> PersonNotFoundError:
        """The error for a name no one in the gallery has."""
        return PersonNotFoundError(f"no person named {normalise_name(name)!r} in {self.path}")

    def _person_id(self, name: str) -> int:
        pid = self._b.person_id(normalise_name(name))
        if pid is None:
            raise self.not_found(name)
        return pid

    @_guarded
    def person(self, name: str) -> Person:
        with self._b.snapshot():
            (found,) = self._b.people([self._person_id(name)])
            return found

    @_guarded
    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Enrolled faces (of one person, or all), oldest first."""
        with self._b.snapshot():
            return self._b.faces(self._person_id(name) if name is not None else None)

    @_guarded
    def find_image(self, sha256: str) -> list[str]:
        """Names of the people who have a face enrolled from the image with this SHA-256."""
        return sorted(self._b.image_owners([sha256]).get(sha256, []))

    @overload
    def add_faces(
        self,
        name: str,
        faces: Sequence[NewFace],
        *,
        embedding_key: EmbeddingKey,
        skip_known_images: Literal[False] = False,
    ) -> list[int]: ...

    @overload
    def add_faces(
        self, name: str, faces: Sequence[NewFace], *, embedding_key: EmbeddingKey, skip_known_images: Literal[True]
    ) -> list[int | None]: ...

    @_guarded
    def add_faces(
        self, name: str, faces: Sequence[NewFace], *, embedding_key: EmbeddingKey, skip_known_images: bool = False
    ) -> list[int] | list[int | None]:
        """Enrol ``faces`` for ``name`` (created if new) in one change; return the new face ids.

        With ``skip_known_images``, a face whose ``image_sha256`` is already enrolled is not
        added (its id is ``None``). On a local gallery the change is one transaction; on Milvus its
        writes are ordered (an intent, the audit entry, the person, the faces, the intent cleared), and
        one a kill interrupted is completed or rolled back at the next open (:mod:`faceid.gallery.intents`).
        """
        if not isinstance(embedding_key, EmbeddingKey):
            raise TypeError(f"embedding_key must be an EmbeddingKey, not {type(embedding_key).__name__}")
        name = normalise_name(name)
        vectors = unit_vectors(faces, embedding_key.dimension)
        if not vectors:
            return []
        ids: list[int | None] = [None] * len(vectors)
        b = self._b
        try:
            with b.change():
                mine = self.check_embedding_key(embedding_key)
                todo = list(range(len(faces)))
                if skip_known_images:
                    known = b.image_owners(sorted({f.image_sha256 for f in faces}))
                    todo = [i for i in todo if faces[i].image_sha256 not in known]
                if not todo:
                    raise Unchanged
                if mine is None:
                    self.adopt_embedding_key(embedding_key)
                pid = b.person_id(name)
                new = b.new_face_ids(len(todo))
                for i, face_id in zip(todo, new):
                    ids[i] = face_id
                # who, when, what: face ids only. Image paths and hashes stay in the faces' rows, which
                # `remove` erases, so the audit log keeps nothing of a removed person's photos.
                # the intent first, cleared last: a store without transactions settles a killed change at
                # the next open (faceid.gallery.intents); inside a local gallery's transaction it is invisible
                intents.begin(b, "enroll", name, pid is None, new)
                b.audit("enroll", name, new_person=pid is None, faces=new)
                if pid is None:
                    pid = b.add_person(name)
                b.insert_faces(pid, new, [vectors[i] for i in todo], [faces[i] for i in todo], embedding_key.model)
                intents.end(b)
        except Unchanged:  # every photo was already enrolled: nothing written, no new generation
            pass
        return ids

    @_guarded
    def rename(self, old: str, new: str) -> None:
        """Rename a person; their faces stay. Raises if ``old`` is absent or ``new`` is taken by someone else."""
        old_n, new_n = normalise_name(old), normalise_name(new)
        with self._b.change():
            pid = self._person_id(old_n)
            other = self._b.person_id(new_n)
            if other is not None and other != pid:
                raise name_taken(new_n)
            self._b.audit("rename", new_n, old=old_n, new=new_n)
            self._b.rename_person(pid, new_n)

    @_guarded
    def remove(self, name: str, *, compact: bool = True) -> int:
        """Remove a person and every face of theirs; return how many faces went.

        Nothing of them but their name in the audit log stays in the gallery's files: a local
        gallery overwrites their rows (``secure_delete``), rewrites the file (``VACUUM``: 10-19 s at
        a million faces) and overwrites them in the index file; Milvus compacts its segments.
        The rewrite waits for other processes' reads (up to ``timeout``); if they keep the
        gallery busy, the removal still stands, it is noted in :attr:`problems`, and the rewrite
        happens when the gallery is next opened. With ``compact=False`` a local gallery leaves the
        rewrite for later (:attr:`compaction_pending`, :meth:`compact`; ``faceid serve`` does it in
        a background thread).
        """
        name_n = normalise_name(name)
        with self._b.change():
            pid = self._person_id(name_n)
            gone = self._b.face_ids_of(pid)
            self._b.audit("remove", name_n, faces=len(gone))
            self._b.delete_people([pid])
        self._b.erased(repr(name_n), np.array(gone, np.int64), compact=compact)
        return len(gone)

    # -- single faces and their thumbnails --------------------------------------------------------

    @_guarded
    def face(self, face_id: int) -> FaceRecord:
        """One enrolled face by id; :class:`FaceNotFoundError` if there is none."""
        found = self._b.faces_by_id([int(face_id)])
        if not found:
            raise FaceNotFoundError(f"no face with id {int(face_id)} in {self.path}")
        return found[0]

    @_guarded
    def remove_face(self, face_id: int, *, compact: bool = True) -> str:
        """Remove one face, securely as :meth:`remove` does (``compact`` as there); return whose it was.
        The person stays."""
        face_id = int(face_id)
        with self._b.change():
            owner = self._b.face_owners([face_id]).get(face_id)
            if owner is None:
                raise FaceNotFoundError(f"no face with id {face_id} in {self.path}")
            self._b.audit("remove-face", owner, faces=[face_id])
            self._b.delete_faces([face_id])
        self._b.erased(f"face {face_id}", np.array([face_id], np.int64), compact=compact)
        return owner

    @_guarded
    def face_thumbnail(self, face_id: int) -> bytes | None:
        """The small JPEG kept for a face when it was enrolled, or ``None`` (enrolled before thumbnails)."""
        return self._b.thumbnail(int(face_id))

    @_guarded
    def face_chip(self, face_id: int) -> FaceChip | None:
        """The face's chip (the photo around it, its box and landmarks: :mod:`~faceid.gallery.chips`),
        or ``None`` (no such face, or no chip kept)."""
        return self._b.chip(int(face_id))

    @property
    @_guarded
    def compaction_pending(self) -> bool:
        """Whether a removal's erasure from the files is still due (``remove(..., compact=False)``, a
        rewrite kept busy by other processes, or a process killed before it)."""
        return self._b.compaction_pending()

    @_guarded
    def compact(self, *, wait: bool = True) -> bool:
        """Do the erasure that removals left due, if any (see :meth:`remove`). Returns ``True`` when
        nothing is due any more; ``False`` if other processes kept the gallery busy."""
        if not self._b.compaction_pending():
            return True
        return self._b.compact(wait=wait) and not self._b.compaction_pending()

    @_guarded
    def audit_log(self) -> list[AuditEntry]:
        """Every change the gallery has seen, oldest first."""
        return self._b.audit_entries()

    # -- moving to another model (faceid.migrate) --------------------------------------------------

    @_guarded
    def copy_to(self, folder: str | os.PathLike[str]) -> int:
        """Copy the gallery, as one committed state, into the new owner-only ``folder`` (which must not
        exist) as a local gallery; return the generation copied. The index cache is rebuilt there."""
        return self._b.copy_to(Path(folder))

    @_guarded
    def face_sources(self) -> list[FaceRecord]:
        """Every face (a face of no one has ``person`` ``""``), by id: where each came from, for re-embedding."""
        return self._b.face_sources()

    @contextmanager
    def exclusive(self) -> Iterator[int]:
        """Hold off other writers (a local gallery's write lock) and yield the generation; changes nothing."""
        with self.guard(), self._b.exclusive() as generation:
            yield generation

    @_guarded
    def replace_embeddings(
        self,
        key: EmbeddingKey,
        vectors: dict[int, np.ndarray],
        *,
        new_chips: dict[int, FaceChip] | None = None,
        drop: Sequence[int] = (),
        reason: str = "",
    ) -> None:
        """Give every face a new embedding made with ``key``, in one change (``faceid gallery migrate``).

        ``vectors`` must hold every face but those in ``drop``, which are removed (each recorded
        in the audit log as a removed face, with ``reason``). The calibrated threshold belonged to
        the old model and is removed; people, names, ids and the audit log stay; the change is
        recorded as one ``migrate`` entry. The old embeddings are then erased from the files and
        the index rebuilt. Meant for a gallery no other process has open (:mod:`faceid.migrate`
        works on a copy).

        Raises:
            ValueError: a face is in neither ``vectors`` nor ``drop``, or a vector is not a unit
                vector of ``key``'s dimension.
        """
        rows = {int(i): unit_vectors([NewFace(v, "", (0, 0, 0, 0), 0.0)], key.dimension)[0] for i, v in vectors.items()}
        dropped = sorted({int(i) for i in drop})
        old = self.embedding_key
        b = self._b
        with b.change():
            ids = [r.id for r in b.face_sources()]
            left = sorted(set(ids) - set(rows) - set(dropped))
            if left:
                raise ValueError(f"no new embedding for {n_faces(len(left))} (ids {left[:5]}...)")
            if dropped:
                owners = b.face_owners(dropped)
                for face_id in dropped:
                    b.audit("remove-face", owners.get(face_id), faces=[face_id], reason=reason)
                b.delete_faces(dropped)
            kept = {i: v for i, v in rows.items() if i not in set(dropped)}
            b.set_embeddings(kept, key.model, dict(new_chips or {}))
            b.set_meta("embedding_key", key.dumps())
            for setting in ("threshold", "calibration"):
                b.set_meta(f"setting:{setting}", None)
            b.audit(
                "migrate",
                None,
                old=old.describe() if old else None,
                new=key.describe(),
                faces=len(kept),
                dropped=dropped,
            )
        b.erased("the old embeddings", np.array(dropped, np.int64), compact=True)
        b.rebuild_index()

    # -- search ---------------------------------------------------------------------------------

    @_guarded
    def embeddings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All enrolled faces as ``(face_ids (N,) int64, person_ids (N,) int64, embeddings (N, D) float32)``."""
        return self._b.embeddings(self.dimension or 0)

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
        n, k = len(queries), max(0, int(k))
        dimension = self.dimension
        if n == 0 or k == 0 or dimension is None:
            return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        if queries.shape[1] != dimension:
            raise ModelMismatchError(f"queries have {queries.shape[1]} dimensions, the gallery {dimension}")
        return self._b.search(queries, k)

    @property
    @_guarded
    def index_spec(self) -> IndexSpec:
        """The kind of search index in use (:class:`faceid.index.IndexSpec`): exact or approximate."""
        return self._b.index_spec()

    @_guarded
    def face_owners(self, face_ids: np.ndarray) -> dict[int, str]:
        """Map face ids to the names of the people they belong to (ids not found are left out)."""
        return self._b.face_owners([int(i) for i in np.asarray(face_ids).reshape(-1) if i >= 0])

    @_guarded
    def rebuild_index(self) -> int:
        """Rebuild the search index from the stored faces; return how many faces it holds."""
        return self._b.rebuild_index()

    @property
    def _repair(self) -> str:
        """How to repair rows changed outside faceid on this backend (backups are restored into folders only)."""
        if self._b.folder is not None:
            return audit.RESTORE
        return (
            "a Milvus gallery is not restored in place: restore a backup into a folder "
            "(`faceid gallery restore BACKUP --gallery DIR`) and use that gallery"
        )

    @_guarded
    def check(self) -> list[str]:
        """Problems found in the gallery (empty when it is sound), each with how to repair it.

        Checks the store's own integrity, the stored embedding key, that every embedding (kept
        unknown faces' too) is a finite unit vector of the gallery's dimension, that the faces
        agree with the audit log (a face deleted or added outside faceid shows), and the search
        index (a local gallery's index file must hold exactly the database's faces).
        """
        b = self._b
        try:
            dimension = self.dimension
        except GalleryCorruptError as exc:
            return [str(exc)]
        with b.snapshot():
            problems, fatal = b.storage_problems(dimension)
            if fatal:
                return problems
            ids, _, vectors = b.embeddings(dimension or 0)
            kept = b.unknown_embeddings(dimension) if dimension is not None else vectors[:0]
            owners = b.face_owners(ids.tolist())
            problems += audit.replay_problems(b.audit_entries(), sorted(owners.items()), b.source, repair=self._repair)
        problems += vector_problems(vectors, b.source, repair=self._repair)
        problems += vector_problems(kept, b.source, what="kept unknown faces' embeddings", repair=self._repair)
        problems += b.index_problems()
        return problems
