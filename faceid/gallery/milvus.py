"""A gallery kept in Milvus (a server or cluster) or in milvus-lite (embedded, a ``.db`` folder).

:class:`MilvusBackend` is the :class:`~faceid.gallery.backend.GalleryBackend` of a
:class:`faceid.gallery.Gallery` on a store without multi-row transactions (the rules are the
gallery's, written once for every backend). Five collections, named after the gallery (``NAME_...``):

- ``meta``: one row per key: the schema, the embedding key, settings, the id counters
  (``last_id:faces`` / ``people`` / ``audit``: ids are never given twice), the generation, the
  removals in progress, and the API keys (hashed: :mod:`faceid.gallery.milvus_keys`);
- ``people``: one row per person (id, name): a rename is one write;
- ``faces``: one row per face, carrying its person's id, never the name; the embedding is the
  vector field (inner product of unit vectors: the cosine similarity); its chip (base64 PNG) is
  split over the ``chip_0``..``chip_3`` fields, its geometry in ``info``;
- ``audit``: the audit log, one row per entry, written before the change it records;
- ``exclusions``: what the user said about kept unknown faces (:mod:`faceid.gallery.milvus_unknown`;
  a kept face is a face row with person id 0, never searched).

The connection and the row operations are :mod:`faceid.gallery.milvus_rows`.

Each write is one batch of rows or one delete-by-expression, atomic on its own (a change of many
faces is one insert or upsert per batch, and its reads one query per batch of ids, not one per
face); a change of several writes is ordered so that a crash between any two leaves the gallery
usable:

- a removal first records the person in ``meta('removing')``, then deletes the person's row
  (from that write on, the person is gone for every reader), then their faces by person id, then
  clears the record. A crash after the person's row went leaves their faces as *orphans*:
  searches never return a face whose person row is missing, and the next open (for writing)
  finishes the removal;
- an enrolment (or keep) writes its intent, the audit entry, the person (if new), the faces, then
  clears the intent; the next open completes or rolls back one a crash interrupted
  (:mod:`faceid.gallery.intents`), so the gallery never keeps a person short of faces or with none.

Removed rows are tombstones in Milvus until compaction, so every removal asks for one
(``compact``); the delete itself takes effect at once (no search, listing or export returns the
rows). On milvus-lite the removal waits for it (up to ``timeout``): its compaction rewrites the
segment files without the removed rows. A server flushes and compacts in its own time (about 2.5 s
and 10-18 s a collection), so there the removal only asks for the flush, the collections are
recorded, their compactions start once flushed (:mod:`faceid.gallery.milvus_compaction`), and
:meth:`MilvusBackend.compaction_pending` is true until the server has finished (``gallery check``
says so, exit 0). A Milvus server keeps old
segments in its object store until its garbage collector drops them (``gc.dropTolerance``),
which faceid cannot hasten.

There is one writer at a time: milvus-lite lets one process open a ``.db`` folder (another gets
:class:`~faceid.errors.GalleryBusyError` after ``timeout``); on a Milvus server faceid takes no
lock, so run one writing process per gallery (one ``faceid serve``, say) and any number of readers.
The writer keeps the ``meta`` values it wrote (id counters, generation) in memory on that rule
(:meth:`MilvusRows.meta <faceid.gallery.milvus_rows.MilvusRows.meta>`), and reads wait for the server
only for what they must see (:mod:`faceid.gallery.milvus_session`).

pymilvus is imported when a gallery is opened, never by ``import faceid``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import GalleryError, MigrationError
from faceid.gallery.audit import AuditEntry
from faceid.gallery.backend import KEEP, chunks
from faceid.gallery.location import MilvusLocation
from faceid.gallery.milvus_common import CHIP_FIELDS, chip_of, face_row, image_key, ints, strs
from faceid.gallery.milvus_keys import MilvusKeyStore
from faceid.gallery.milvus_rows import CHUNK, INDEX, SCHEMA, SEARCH_PARAMS, MilvusRows, quiet_pymilvus
from faceid.gallery.milvus_unknown import MilvusKept
from faceid.gallery.records import FaceRecord, NewFace, Person, UnknownFace, n_faces

if TYPE_CHECKING:
    from faceid.gallery.chips import FaceChip
    from faceid.gallery.records import GroupingUpdate
    from faceid.index import IndexSpec

__all__ = ["INDEX", "SCHEMA", "MilvusBackend", "quiet_pymilvus", "require_milvus"]

log = logging.getLogger(__name__)

_MAX_K = 16384  # Milvus's largest search limit


def require_milvus(spec: str) -> None:
    """Raise a one-line :class:`GalleryError` if pymilvus or milvus-lite (the ``milvus`` extra) is missing."""
    import importlib.util

    needed = ["pymilvus"] + (["milvus_lite"] if spec.startswith("milvus-lite:") else [])
    if any(importlib.util.find_spec(name) is None for name in needed):
        kind = "milvus-lite:..." if spec.startswith("milvus-lite:") else "milvus://..."
        raise GalleryError(f"--gallery {kind} needs the milvus extra: pip install 'faceid[milvus]'")


class MilvusBackend:
    """A gallery's store in Milvus or milvus-lite (:class:`~faceid.gallery.backend.GalleryBackend`);
    see the module's docstring for what is guaranteed.

    Args:
        location: where (:func:`faceid.gallery.location.parse_location`).
        create: create the gallery's collections when they are missing.
        timeout: seconds to wait for a milvus-lite folder another process holds, for a server
            to answer, and for a compaction.
    """

    another = "--gallery ..."
    folder: Path | None = None

    def __init__(self, location: MilvusLocation, *, create: bool = True, timeout: float = 30.0) -> None:
        require_milvus(location.spec)
        self.location = location
        self.path: str = location.spec
        self.source: str = location.spec
        self.timeout = float(timeout)
        self.problems: list[str] = []
        self._depth = 0
        self.rows = MilvusRows(location, create=create, timeout=self.timeout, report=self.report)
        # what the last search learnt of its hits' owners, with the number of this process's writes
        # when it was read (see face_owners)
        self._owners_seen: tuple[int, dict[int, str]] = (-1, {})
        self.kept = MilvusKept(self.rows)
        self.keys = MilvusKeyStore(self.rows)
        try:
            self.rows.open(create)
            self.rows.finish_removals(self.kept.drop_exclusions)
            if not location.lite:  # start the compactions a removal left waiting for its flush
                self.rows.compactions_left()
        except BaseException:
            self.close()
            raise

    @property
    def actor(self) -> str | None:
        return self.rows.actor

    @actor.setter
    def actor(self, value: str | None) -> None:
        self.rows.actor = value

    def report(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)
            log.info("%s", problem)

    def close(self) -> None:
        self.rows.close()

    def translate(self, exc: Exception) -> GalleryError | None:
        return self.rows.translate(exc)

    @contextmanager
    def change(self, *, versioned: bool = True) -> Iterator[None]:
        """The writes of one change, in the order the rules make them; a new generation at the end."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if versioned and self._depth == 0:
            self.rows.bump()

    def snapshot(self) -> Any:
        return nullcontext()  # Milvus gives no snapshot across collections

    def require_unknown(self, what: str) -> None:
        return None

    def generation(self) -> int:
        return self.rows.generation()

    def meta(self, key: str) -> str | None:
        return self.rows.meta(key)

    def set_meta(self, key: str, value: str | None) -> None:
        self.rows.set_meta(key, value)

    def audit(self, action: str, person: str | None, **detail: Any) -> None:
        self.rows.record(action, person, **detail)

    def audit_entries(self) -> list[AuditEntry]:
        out = []
        for r in self.rows.scan("audit", ["id", "entry"]):
            e = json.loads(r["entry"])
            out.append(AuditEntry(int(r["id"]), e["at"], e["user"], e["action"], e["person"], e["detail"]))
        return out

    # -- people -------------------------------------------------------------------------------------

    def person_id(self, name: str) -> int | None:
        row = self.rows.person_row(name)
        return int(row["id"]) if row is not None else None

    def people(self, ids: Sequence[int] | None = None) -> list[Person]:
        counts: dict[int, int] = {}
        if ids is None:
            rows = list(self.rows.scan("people", ["id", "name", "created_at"]))
            faces = self.rows.scan("faces", ["id", "person_id"], "person_id > 0")
        else:
            rows = self.rows.by_ids("people", ids, ["id", "name", "created_at"])
            faces = iter(self.rows.by_ids("faces", ids, ["id", "person_id"], column="person_id"))
        for row in faces:
            counts[int(row["person_id"])] = counts.get(int(row["person_id"]), 0) + 1
        return [Person(int(r["id"]), str(r["name"]), counts.get(int(r["id"]), 0), str(r["created_at"])) for r in rows]

    def count_people(self) -> int:
        return self.rows.count("people")

    def add_person(self, name: str) -> int:
        from faceid.gallery.records import utc_now

        (pid,) = self.rows.new_ids("people")
        self.rows.insert("people", [self.rows.person_fields(pid, name, utc_now())])
        return pid

    def rename_person(self, person: int, name: str) -> None:
        (row,) = self.rows.query("people", f"id == {int(person)}", ["id", "created_at"])
        self.rows.upsert("people", [self.rows.person_fields(person, name, str(row["created_at"]))])

    def delete_people(self, people: Sequence[int], *, erase: bool = True) -> None:
        if not erase:
            self.rows.delete("people", f"id in {ints(people)}")
            self.kept.drop_exclusions(people, [])
            return
        self.rows.delete_rows(list(people), [], self.kept.drop_exclusions)

    # -- faces --------------------------------------------------------------------------------------

    def new_face_ids(self, count: int) -> list[int]:
        return self.rows.new_ids("faces", count)

    def insert_faces(
        self,
        person: int | None,
        ids: Sequence[int],
        vectors: Sequence[np.ndarray],
        faces: Sequence[NewFace],
        model: str,
    ) -> None:
        """One insert for the whole batch."""
        if not ids:
            return
        self.rows.create_faces(len(vectors[0]))
        rows = [face_row(i, person or 0, f, v, model) for i, v, f in zip(ids, vectors, faces)]
        self.rows.insert("faces", rows)

    def _records(self, rows: list[dict[str, Any]], names: dict[int, str] | None = None) -> list[FaceRecord]:
        if names is None:
            names = self.rows.names({int(r["person_id"]) for r in rows})
        out = []
        for r in sorted(rows, key=lambda r: int(r["id"])):
            owner = names.get(int(r["person_id"]))
            if owner is None:
                continue
            info = json.loads(r["info"])
            box = tuple(info["box"])
            out.append(
                FaceRecord(
                    int(r["id"]),
                    owner,
                    info["image_path"],
                    info["image_sha256"],
                    box,
                    float(info["confidence"]),
                    info["created_at"],
                )
            )
        return out

    def _live_faces(self, fields: list[str]) -> list[dict[str, Any]]:
        """Every enrolled face whose person exists (orphans left by an interrupted removal are not faces)."""
        rows = list(self.rows.scan("faces", sorted(set(fields) | {"person_id"}), "person_id > 0"))
        names = self.rows.names({int(r["person_id"]) for r in rows})
        return [r for r in rows if int(r["person_id"]) in names]

    def faces(self, person: int | None = None) -> list[FaceRecord]:
        if person is None:
            return self._records(self._live_faces(["id", "person_id", "info"]))
        return self._records(self.rows.query("faces", f"person_id == {int(person)}", ["id", "person_id", "info"]))

    def faces_by_id(self, ids: Sequence[int]) -> list[FaceRecord]:
        rows = self.rows.by_ids("faces", ids, ["id", "person_id", "info"])
        return self._records([r for r in rows if int(r["person_id"]) > 0])

    def face_rows(self, ids: Sequence[int]) -> list[tuple[int, int | None, int | None]]:
        rows = self.rows.by_ids("faces", ids, ["id", "person_id", "group_id"])
        return [(int(r["id"]), int(r["person_id"]) or None, int(r["group_id"]) or None) for r in rows]

    def face_ids_of(self, person: int) -> list[int]:
        return sorted(int(r["id"]) for r in self.rows.query("faces", f"person_id == {int(person)}", ["id"]))

    def photos_of(self, ids: Sequence[int]) -> dict[int, str]:
        return {
            int(r["id"]): json.loads(r["info"])["image_sha256"] for r in self.rows.by_ids("faces", ids, ["id", "info"])
        }

    def enrolled_count(self) -> int:
        """Counted by Milvus; by reading them all while a removal is unfinished."""
        pending = self.rows.removing()
        if not pending["people"] and not pending["faces"]:
            # kept unknown faces are not counted: no wait for this process's inserts of them
            return self.rows.count("faces", "person_id > 0", own_writes=self.rows.searches_own_faces)
        return len(self._live_faces(["id"]))

    def image_owners(self, shas: Sequence[str]) -> dict[str, list[str]]:
        """One query per batch of photos, and one for their people's names."""
        sha_of = {image_key(sha): sha for sha in shas}
        rows: list[dict[str, Any]] = []
        own = self.rows.sees_own_faces(sha_of)
        for chunk in chunks(sorted(sha_of), CHUNK):
            rows += self.rows.query(
                "faces",
                f"image_key in {strs(chunk)} and person_id > 0",
                ["id", "person_id", "image_key"],
                own_writes=own,
            )
        names = self.rows.names({int(r["person_id"]) for r in rows})
        out: dict[str, set[str]] = {}
        for r in rows:
            if int(r["person_id"]) in names:
                out.setdefault(sha_of[str(r["image_key"])], set()).add(names[int(r["person_id"])])
        return {sha: sorted(found) for sha, found in out.items()}

    def face_owners(self, ids: Sequence[int]) -> dict[int, str]:
        """The owners of enrolled faces (a search's): no wait for this process's inserts of kept faces.

        The faces the last search returned are answered from what it read (two round trips a photo
        fewer on a server), unless this process has written since."""
        writes, seen = self._owners_seen
        if ids and writes == self.rows.reads.writes and all(int(i) in seen for i in ids):
            return {int(i): seen[int(i)] for i in ids}
        rows = self.rows.by_ids("faces", ids, ["id", "person_id"], own_writes=self.rows.searches_own_faces)
        names = self.rows.names({int(r["person_id"]) for r in rows if int(r["person_id"]) > 0})
        return {int(r["id"]): names[int(r["person_id"])] for r in rows if int(r["person_id"]) in names}

    def _face_row(self, face_id: int, fields: list[str]) -> dict[str, Any] | None:
        """A face's row, unless it is an orphan (its person's row is gone)."""
        rows = self.rows.query("faces", f"id == {int(face_id)}", ["id", "person_id", *fields])
        if not rows or (int(rows[0]["person_id"]) != 0 and not self.rows.names([int(rows[0]["person_id"])])):
            return None
        return rows[0]

    def thumbnail(self, face_id: int) -> bytes | None:
        row = self._face_row(face_id, ["thumbnail"])
        return base64.b64decode(row["thumbnail"]) if row is not None and row["thumbnail"] else None

    def chip(self, face_id: int) -> FaceChip | None:
        row = self._face_row(face_id, ["info", *CHIP_FIELDS])
        return chip_of(row) if row is not None else None

    def embeddings(self, dimension: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self._live_faces(["id", "embedding"])
        ids = np.array([int(r["id"]) for r in rows], np.int64)
        owners = np.array([int(r["person_id"]) for r in rows], np.int64)
        vectors = np.array([r["embedding"] for r in rows], np.float32).reshape(len(rows), dimension)
        return ids, owners, vectors

    def face_sources(self) -> list[FaceRecord]:
        rows = list(self.rows.scan("faces", ["id", "person_id", "info"]))
        names = {**self.rows.names({int(r["person_id"]) for r in rows}), 0: ""}
        return self._records(rows, names)

    def set_faces(self, ids: Sequence[int], *, person: int | None = KEEP, group: int | None = KEEP) -> None:
        values = {}
        if person is not KEEP:
            values["person_id"] = int(person or 0)
        if group is not KEEP:
            values["group_id"] = int(group or 0)
        self.kept.rewrite(ids, **values)

    def delete_faces(self, ids: Sequence[int]) -> None:
        self.rows.delete_rows([], sorted({int(i) for i in ids}), self.kept.drop_exclusions)

    def erased(self, what: str, gone: np.ndarray, *, compact: bool) -> None:
        return None  # a removal here starts its compactions before its change ends (MilvusRows.compact)

    def compaction_pending(self) -> bool:
        """Whether a server is still compacting after a removal (milvus-lite: never, a removal waits).
        The removal took effect at once: the person is gone for every reader as soon as their row is."""
        return not self.rows.location.lite and bool(self.rows.compactions_left())

    def compact(self, *, wait: bool) -> bool:
        """Wait (if ``wait``, up to ``timeout`` a job) for the server's compactions; ``True`` when none is left."""
        return self.rows.location.lite or not self.rows.compactions_left(wait=wait)

    # -- search -------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Faces whose person row is missing (a removal a crash interrupted) are never returned."""
        n = len(queries)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        found = np.full((n, k), -1, dtype=np.int64)
        if not self.rows.faces_exist():
            return scores, found
        limit = min(k, _MAX_K)
        while True:
            hits = self.rows.client.search(
                self.rows.name("faces"),
                data=queries.tolist(),
                limit=limit,
                anns_field="embedding",
                search_params=SEARCH_PARAMS,
                filter="person_id > 0",  # kept unknown faces are never matched
                output_fields=["person_id"],
                # kept unknown faces are never returned: a search need not wait for their inserts
                **self.rows.reads.options(self.rows.name("faces"), own_writes=self.rows.searches_own_faces),
            )
            people = {int(h["entity"]["person_id"]) for row in hits for h in row}
            names = self.rows.names(people)
            alive = set(names)
            owners = {
                int(h["id"]): names[int(h["entity"]["person_id"])]
                for row in hits
                for h in row
                if int(h["entity"]["person_id"]) in names
            }
            self._owners_seen = (self.rows.reads.writes, owners)
            short = False
            for q, row in enumerate(hits):
                kept = [h for h in row if int(h["entity"]["person_id"]) in alive][:k]
                short |= len(kept) < k and len(row) == limit  # orphans took places: ask for more
                for j, h in enumerate(kept):
                    found[q, j] = int(h["id"])
                    scores[q, j] = float(h["distance"])
            if not short or limit >= _MAX_K:
                return scores, found
            limit = min(_MAX_K, limit * 2)

    def index_spec(self) -> IndexSpec:
        """Milvus keeps a ``FLAT`` index on the faces: exact."""
        from faceid.index import EXACT, IndexSpec

        return IndexSpec(EXACT)

    def rebuild_index(self) -> int:
        """Milvus keeps its own index in step with the rows: nothing to rebuild; return how many faces it holds."""
        return self.enrolled_count()

    def storage_problems(self, dimension: int | None) -> tuple[list[str], bool]:
        """Faces of no person (an interrupted removal), embeddings of another size than the key's."""
        problems = []
        people = {int(r["id"]) for r in self.rows.scan("people", ["id"])}
        rows = list(self.rows.scan("faces", ["id", "person_id"], "person_id > 0"))
        orphans = [r for r in rows if int(r["person_id"]) not in people]
        if orphans:
            problems.append(
                f"{self.path}: {n_faces(len(orphans))} belong to no person (a removal was interrupted); "
                "open the gallery once more to finish it"
            )
        if dimension is not None and self.rows.faces_exist():
            sample = self.rows.query("faces", "id >= 0", ["id", "embedding"], limit=1)
            if sample and len(sample[0]["embedding"]) != dimension:
                problems.append(
                    f"{self.path}: embeddings have {len(sample[0]['embedding'])} values, the key says {dimension}"
                )
                return problems, True
        return problems, False

    def index_problems(self) -> list[str]:
        return []

    # -- kept unknown faces ---------------------------------------------------------------------------

    def unknown_count(self) -> int:
        return self.kept.count()

    def unknown_faces(self, *, group: int | None = None, grouped: bool | None = None) -> list[UnknownFace]:
        return self.kept.faces(group=group, grouped=grouped)

    def unknown_embeddings(self, dimension: int) -> np.ndarray:
        return self.kept.embeddings(dimension)

    def kept_at(self, spots: Sequence[tuple[str, tuple[int, int, int, int]]]) -> dict[tuple[str, tuple[int, ...]], int]:
        return self.kept.kept_at(spots)

    def unknown_before(self, cutoff: str | None) -> list[int]:
        return self.kept.before(cutoff)

    def exclusions(self, *, faces: Sequence[int] = (), person: int | None = None) -> list[tuple[int, int, int]]:
        return self.kept.exclusions(faces=faces, person=person)

    def exclude(self, rules: Sequence[tuple[int, int, int]]) -> None:
        self.kept.exclude(rules)

    def unexclude(self, faces: Sequence[int], person: int) -> None:
        if faces:
            self.kept.unexclude(f"face_id in {ints(faces)} and person_id == {int(person)}")

    def move_exclusions(self, source: int, target: int) -> None:
        self.kept.move_exclusions(source, target)

    def group_faces(self, *, full: bool, leftovers: bool | None, params: Any) -> GroupingUpdate:
        """Every step reads every kept face and groups the leftovers too (``leftovers`` has no effect):
        a Milvus gallery keeps no cached group sums."""
        value = self.rows.meta("embedding_key")
        dimension = EmbeddingKey.from_json(value).dimension if value else 0
        return self.kept.group(dimension, full=full, params=params)

    # -- moving to another model --------------------------------------------------------------------

    def copy_to(self, folder: Path) -> int:
        """Written out as a local gallery (:mod:`faceid.gallery.milvus_export`). Milvus has no snapshot
        across collections: the generation is compared before and after, and a change meanwhile is refused."""
        from faceid.gallery.deletion import discard_copy
        from faceid.gallery.milvus_export import export_to_folder

        generation = self.generation()
        folder.mkdir(mode=0o700)
        try:
            export_to_folder(self, self.rows, folder)
            if self.generation() != generation:
                raise MigrationError(
                    f"{self.path}: the gallery changed while it was being copied; nothing was changed, "
                    "run the migration again (stop `faceid serve` and enrolments first)"
                )
        except BaseException:  # no half copy left behind
            discard_copy(folder)
            raise
        return generation

    @contextmanager
    def exclusive(self) -> Iterator[int]:
        """faceid takes no lock on Milvus (one writing process per gallery): yields the generation."""
        yield self.generation()

    def set_embeddings(self, vectors: dict[int, np.ndarray], model: str, chips: dict[int, FaceChip]) -> None:
        raise GalleryError(
            f"{self.path}: the embeddings of a Milvus gallery are not replaced in place; "
            "migrate it into a new folder (--to DIR)"
        )
