"""The gallery: enrolled people and their face embeddings.

SQLite (``gallery.db``) is the source of truth; the FAISS index is a cache of its embeddings,
kept at the database's write generation by changing it in place, and checked against it when
loaded from its file. Every change is one
SQLite transaction, so a process killed at any moment leaves the gallery as it was before or
after the change; removed people leave nothing behind in the gallery's files but their name in
the audit log. Scores are cosine similarities of unit vectors (inner products), higher is closer.

:class:`Gallery` composes the parts, one job each:

- :mod:`~faceid.gallery.store`: the SQLite database, its schema and transactions, errors;
- :mod:`~faceid.gallery.people`: the rows of people and faces;
- :mod:`~faceid.gallery.audit`: the append-only audit log and its replay;
- :mod:`~faceid.gallery.deletion`: secure deletion (VACUUM, shredding files);
- :mod:`~faceid.gallery.indexfiles`: index files on disk, their locks and validation;
- :mod:`~faceid.gallery.changes`: the log of removed faces, which lets an index catch up in place;
- :mod:`~faceid.gallery.searchindex`: the search index kept in step with the database;
- :mod:`~faceid.gallery.records`: the dataclasses handed in and out, and the rule for names;
- :mod:`~faceid.gallery.thumbnails`: a small JPEG of each face, deleted with it;
- :mod:`~faceid.gallery.chips`: the photo around each face and its landmarks, from which another
  model's embedding can be made (``faceid gallery migrate``), deleted with it;
- :mod:`~faceid.gallery.unknown`: kept unknown faces, groups, naming, corrections (``gallery.unknown``).

:func:`open_gallery` opens a gallery from where it lives (``--gallery``): a folder (this
:class:`Gallery`), or Milvus (:class:`~faceid.gallery.milvus.MilvusGallery`, same behaviour:
``milvus://HOST:PORT/NAME`` or ``milvus-lite:PATH.db``; :mod:`faceid.gallery.location`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Union, overload

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import (
    EmbeddingKeyError,
    FaceNotFoundError,
    GalleryCorruptError,
    GalleryError,
    InvalidNameError,
    ModelMismatchError,
    PersonNotFoundError,
)
from faceid.gallery import audit, changes, chips, deletion, groupsums, people, records, thumbnails
from faceid.gallery.audit import AuditEntry
from faceid.gallery.chips import FaceChip
from faceid.gallery.indexfiles import IndexFiles
from faceid.gallery.location import MilvusLocation, gallery_location
from faceid.gallery.records import (
    MAX_NAME_LENGTH,
    FaceRecord,
    NewFace,
    Person,
    default_gallery_dir,
    n_faces,
    normalise_name,
)
from faceid.gallery.searchindex import Changes, SearchIndex
from faceid.gallery.store import DB_NAME, SCHEMA_VERSION, Store, Unchanged, guarded
from faceid.gallery.unknown import UnknownFaces, unknown_embeddings

__all__ = [
    "DB_NAME",
    "MAX_NAME_LENGTH",
    "SCHEMA_VERSION",
    "AnyGallery",
    "AuditEntry",
    "FaceChip",
    "FaceRecord",
    "Gallery",
    "MilvusGallery",
    "NewFace",
    "Person",
    "default_gallery_dir",
    "normalise_name",
    "open_gallery",
]

log = logging.getLogger(__name__)


def open_gallery(
    spec: str | os.PathLike[str] | None = None, *, create: bool = True, timeout: float = 30.0
) -> Gallery | MilvusGallery:
    """Open the gallery ``spec`` names: a folder, ``milvus://HOST:PORT/NAME`` or ``milvus-lite:PATH.db``.

    ``None``: ``$FACEID_GALLERY``, else ``./gallery``. Both kinds have the same public behaviour;
    a Milvus gallery needs the ``milvus`` extra (a one-line :class:`GalleryError` says so).
    """
    where = gallery_location(spec)
    if isinstance(where, MilvusLocation):
        from faceid.gallery.milvus import require_milvus

        require_milvus(where.spec)
        return MilvusGallery(where, create=create, timeout=timeout)
    return Gallery(where, create=create, timeout=timeout)


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
    any number of processes may open the same gallery at once. SQLite's errors never leave it
    (busy -> :class:`GalleryBusyError`, a damaged database -> :class:`GalleryCorruptError`).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, create: bool = True, timeout: float = 30.0
    ) -> None:
        where = gallery_location(path)  # default: $FACEID_GALLERY, else ./gallery
        if isinstance(where, MilvusLocation):
            raise GalleryError(f"{where}: a gallery in Milvus; open it with faceid.gallery.open_gallery")
        self.path = where
        self.timeout = float(timeout)
        self.problems: list[str] = []
        #: who makes the changes, for the audit log (``"key:NAME"`` through ``faceid serve``);
        #: ``None`` records the OS user
        self.actor: str | None = None
        self._closed = True  # until the database is open
        self._store = Store(self.path, create=create, timeout=self.timeout)
        self._db = self._store.db  # the connection (tests trace its statements)
        self._closed = False
        self.unknown = UnknownFaces(self)  #: kept unknown faces: keep, group, name, move, merge, forget
        files = IndexFiles(
            self.path, generation=self._store.generation, timeout=self.timeout, busy=self._store.busy_error
        )
        self._search = SearchIndex(files, changes=self._changes, generation=self._store.generation, report=self._report)
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    @guarded
    def _recover(self) -> None:
        """Finish what a killed process left: a stale journal, a removal not yet compacted, old index files;
        give a gallery made before the log of removed faces that log."""
        deletion.clear_stale_journal(self._store)
        if not changes.exists(self._db) or (self._store.schema >= 2 and not groupsums.exists(self._db)):
            try:
                with self._store.write(versioned=False) as db:
                    if not changes.exists(db):
                        changes.create(db, self._store.generation())
                    if self._store.schema >= 2 and not groupsums.exists(db):
                        groupsums.create(db)
            except sqlite3.OperationalError as exc:  # read-only: its index is rebuilt after each change
                if "readonly" not in str(exc):
                    raise
        if self._compaction_pending():
            self._compact(wait=False)
        self._search.tidy()

    def _report(self, problem: str) -> None:
        """Record damage found while using the gallery (once per message)."""
        if problem not in self.problems:
            self.problems.append(problem)
            log.info("%s", problem)

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Write the index cache if it is current and not yet written, and close the database."""
        if self._closed:
            return
        try:
            self._search.save_if_pending()
        except (OSError, GalleryError) as exc:  # a full disk or a busy lock: the cache is rebuilt next time
            log.warning("could not write the index cache: %s", exc)
        self._store.close()
        self._closed = True

    @property
    @guarded
    def generation(self) -> int:
        """How many changes the gallery has seen; the index cache is tied to it."""
        return self._store.generation()

    # -- embedding model ------------------------------------------------------------------------

    @property
    @guarded
    def embedding_key(self) -> EmbeddingKey | None:
        """The model and preprocessing that made this gallery's embeddings, or ``None`` while empty of them.

        Raises:
            GalleryCorruptError: the stored key is not a valid embedding key.
        """
        value = self._store.meta("embedding_key")
        if not value:
            return None
        try:
            return EmbeddingKey.from_json(value)
        except EmbeddingKeyError as exc:
            raise GalleryCorruptError(f"{self.path}: the stored {exc}; restore the gallery from a backup") from None

    @guarded
    def check_embedding_key(self, key: EmbeddingKey) -> None:
        """Raise :class:`ModelMismatchError` unless ``key`` is this gallery's (or it has none yet)."""
        if not isinstance(key, EmbeddingKey):
            raise TypeError(f"an EmbeddingKey is needed, not {type(key).__name__}")
        mine = self.embedding_key
        if mine is not None and mine != key:
            raise ModelMismatchError(
                f"{self.path}: its embeddings were made with {mine.describe()}; refusing to mix in embeddings "
                f"made with {key.describe()} (differs in {', '.join(mine.differences(key))}). "
                "Use the gallery's settings, or enrol into a new gallery (--gallery DIR)."
            )

    @property
    def dimension(self) -> int | None:
        return key.dimension if (key := self.embedding_key) else None

    # -- settings -------------------------------------------------------------------------------

    @guarded
    def get_setting(self, name: str) -> object | None:
        value = self._store.meta(f"setting:{name}")
        return json.loads(value) if value is not None else None

    @guarded
    def set_setting(self, name: str, value: object) -> None:
        """Store a setting (for example the calibrated threshold); ``None`` removes it."""
        with self._store.write() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (f"setting:{name}",))
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"setting:{name}", json.dumps(value)))
            audit.record(db, "setting", None, actor=self.actor, name=name, value=value)

    # -- people and faces -----------------------------------------------------------------------

    @guarded
    def people(self) -> list[Person]:
        """Everyone enrolled, by name."""
        return people.people(self._db)

    @guarded
    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM people").fetchone()[0])

    @guarded
    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return people.person_id(self._db, name) is not None
        except InvalidNameError:
            return False

    @property
    @guarded
    def face_count(self) -> int:
        """Enrolled faces (kept unknown faces are not counted: see :attr:`unknown`)."""
        return people.enrolled_count(self._db)

    def _not_found(self, name: str) -> PersonNotFoundError:
        return PersonNotFoundError(f"no person named {normalise_name(name)!r} in {self.path}")

    @guarded
    def person(self, name: str) -> Person:
        with self._store.snapshot():
            pid = people.person_id(self._db, name)
            if pid is None:
                raise self._not_found(name)
            return next(p for p in people.people(self._db) if p.id == pid)

    @guarded
    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Enrolled faces (of one person, or all), oldest first."""
        with self._store.snapshot():
            if name is not None and people.person_id(self._db, name) is None:
                raise self._not_found(name)
            return people.faces(self._db, normalise_name(name) if name is not None else None)

    @guarded
    def find_image(self, sha256: str) -> list[str]:
        """Names of the people who have a face enrolled from the image with this SHA-256."""
        return people.owners_of_image(self._db, sha256)

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

    @guarded
    def add_faces(
        self, name: str, faces: Sequence[NewFace], *, embedding_key: EmbeddingKey, skip_known_images: bool = False
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
        if not isinstance(embedding_key, EmbeddingKey):
            raise TypeError(f"embedding_key must be an EmbeddingKey, not {type(embedding_key).__name__}")
        name = normalise_name(name)
        vectors = people.unit_vectors(faces, embedding_key.dimension)
        if not vectors:
            return []
        ids: list[int | None] = [None] * len(vectors)
        try:
            with self._store.write() as db:
                self.check_embedding_key(embedding_key)
                todo = [
                    i
                    for i, face in enumerate(faces)
                    if not (skip_known_images and people.owners_of_image(db, face.image_sha256))
                ]
                if not todo:
                    raise Unchanged
                if self.embedding_key is None:
                    db.execute("INSERT INTO meta VALUES ('embedding_key', ?)", (embedding_key.dumps(),))
                pid = people.person_id(db, name)
                created = pid is None
                if pid is None:
                    pid = people.add_person(db, name)
                for i, face_id in zip(todo, people.new_ids(db, "faces", len(todo))):
                    people.insert_face(db, face_id, pid, vectors[i], faces[i], embedding_key.model)
                    ids[i] = face_id
                # who, when, what: face ids only. Image paths and hashes stay in the faces rows, which
                # `remove` overwrites, so the audit log keeps nothing of a removed person's photos.
                audit.record(db, "enroll", name, actor=self.actor, new_person=created, faces=[ids[i] for i in todo])
        except Unchanged:  # every photo was already enrolled: rolled back, no new generation
            pass
        return ids

    @guarded
    def rename(self, old: str, new: str) -> None:
        """Rename a person; their faces stay. Raises if ``old`` is absent or ``new`` is taken by someone else."""
        old_n, new_n = normalise_name(old), normalise_name(new)
        with self._store.write() as db:
            pid = people.person_id(db, old_n)
            if pid is None:
                raise self._not_found(old_n)
            other = people.person_id(db, new_n)
            if other is not None and other != pid:
                raise records.name_taken(new_n)
            db.execute("UPDATE people SET name = ? WHERE id = ?", (new_n, pid))
            audit.record(db, "rename", new_n, actor=self.actor, old=old_n, new=new_n)

    @guarded
    def remove(self, name: str, *, compact: bool = True) -> int:
        """Remove a person and every face of theirs; return how many faces went.

        The rows are overwritten in the database file (``secure_delete``), the file is then
        rewritten (``VACUUM``) so that no stale copy of them stays in an unused part of a page
        (this rewrite costs time in proportion to the gallery: 10-19 s at a million faces),
        and the faces are overwritten in the index file in place and taken out of the index in
        memory: the embeddings, image paths and hashes cannot be read back from the gallery's
        files. The rewrite waits for other processes' reads (up to ``timeout``); if they keep
        the gallery busy, the removal still stands, it is noted in :attr:`problems`, and the
        rewrite happens when the gallery is next opened.

        With ``compact=False`` the rewrite is left for later: the call returns once the removal
        is committed and the index files are scrubbed (a fraction of a second at a million
        faces), and :attr:`compaction_pending` says the rewrite is due until :meth:`compact`
        (or the next open of the gallery, in any process) does it. ``faceid serve`` does that
        in a background thread.
        """
        name_n = normalise_name(name)
        with self._store.write() as db:
            pid = people.person_id(db, name_n)
            if pid is None:
                raise self._not_found(name_n)
            gone = np.array([r[0] for r in db.execute("SELECT id FROM faces WHERE person_id = ?", (pid,))], np.int64)
            changes.note_removed(db, pid, self._store.generation() + 1)  # the generation this commits as
            count = people.delete_person(db, pid)
            audit.record(db, "remove", name_n, actor=self.actor, faces=count)
            deletion.note_removal(db)
        self._scrub_after_removal(repr(name_n), gone, compact=compact)
        return count

    def _scrub_after_removal(self, what: str, gone: np.ndarray, *, compact: bool) -> None:
        """After a committed removal: rewrite the database file (unless told to leave it for
        later) and the index cache (see :meth:`remove`)."""
        if compact and not self._compact(wait=True):
            self._report(
                f"{self.path}: {what} is removed, but other processes kept the gallery busy, so "
                "old copies of the removed rows may stay in unused parts of gallery.db until faceid "
                "next opens the gallery while no one else uses it"
            )
        try:
            self._search.removed(gone)
        except (GalleryError, OSError) as exc:  # the removal is committed; the next open sweeps old files
            self._report(
                f"{self.path}: the index cache could not be rewritten after removing {what} ({exc}); "
                "run `faceid gallery rebuild-index`"
            )

    # -- single faces and their thumbnails --------------------------------------------------------

    @guarded
    def face(self, face_id: int) -> FaceRecord:
        """One enrolled face by id; :class:`FaceNotFoundError` if there is none."""
        found = people.faces_by_id(self._db, [int(face_id)])
        if not found:
            raise FaceNotFoundError(f"no face with id {int(face_id)} in {self.path}")
        return found[0]

    @guarded
    def remove_face(self, face_id: int, *, compact: bool = True) -> str:
        """Remove one face, securely as :meth:`remove` does (``compact`` as there); return whose it was.
        The person stays."""
        face_id = int(face_id)
        with self._store.write() as db:
            owner = people.face_owners(db, np.array([face_id])).get(face_id)
            if owner is None:
                raise FaceNotFoundError(f"no face with id {face_id} in {self.path}")
            changes.note_removed_faces(db, [face_id], self._store.generation() + 1)  # the generation this commits as
            db.execute("DELETE FROM faces WHERE id = ?", (face_id,))
            audit.record(db, "remove-face", owner, actor=self.actor, faces=[face_id])
            deletion.note_removal(db)
        self._scrub_after_removal(f"face {face_id}", np.array([face_id], np.int64), compact=compact)
        return owner

    @guarded
    def face_thumbnail(self, face_id: int) -> bytes | None:
        """The small JPEG kept for a face when it was enrolled, or ``None`` (enrolled before thumbnails)."""
        with self._store.snapshot():
            return thumbnails.read(self._db, face_id)

    @property
    def compaction_pending(self) -> bool:
        """Whether a removal's rewrite of ``gallery.db`` is still due (``remove(..., compact=False)``,
        a rewrite kept busy by other processes, or a process killed before it)."""
        return self._compaction_pending()

    def compact(self, *, wait: bool = True) -> bool:
        """Do the rewrite of ``gallery.db`` that removals left due, if any (see :meth:`remove`).

        Returns ``True`` when nothing is due any more; ``False`` if other processes kept the
        gallery busy (at once without ``wait``, else after ``timeout``): it stays due.
        """
        if not self._compaction_pending():
            return True
        return self._compact(wait=wait) and not self._compaction_pending()

    @guarded
    def face_chip(self, face_id: int) -> FaceChip | None:
        """The face's chip (the photo around it, its box and landmarks: :mod:`~faceid.gallery.chips`),
        or ``None`` (enrolled before chips were kept)."""
        with self._store.snapshot():
            return chips.read(self._db, face_id)

    # -- moving to another model (faceid.migrate) --------------------------------------------------

    @guarded
    def copy_to(self, folder: str | os.PathLike[str]) -> int:
        """Copy the database, as one committed state, into the new owner-only ``folder`` (which must not
        exist); return the generation copied. The index cache is not copied: it is rebuilt there."""
        folder = Path(folder)
        folder.mkdir(mode=0o700)
        target = folder / DB_NAME
        try:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
            copy = sqlite3.connect(target)
            try:
                with self._store.snapshot():
                    generation = self._store.generation()
                    self._db.backup(copy)
            finally:
                copy.close()
        except BaseException:  # busy, a full disk: no half copy left behind
            for leftover in folder.iterdir():
                deletion.shred(leftover)
            folder.rmdir()
            raise
        return generation

    @guarded
    def face_sources(self) -> list[FaceRecord]:
        """Every face (a face of no one has ``person`` ``""``), by id: where each came from, for re-embedding."""
        with self._store.snapshot():
            return people.face_sources(self._db)

    @contextmanager
    def exclusive(self) -> Iterator[int]:
        """Hold the gallery's write lock (other writers wait) and yield its generation; changes nothing."""
        try:
            with self._store.write(versioned=False):
                yield self._store.generation()
        except sqlite3.Error as exc:
            raise (self._store.translate(exc) or exc) from None

    @guarded
    def replace_embeddings(
        self,
        key: EmbeddingKey,
        vectors: dict[int, np.ndarray],
        *,
        new_chips: dict[int, FaceChip] | None = None,
        drop: Sequence[int] = (),
        reason: str = "",
    ) -> None:
        """Give every face a new embedding made with ``key``, in one transaction (``faceid gallery migrate``).

        ``vectors`` must hold every face but those in ``drop``, which are removed (each recorded
        in the audit log as a removed face, with ``reason``). The calibrated threshold belonged to
        the old model and is removed; people, names, ids and the audit log stay; the change is
        recorded as one ``migrate`` entry. The file is then compacted, so no old embedding stays,
        and the index rebuilt. Meant for a gallery no other process has open (:mod:`faceid.migrate`
        works on a copy): another process's index would keep the old vectors until it reopens.

        Raises:
            ValueError: a face is in neither ``vectors`` nor ``drop``, or a vector is not a unit
                vector of ``key``'s dimension.
        """
        rows = {
            int(i): people.unit_vectors([NewFace(v, "", (0, 0, 0, 0), 0.0)], key.dimension)[0]
            for i, v in vectors.items()
        }
        dropped = sorted({int(i) for i in drop})
        old = self.embedding_key
        with self._store.write() as db:
            ids = [int(r[0]) for r in db.execute("SELECT id FROM faces ORDER BY id")]
            left = sorted(set(ids) - set(rows) - set(dropped))
            if left:
                raise ValueError(f"no new embedding for {n_faces(len(left))} (ids {left[:5]}...)")
            if dropped:
                owners = people.face_owners(db, np.array(dropped, np.int64))
                changes.note_removed_faces(db, dropped, self._store.generation() + 1)
                for face_id in dropped:
                    db.execute("DELETE FROM faces WHERE id = ?", (face_id,))
                    audit.record(
                        db, "remove-face", owners.get(face_id), actor=self.actor, faces=[face_id], reason=reason
                    )
            for face_id, vector in rows.items():
                if face_id in dropped:
                    continue
                db.execute(
                    "UPDATE faces SET embedding = ?, model = ? WHERE id = ?", (vector.tobytes(), key.model, face_id)
                )
                chip = (new_chips or {}).get(face_id)
                if chip is not None:
                    chips.store(db, face_id, chip)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('embedding_key', ?)", (key.dumps(),))
            for setting in ("threshold", "calibration"):
                db.execute("DELETE FROM meta WHERE key = ?", (f"setting:{setting}",))
            audit.record(
                db,
                "migrate",
                None,
                actor=self.actor,
                old=old.describe() if old else None,
                new=key.describe(),
                faces=len(rows) - len(set(rows) & set(dropped)),
                dropped=dropped,
            )
            deletion.note_removal(db)  # the old embeddings: compacted away below
        if not self._compact(wait=True):
            self._report(f"{self.path}: could not compact the file after the migration; it is done on the next open")
        self._search.rebuild()

    @guarded
    def _compaction_pending(self) -> bool:
        return deletion.compaction_pending(self._store)

    @guarded
    def _compact(self, *, wait: bool) -> bool:
        return deletion.compact(self._store, wait=wait)

    @guarded
    def audit_log(self) -> list[AuditEntry]:
        """Every change the gallery has seen, oldest first."""
        return audit.entries(self._db)

    # -- search ---------------------------------------------------------------------------------

    @guarded
    def embeddings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All enrolled faces as ``(face_ids (N,) int64, person_ids (N,) int64, embeddings (N, D) float32)``."""
        return people.embeddings(self._db, self.dimension or 0, self._store.file)

    @guarded
    def _changes(self, since: int | None, after: int) -> Changes:
        """The faces with ids above ``after`` and those removed after generation ``since``, in one snapshot."""
        with self._store.snapshot():
            generation = self.generation
            dimension = self.dimension or 0
            removed = changes.removed_since(self._db, since) if since is not None else np.zeros(0, np.int64)
            ids, _, vectors = people.embeddings(self._db, dimension, self._store.file, after=after, also=removed)
            count = people.enrolled_count(self._db)
        return Changes(generation, max(1, dimension), ids, vectors, removed, count)

    @guarded
    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar enrolled faces of each query.

        Args:
            queries: ``(n, D)`` float32 unit rows.
        Returns:
            ``(scores, face_ids)``, both ``(n, k)``: cosine similarities, best first (float32) and
            face ids (int64), ``-1`` where fewer than ``k`` faces are enrolled.
        """
        return self._search.search(queries, k)

    @property
    @guarded
    def index_spec(self) -> Any:
        """The kind of search index in use (:class:`faceid.index.IndexSpec`): exact or approximate, chosen by size."""
        return self._search.spec()

    @guarded
    def face_owners(self, face_ids: np.ndarray) -> dict[int, str]:
        """Map face ids to the names of the people they belong to (ids not found are left out)."""
        with self._store.snapshot():
            return people.face_owners(self._db, face_ids)

    @guarded
    def rebuild_index(self) -> int:
        """Rebuild the index cache from SQLite and write it; return how many faces it holds."""
        return self._search.rebuild()

    @guarded
    def check(self) -> list[str]:
        """Problems found in the gallery's files (empty when it is sound), each with how to repair it.

        Checks SQLite's integrity, that every embedding (kept unknown faces' too) is a finite unit
        vector of the gallery's dimension, that the faces agree with the audit log (a face deleted
        or added outside faceid shows), and that the current index file, if there is one, holds
        exactly the database's face ids and vectors.
        """
        where = self._store.file
        with self._store.snapshot():
            problems = self._store.integrity_problems()
            if problems:
                return problems
            dimension = self.dimension
            problems, fatal = people.row_problems(self._db, dimension, where)
            if fatal:
                return problems
            ids, _, vectors = self.embeddings()
            kept = unknown_embeddings(self._db, dimension) if dimension is not None else vectors[:0]
            problems += audit.problems(self._db, where)
        problems += people.vector_problems(vectors, where)
        problems += people.vector_problems(kept, where, what="kept unknown faces' embeddings")
        problems += self._search.problems()
        return problems


from faceid.gallery.milvus import MilvusGallery  # noqa: E402  (imports pymilvus only when one is opened)

#: either kind of gallery: what :func:`open_gallery` returns and what enrol, identify and calibrate take
AnyGallery = Union[Gallery, MilvusGallery]
