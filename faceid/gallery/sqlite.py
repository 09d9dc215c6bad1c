"""A gallery in a folder: :class:`SqliteBackend`, the :class:`~faceid.gallery.backend.GalleryBackend` on SQLite.

``gallery.db`` is the truth (:mod:`~faceid.gallery.store`: schema, transactions, errors); the FAISS
index is its cache (:mod:`~faceid.gallery.searchindex`, :mod:`~faceid.gallery.indexfiles`), kept at
the database's write generation by changing it in place with the log of removed faces
(:mod:`~faceid.gallery.changes`). A change is one SQLite transaction. Removed rows are erased
from the files (:mod:`~faceid.gallery.deletion`): overwritten (``secure_delete``), the file
rewritten (``VACUUM``), and the index file overwritten in place.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import GalleryError
from faceid.gallery import audit, changes, chips, deletion, groupsums, people, thumbnails
from faceid.gallery.backend import KEEP, chunks
from faceid.gallery.indexfiles import IndexFiles
from faceid.gallery.keys import SqliteKeyStore
from faceid.gallery.records import FaceRecord, NewFace, Person, UnknownFace
from faceid.gallery.searchindex import Changes, SearchIndex
from faceid.gallery.sqlite_grouping import group_step, unknown_embeddings
from faceid.gallery.store import DB_NAME, Store, guarded

if TYPE_CHECKING:
    from faceid.gallery.audit import AuditEntry
    from faceid.gallery.chips import FaceChip
    from faceid.gallery.records import GroupingUpdate
    from faceid.index import IndexSpec

__all__ = ["SqliteBackend"]

log = logging.getLogger(__name__)

_CHUNK = 900  # ids per "IN (...)": under SQLite's limit of bound values
_UNKNOWN = "id, group_id, image_path, image_sha256, box, confidence, created_at"


class SqliteBackend:
    """The store of a folder gallery (:class:`~faceid.gallery.backend.GalleryBackend`).

    Attributes:
        store: the open database (:class:`~faceid.gallery.store.Store`).
        db: its connection (tests trace its statements).
        search_index: the search index kept in step with it (:class:`~faceid.gallery.searchindex.SearchIndex`).
    """

    another = "--gallery DIR"

    def __init__(self, folder: Path, *, create: bool, timeout: float) -> None:
        self.path: Path = folder
        self.folder: Path | None = folder
        self.timeout = float(timeout)
        self.problems: list[str] = []
        self.actor: str | None = None
        self._closed = True  # until the database is open
        self.store = Store(folder, create=create, timeout=self.timeout)
        self.db = self.store.db
        self.source: Path = self.store.file
        self._closed = False
        self._leaving: list[int] = []  # faces that left the search in the change under way
        self.keys = SqliteKeyStore(self.store, lambda: self.actor)
        files = IndexFiles(folder, generation=self.store.generation, timeout=self.timeout, busy=self.store.busy_error)
        self.search_index = SearchIndex(
            files,
            changes=self._changes,
            generation=self.store.generation,
            report=self.report,
            apart=self._changes_apart,
            lookup=self._enrolled_vectors,
        )
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    @guarded
    def _recover(self) -> None:
        """Finish what a killed process left: a stale journal, a removal not yet compacted, old index files;
        give a gallery made before the log of removed faces that log."""
        deletion.clear_stale_journal(self.store)
        if not changes.exists(self.db) or (self.store.schema >= 2 and not groupsums.exists(self.db)):
            try:
                with self.store.write(versioned=False) as db:
                    if not changes.exists(db):
                        changes.create(db, self.store.generation())
                    if self.store.schema >= 2 and not groupsums.exists(db):
                        groupsums.create(db)
            except sqlite3.OperationalError as exc:  # read-only: its index is rebuilt after each change
                if "readonly" not in str(exc):
                    raise
        if deletion.compaction_pending(self.store):
            self.compact(wait=False)
        self.search_index.tidy()

    def report(self, problem: str) -> None:
        """Record damage found while using the gallery (once per message)."""
        if problem not in self.problems:
            self.problems.append(problem)
            log.info("%s", problem)

    def close(self) -> None:
        """Write the index cache if it is current and not yet written, and close the database."""
        if self._closed:
            return
        try:
            self.search_index.save_if_pending()
        except (OSError, GalleryError) as exc:  # a full disk or a busy lock: the cache is rebuilt next time
            log.warning("could not write the index cache: %s", exc)
        self.store.close()
        self._closed = True

    def translate(self, exc: Exception) -> GalleryError | None:
        return self.store.translate(exc) if isinstance(exc, sqlite3.Error) else None

    @contextmanager
    def change(self, *, versioned: bool = True) -> Iterator[None]:
        self._leaving = []
        try:
            with self.store.write(versioned=versioned):
                yield
        except BaseException:
            self._leaving = []
            raise
        leaving, self._leaving = self._leaving, []
        if leaving:  # after the commit only: their rows in the index file are overwritten
            self.search_index.removed(np.array(leaving, np.int64))

    def snapshot(self) -> Any:
        return self.store.snapshot()

    def require_unknown(self, what: str) -> None:
        self.store.require(2, what)

    def generation(self) -> int:
        return self.store.generation()

    def meta(self, key: str) -> str | None:
        return self.store.meta(key)

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def audit(self, action: str, person: str | None, **detail: Any) -> None:
        audit.record(self.db, action, person, actor=self.actor, **detail)

    def audit_entries(self) -> list[AuditEntry]:
        return audit.entries(self.db)

    # -- people -------------------------------------------------------------------------------------

    def person_id(self, name: str) -> int | None:
        return people.person_id(self.db, name)

    def people(self, ids: Sequence[int] | None = None) -> list[Person]:
        found = people.people(self.db)
        if ids is None:
            return found
        wanted = {int(i) for i in ids}
        return [p for p in found if p.id in wanted]

    def count_people(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM people").fetchone()[0])

    def add_person(self, name: str) -> int:
        return people.add_person(self.db, name)

    def rename_person(self, person: int, name: str) -> None:
        self.db.execute("UPDATE people SET name = ? WHERE id = ?", (name, int(person)))

    def delete_people(self, ids: Sequence[int], *, erase: bool = True) -> None:
        for pid in ids:
            changes.note_removed(self.db, int(pid), self.store.generation() + 1)  # the generation this commits as
            people.delete_person(self.db, int(pid))  # their faces and rules go with them (ON DELETE CASCADE)
        if erase and ids:
            deletion.note_removal(self.db)

    # -- faces --------------------------------------------------------------------------------------

    def new_face_ids(self, count: int) -> list[int]:
        return people.new_ids(self.db, "faces", count)

    def insert_faces(
        self,
        person: int | None,
        ids: Sequence[int],
        vectors: Sequence[np.ndarray],
        faces: Sequence[NewFace],
        model: str,
    ) -> None:
        for face_id, vector, face in zip(ids, vectors, faces):
            people.insert_face(self.db, int(face_id), person, vector, face, model)

    def faces(self, person: int | None = None) -> list[FaceRecord]:
        if person is None:
            return people.faces(self.db)
        row = self.db.execute("SELECT name FROM people WHERE id = ?", (int(person),)).fetchone()
        return people.faces(self.db, row[0]) if row else []

    def faces_by_id(self, ids: Sequence[int]) -> list[FaceRecord]:
        return [
            r for chunk in chunks(sorted({int(i) for i in ids}), _CHUNK) for r in people.faces_by_id(self.db, chunk)
        ]

    def _in(self, query: str, ids: Sequence[int]) -> list[tuple[Any, ...]]:
        """``query`` (with ``IN ({})``) over ``ids`` in chunks SQLite accepts."""
        out: list[tuple[Any, ...]] = []
        for chunk in chunks([int(i) for i in ids], _CHUNK):
            out += self.db.execute(query.format(",".join("?" * len(chunk))), list(chunk)).fetchall()
        return out

    def face_rows(self, ids: Sequence[int]) -> list[tuple[int, int | None, int | None]]:
        return [
            (int(r[0]), r[1], r[2]) for r in self._in("SELECT id, person_id, group_id FROM faces WHERE id IN ({})", ids)
        ]

    def face_ids_of(self, person: int) -> list[int]:
        return [int(r[0]) for r in self.db.execute("SELECT id FROM faces WHERE person_id = ? ORDER BY id", (person,))]

    def photos_of(self, ids: Sequence[int]) -> dict[int, str]:
        return {int(i): str(s) for i, s in self._in("SELECT id, image_sha256 FROM faces WHERE id IN ({})", ids)}

    def enrolled_count(self) -> int:
        return people.enrolled_count(self.db)

    def image_owners(self, shas: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for chunk in chunks(list(shas), _CHUNK):
            rows = self.db.execute(
                "SELECT DISTINCT f.image_sha256, p.name FROM faces f JOIN people p ON p.id = f.person_id "
                f"WHERE f.image_sha256 IN ({','.join('?' * len(chunk))})",
                list(chunk),
            ).fetchall()
            for sha, name in rows:
                out.setdefault(sha, []).append(name)
        return out

    def face_owners(self, ids: Sequence[int]) -> dict[int, str]:
        return people.face_owners(self.db, np.array(list(ids), np.int64))

    def thumbnail(self, face_id: int) -> bytes | None:
        with self.store.snapshot():
            return thumbnails.read(self.db, face_id)

    def chip(self, face_id: int) -> FaceChip | None:
        with self.store.snapshot():
            return chips.read(self.db, face_id)

    def embeddings(self, dimension: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return people.embeddings(self.db, dimension, self.store.file)

    def face_sources(self) -> list[FaceRecord]:
        with self.store.snapshot():
            return people.face_sources(self.db)

    def set_faces(self, ids: Sequence[int], *, person: int | None = KEEP, group: int | None = KEEP) -> None:
        ids = sorted({int(i) for i in ids})
        if person is not KEEP:
            rows = self.face_rows(ids)
            # faces entering or leaving the search: the index catches up with them in place
            switched = [f for f, was, _ in rows if (was is None) != (person is None)]
            changes.note_removed_faces(self.db, switched, self.store.generation() + 1)
            self._leaving += [f for f, was, _ in rows if was is not None and person is None]
        sets, values = [], []
        if person is not KEEP:
            sets.append("person_id = ?")
            values.append(person)
        if group is not KEEP:
            sets.append("group_id = ?")
            values.append(group)
        for chunk in chunks(ids, _CHUNK):
            marks = ",".join("?" * len(chunk))
            self.db.execute(f"UPDATE faces SET {', '.join(sets)} WHERE id IN ({marks})", [*values, *chunk])

    def delete_faces(self, ids: Sequence[int]) -> None:
        enrolled = [int(r[0]) for r in self._in("SELECT id FROM faces WHERE id IN ({}) AND person_id IS NOT NULL", ids)]
        changes.note_removed_faces(self.db, enrolled, self.store.generation() + 1)
        for chunk in chunks(sorted({int(i) for i in ids}), _CHUNK):
            # thumbnails, chips and rules go with them (ON DELETE CASCADE)
            self.db.execute(f"DELETE FROM faces WHERE id IN ({','.join('?' * len(chunk))})", list(chunk))
        deletion.note_removal(self.db)

    def erased(self, what: str, gone: np.ndarray, *, compact: bool) -> None:
        if compact and not self.compact(wait=True):
            self.report(
                f"{self.path}: {what} is removed, but other processes kept the gallery busy, so old copies of the "
                "removed rows may stay in unused parts of gallery.db until faceid next opens the gallery while "
                "no one else uses it"
            )
        if not len(gone):
            return
        try:
            self.search_index.removed(gone)
        except (GalleryError, OSError) as exc:  # the removal is committed; the next open sweeps old files
            self.report(
                f"{self.path}: the index cache could not be rewritten after removing {what} ({exc}); "
                "run `faceid gallery rebuild-index`"
            )

    def compaction_pending(self) -> bool:
        return deletion.compaction_pending(self.store)

    def compact(self, *, wait: bool) -> bool:
        return deletion.compact(self.store, wait=wait)

    # -- search -------------------------------------------------------------------------------------

    def _dimension(self) -> int:
        value = self.store.meta("embedding_key")
        return EmbeddingKey.from_json(value).dimension if value else 0

    @guarded
    def _changes(self, since: int | None, after: int) -> Changes:
        """The faces with ids above ``after`` and those removed after generation ``since``, in one snapshot."""
        with self.store.snapshot():
            return _changes_on(self.db, self.store.file, since, after)

    def _changes_apart(self, since: int | None, after: int) -> Changes:
        """:meth:`_changes` on a read-only connection of its own (for a background thread)."""
        db = sqlite3.connect(f"{self.store.file.as_uri()}?mode=ro", uri=True, timeout=self.timeout)
        try:
            db.execute("BEGIN")
            return _changes_on(db, self.store.file, since, after)
        finally:
            db.close()

    @guarded
    def _enrolled_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (m,), embeddings (m, D))`` of the faces of ``ids`` that are enrolled (other sizes left out)."""
        dimension = self._dimension()
        rows = [
            r
            for r in self._in(
                "SELECT id, embedding FROM faces WHERE person_id IS NOT NULL AND id IN ({})", ids.tolist()
            )
            if len(r[1]) == 4 * dimension
        ]
        found = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dimension)
        return found, vectors

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.search_index.search(queries, k)

    def index_spec(self) -> IndexSpec:
        return self.search_index.spec()

    def rebuild_index(self) -> int:
        return self.search_index.rebuild()

    def storage_problems(self, dimension: int | None) -> tuple[list[str], bool]:
        problems = self.store.integrity_problems()
        if problems:
            return problems, True
        return people.row_problems(self.db, dimension, self.store.file)

    def index_problems(self) -> list[str]:
        return self.search_index.problems()

    # -- kept unknown faces ---------------------------------------------------------------------------

    def unknown_count(self) -> int:
        if self.store.schema < 2:
            return 0
        return int(self.db.execute("SELECT COUNT(*) FROM faces WHERE person_id IS NULL").fetchone()[0])

    def unknown_faces(self, *, group: int | None = None, grouped: bool | None = None) -> list[UnknownFace]:
        if self.store.schema < 2:
            return []
        where, args = "person_id IS NULL", []
        if group is not None:
            where += " AND group_id = ?"
            args.append(int(group))
        elif grouped is not None:
            where += " AND group_id IS NOT NULL" if grouped else " AND group_id IS NULL"
        rows = self.db.execute(f"SELECT {_UNKNOWN} FROM faces WHERE {where} ORDER BY id", args).fetchall()
        return [UnknownFace(int(r[0]), r[1], r[2], r[3], tuple(json.loads(r[4])), float(r[5]), r[6]) for r in rows]

    def unknown_embeddings(self, dimension: int) -> np.ndarray:
        return (
            unknown_embeddings(self.db, dimension) if self.store.schema >= 2 else np.zeros((0, dimension), np.float32)
        )

    def kept_at(self, spots: Sequence[tuple[str, tuple[int, int, int, int]]]) -> dict[tuple[str, tuple[int, ...]], int]:
        wanted = {(sha, tuple(int(v) for v in box)) for sha, box in spots}
        found: dict[tuple[str, tuple[int, ...]], int] = {}
        for chunk in chunks(sorted({sha for sha, _ in wanted}), _CHUNK):
            query = f"SELECT id, image_sha256, box FROM faces WHERE image_sha256 IN ({','.join('?' * len(chunk))})"
            for face_id, sha, box in self.db.execute(query, list(chunk)).fetchall():
                spot = (sha, tuple(int(v) for v in json.loads(box)))
                if spot in wanted:
                    found[spot] = min(found.get(spot, int(face_id)), int(face_id))
        return found

    def unknown_before(self, cutoff: str | None) -> list[int]:
        if self.store.schema < 2:
            return []
        where, args = "person_id IS NULL", []
        if cutoff is not None:
            where += " AND created_at < ?"
            args.append(cutoff)
        return [int(r[0]) for r in self.db.execute(f"SELECT id FROM faces WHERE {where} ORDER BY id", args)]

    def exclusions(self, *, faces: Sequence[int] = (), person: int | None = None) -> list[tuple[int, int, int]]:
        if self.store.schema < 2:
            return []
        columns = "SELECT face_id, COALESCE(other_id, 0), COALESCE(person_id, 0) FROM face_exclusions WHERE "
        rows: set[tuple[int, int, int]] = set()
        if person is not None:
            rows.update(self.db.execute(columns + "person_id = ?", (int(person),)).fetchall())
        for column in ("face_id", "other_id"):
            rows.update(self._in(columns + column + " IN ({})", faces))
        return sorted((int(f), int(o), int(p)) for f, o, p in rows)

    def exclude(self, rules: Sequence[tuple[int, int, int]]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO face_exclusions (face_id, other_id, person_id) VALUES (?, ?, ?)",
            [(int(f), int(o) or None, int(p) or None) for f, o, p in rules],
        )

    def unexclude(self, faces: Sequence[int], person: int) -> None:
        self.db.executemany(
            "DELETE FROM face_exclusions WHERE face_id = ? AND person_id = ?", [(int(f), int(person)) for f in faces]
        )

    def move_exclusions(self, source: int, target: int) -> None:
        if self.store.schema >= 2:
            self.db.execute(
                "UPDATE OR IGNORE face_exclusions SET person_id = ? WHERE person_id = ?", (int(target), int(source))
            )

    def group_faces(self, *, full: bool, leftovers: bool | None, params: Any) -> GroupingUpdate:
        return group_step(self.store, self._dimension(), full=full, leftovers=leftovers, params=params)

    # -- moving to another model --------------------------------------------------------------------

    def copy_to(self, folder: Path) -> int:
        folder.mkdir(mode=0o700)
        target = folder / DB_NAME
        try:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
            copy = sqlite3.connect(target)
            try:
                with self.store.snapshot():
                    generation = self.store.generation()
                    self.db.backup(copy)
            finally:
                copy.close()
        except BaseException:  # busy, a full disk: no half copy left behind
            deletion.discard_copy(folder)
            raise
        return generation

    @contextmanager
    def exclusive(self) -> Iterator[int]:
        with self.store.write(versioned=False):
            yield self.store.generation()

    def set_embeddings(self, vectors: dict[int, np.ndarray], model: str, chips_: dict[int, FaceChip]) -> None:
        for face_id, vector in vectors.items():
            self.db.execute(
                "UPDATE faces SET embedding = ?, model = ? WHERE id = ?",
                (np.asarray(vector, np.float32).tobytes(), model, int(face_id)),
            )
            chip = chips_.get(face_id)
            if chip is not None:
                chips.store(self.db, int(face_id), chip)
        deletion.note_removal(self.db)  # the old embeddings: erased by the compaction that follows


def _changes_on(db: sqlite3.Connection, where: Path, since: int | None, after: int) -> Changes:
    """:class:`Changes` read on ``db``, inside a read transaction."""
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    generation = int(row[0] or 0) if row else 0
    key = db.execute("SELECT value FROM meta WHERE key = 'embedding_key'").fetchone()
    dimension = EmbeddingKey.from_json(key[0]).dimension if key and key[0] else 0
    removed = changes.removed_since(db, since) if since is not None else np.zeros(0, np.int64)
    ids, _, vectors = people.embeddings(db, dimension, where, after=after, also=removed)
    count = people.enrolled_count(db)
    return Changes(generation, max(1, dimension), ids, vectors, removed, count)
