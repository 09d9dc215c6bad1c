"""A gallery kept in Milvus (a server or cluster) or in milvus-lite (embedded, a ``.db`` folder).

:class:`MilvusGallery` has the public behaviour of :class:`faceid.gallery.Gallery` (enrol, search,
people, rename, remove, the audit log, settings, check, the embedding key) on a store without
multi-row transactions. Five collections, named after the gallery (``NAME_...``):

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

Each write is one row or one delete-by-expression, atomic on its own; an operation of several
writes is ordered so that a crash between any two leaves the gallery usable:

- a removal first records the person in ``meta('removing')``, then deletes the person's row
  (from that write on, the person is gone for every reader), then their faces by person id, then
  clears the record. A crash after the person's row went leaves their faces as *orphans*:
  searches never return a face whose person row is missing, and the next open (for writing)
  finishes the removal;
- an enrolment writes the audit entry, the person (if new), then the faces; a crash in between
  leaves a person with fewer faces than asked for (running the enrolment again adds the rest:
  ``skip_known_images``), and :meth:`MilvusGallery.check` reports the faces the audit log
  records but the gallery lacks.

Removed rows are tombstones until compaction (``milvus_compaction``): a delete takes effect at once;
milvus-lite's removal waits for the compaction, a server compacts in the background (``pending``).

There is one writer at a time: milvus-lite lets one process open a ``.db`` folder (another gets
:class:`~faceid.errors.GalleryBusyError` after ``timeout``); on a Milvus server faceid takes no
lock, so run one writing process per gallery (one ``faceid serve``, say) and any number of readers.

pymilvus is imported when a gallery is opened, never by ``import faceid``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import (
    EmbeddingKeyError,
    FaceNotFoundError,
    GalleryBusyError,
    GalleryCorruptError,
    GalleryError,
    InvalidNameError,
    ModelMismatchError,
    PersonNotFoundError,
)
from faceid.gallery import audit
from faceid.gallery import milvus_compaction as compaction
from faceid.gallery.audit import AuditEntry
from faceid.gallery.chips import FaceChip
from faceid.gallery.location import MilvusLocation
from faceid.gallery.milvus_common import (
    _ASCII_LOWER,
    _CHIP_FIELDS,
    _TEXT,
    _chip_of,
    _create,
    _face_row,
    _guarded,
    _image_key,
    _ints,
    _name_key,
    _strs,
)
from faceid.gallery.milvus_timeout import TimedClient
from faceid.gallery.people import unit_vectors, vector_problems
from faceid.gallery.records import FaceRecord, NewFace, Person, n_faces, normalise_name, utc_now

__all__ = ["INDEX", "SCHEMA", "MilvusGallery", "require_milvus"]

log = logging.getLogger(__name__)

#: the schema of the collections this version writes (``meta('schema')``)
SCHEMA = "milvus-2"  # 2: face chips in the faces collection

#: The index on the faces' vectors, and its search parameters: exact (``FLAT``), so a Milvus gallery
#: names the same people as the local exact index. `faceid bench --only milvus` measured the others
#: in milvus-lite (README, A gallery on Milvus): HNSW lost up to 30% of strangers' nearest faces at
#: 100,000, IVF_FLAT needed nprobe 128 for recall 1; measure on a server before choosing one there.
INDEX: dict[str, Any] = {"index_type": "FLAT", "metric_type": "IP", "params": {}}
SEARCH_PARAMS: dict[str, Any] = {"metric_type": "IP", "params": {}}

_PLACEHOLDER = [0.0, 0.0]  # Milvus needs a vector field in every collection: the non-face ones get this
_WINDOW = 8192  # ids per query when reading a whole collection (Milvus returns at most 16,384 rows)
_CHUNK = 1000  # ids per "id in [...]" expression
_MAX_K = 16384  # Milvus's largest search limit

#: milvus-lite servers this process runs, by folder, and how many open galleries use each
_lite_users: dict[str, int] = {}
_lite_lock = threading.Lock()


def require_milvus(spec: str) -> None:
    """Raise a one-line :class:`GalleryError` if pymilvus or milvus-lite (the ``milvus`` extra) is missing."""
    import importlib.util

    needed = ["pymilvus"] + (["milvus_lite"] if spec.startswith("milvus-lite:") else [])
    if any(importlib.util.find_spec(name) is None for name in needed):
        kind = "milvus-lite:..." if spec.startswith("milvus-lite:") else "milvus://..."
        raise GalleryError(f"--gallery {kind} needs the milvus extra: pip install 'faceid[milvus]'")


class MilvusGallery:
    """A gallery in Milvus or milvus-lite; see the module's docstring for what is guaranteed.

    Args:
        location: where (:func:`faceid.gallery.location.parse_location`).
        create: create the gallery's collections when they are missing.
        timeout: seconds to wait for a milvus-lite folder another process holds, for a server
            to answer, and for a compaction.

    Attributes:
        path: the gallery's address as given (``milvus://...`` or ``milvus-lite:...``), for messages.
        problems: damage found while opening (an interrupted removal finished), one message each.
        actor: who makes the changes, for the audit log (``None``: the OS user).
    """

    def __init__(self, location: MilvusLocation, *, create: bool = True, timeout: float = 30.0) -> None:
        require_milvus(location.spec)
        self.location = location
        self.path = location.spec
        self.timeout = float(timeout)
        self.problems: list[str] = []
        self.actor: str | None = None
        self._prefix = location.name
        from faceid.gallery.milvus_unknown import MilvusUnknownFaces

        #: kept unknown faces: keep, group, name, move, merge, forget (as ``Gallery.unknown``)
        self.unknown = MilvusUnknownFaces(self)
        self._closed = True
        self._client = self._connect(create)
        self._closed = False
        self._dimension_cache: int | None = None
        try:
            self._open(create)
        except BaseException:
            self.close()
            raise

    # -- connection -------------------------------------------------------------------------------

    def _connect(self, create: bool) -> Any:
        _quiet_pymilvus()
        from pymilvus import MilvusClient

        loc = self.location
        if not loc.lite:
            try:
                return TimedClient.connect(loc.uri, self.timeout, self.path)
            except Exception as exc:
                raise GalleryError(f"{self.path}: cannot reach Milvus at {loc.uri} ({_reason(exc)})") from None
        folder = Path(loc.uri)
        if folder.exists() and not folder.is_dir():
            raise GalleryError(f"{self.path}: {folder} is not a milvus-lite database (a folder)")
        if not folder.exists():
            if not create:
                raise GalleryError(
                    f"{self.path}: no gallery here ({folder} does not exist); enrol someone to create one"
                )
            try:
                folder.mkdir(mode=0o700, parents=True)
            except OSError as exc:
                raise GalleryError(f"{self.path}: cannot create a gallery here ({exc.strerror or exc})") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                client = MilvusClient(loc.uri)
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise GalleryBusyError(
                        f"{self.path}: cannot open it ({_reason(exc)}): milvus-lite lets one process at a time "
                        f"open a gallery, and another has held it for over {self.timeout:g} s; try again when "
                        "it has finished"
                    ) from None
                time.sleep(0.2)
                continue
            with _lite_lock:
                _lite_users[loc.uri] = _lite_users.get(loc.uri, 0) + 1
            return client

    def _translate(self, exc: Exception) -> GalleryError | None:
        from pymilvus.exceptions import MilvusException

        if isinstance(exc, MilvusException):
            return GalleryError(f"{self.path}: Milvus refused an operation ({_reason(exc)})")
        return None

    def __enter__(self) -> MilvusGallery:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (and stop milvus-lite's server for this folder when no other gallery uses it)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()
        except Exception as exc:  # closing must not hide the error that made the caller close
            log.info("closing %s: %s", self.path, exc)
        if self.location.lite:
            with _lite_lock:
                left = _lite_users.get(self.location.uri, 1) - 1
                if left > 0:
                    _lite_users[self.location.uri] = left
                    return
                _lite_users.pop(self.location.uri, None)
            try:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.location.uri)  # frees the folder for other processes
            except Exception as exc:
                log.info("stopping milvus-lite for %s: %s", self.path, exc)

    # -- collections ------------------------------------------------------------------------------

    def _name(self, what: str) -> str:
        return f"{self._prefix}_{what}"

    @_guarded
    def _open(self, create: bool) -> None:
        c = self._client
        have = set(c.list_collections())
        if self._name("meta") not in have:
            if not create:
                raise GalleryError(f"{self.path}: no gallery here; enrol someone to create one")
            self._create_collections(have)
        else:
            for what in ("meta", "people", "audit"):
                if self._name(what) not in have:
                    raise GalleryCorruptError(f"{self.path}: the collection {self._name(what)} is missing")
        have = set(c.list_collections())
        for what in ("meta", "people", "audit", "faces", "exclusions"):
            if self._name(what) in have:
                c.load_collection(self._name(what))  # a collection another process made is not loaded here
        schema = self._meta("schema")
        if schema != SCHEMA:
            raise GalleryError(f"{self.path}: gallery schema {schema}, this faceid reads {SCHEMA}")
        self._finish_removals()

    def _faces_exist(self) -> bool:
        return bool(self._client.has_collection(self._name("faces")))

    def _create_collections(self, have: set[str]) -> None:
        from pymilvus import DataType

        def plain(what: str, fields: list[tuple[str, Any, dict[str, Any]]]) -> None:
            name = self._name(what)
            if name in have:
                return
            schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
            for field, kind, options in fields:
                schema.add_field(field, kind, **options)
            schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
            index = self._client.prepare_index_params()
            index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
            _create(self._client, name, schema, index)

        plain(
            "audit",
            [("id", DataType.INT64, {"is_primary": True}), ("entry", DataType.VARCHAR, {"max_length": _TEXT})],
        )
        plain(
            "people",
            [
                ("id", DataType.INT64, {"is_primary": True}),
                ("name", DataType.VARCHAR, {"max_length": 1024}),
                ("name_key", DataType.VARCHAR, {"max_length": 64}),
                ("created_at", DataType.VARCHAR, {"max_length": 64}),
            ],
        )
        # meta last: its schema row says the gallery is complete
        plain(
            "meta",
            [
                ("key", DataType.VARCHAR, {"is_primary": True, "max_length": 256}),
                ("value", DataType.VARCHAR, {"max_length": _TEXT}),
            ],
        )
        self._client.load_collection(self._name("meta"))
        self._set_meta("schema", SCHEMA)

    def _create_faces(self, dimension: int) -> None:
        from pymilvus import DataType

        name = self._name("faces")
        if self._client.has_collection(name):
            return
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("person_id", DataType.INT64)  # 0: a kept unknown face (person ids start at 1)
        schema.add_field("group_id", DataType.INT64)  # its group of unknown faces, 0: none
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=int(dimension))
        schema.add_field("image_key", DataType.VARCHAR, max_length=64)
        schema.add_field("info", DataType.VARCHAR, max_length=_TEXT)
        schema.add_field("thumbnail", DataType.VARCHAR, max_length=_TEXT)
        for field in _CHIP_FIELDS:
            schema.add_field(field, DataType.VARCHAR, max_length=_TEXT)
        index = self._client.prepare_index_params()
        index.add_index(field_name="embedding", **INDEX)
        _create(self._client, name, schema, index)

    # -- rows -------------------------------------------------------------------------------------

    def _query(self, what: str, expr: str, fields: list[str], limit: int | None = None) -> list[dict[str, Any]]:
        if what == "faces" and not self._faces_exist():
            return []
        options: dict[str, Any] = {"limit": limit} if limit is not None else {}
        return list(self._client.query(self._name(what), filter=expr, output_fields=fields, **options))

    def _by_ids(self, what: str, ids: Iterable[int], fields: list[str], column: str = "id") -> list[dict[str, Any]]:
        wanted = sorted({int(i) for i in ids})
        rows: list[dict[str, Any]] = []
        for start in range(0, len(wanted), _CHUNK):
            rows += self._query(what, f"{column} in {_ints(wanted[start : start + _CHUNK])}", fields)
        return rows

    def _scan(self, what: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every row of a collection, by windows of ids (Milvus caps one query's rows), ascending."""
        top = self._last_id(what)
        for low in range(0, top + 1, _WINDOW):
            rows = self._query(what, f"id >= {low} and id < {low + _WINDOW}", fields)
            yield from sorted(rows, key=lambda r: int(r["id"]))

    def _meta(self, key: str) -> str | None:
        rows = self._query("meta", f'key == "{_meta_key(key)}"', ["value"])
        return str(rows[0]["value"]) if rows else None

    def _set_meta(self, key: str, value: str | None) -> None:
        key = _meta_key(key)
        if value is None:
            self._client.delete(self._name("meta"), filter=f'key == "{key}"')
        else:
            self._client.upsert(self._name("meta"), [{"key": key, "value": value, "placeholder": _PLACEHOLDER}])

    def _last_id(self, what: str) -> int:
        return int(self._meta(f"last_id:{what}") or 0)

    def _new_ids(self, what: str, count: int = 1) -> list[int]:
        """``count`` ids never given before: the counter row moves on before any row uses them."""
        last = self._last_id(what)
        self._set_meta(f"last_id:{what}", str(last + count))
        return list(range(last + 1, last + count + 1))

    def _bump(self) -> None:
        self._set_meta("generation", str(self.generation + 1))

    def _record(self, action: str, person: str | None, **detail: Any) -> None:
        """Append an audit entry (before the change it records: the log may hold a change a crash stopped)."""
        (entry_id,) = self._new_ids("audit")
        entry = {
            "at": utc_now(),
            "user": self.actor if self.actor is not None else audit.os_user(),
            "action": action,
            "person": person,
            "detail": detail,
        }
        self._client.insert(
            self._name("audit"),
            [{"id": entry_id, "entry": json.dumps(entry, sort_keys=True), "placeholder": _PLACEHOLDER}],
        )

    def _person_row(self, name: str) -> dict[str, Any] | None:
        rows = self._query("people", f'name_key == "{_name_key(normalise_name(name))}"', ["id", "name", "created_at"])
        return min(rows, key=lambda r: int(r["id"])) if rows else None

    def _not_found(self, name: str) -> PersonNotFoundError:
        return PersonNotFoundError(f"no person named {normalise_name(name)!r} in {self.path}")

    def _names(self, person_ids: Iterable[int]) -> dict[int, str]:
        return {int(r["id"]): str(r["name"]) for r in self._by_ids("people", person_ids, ["id", "name"])}

    # -- removals that a crash interrupted ----------------------------------------------------------

    def _removing(self) -> dict[str, list[int]]:
        value = self._meta("removing")
        return json.loads(value) if value else {"people": [], "faces": []}

    def _finish_removals(self) -> None:
        """Finish a removal a crash interrupted: the people and faces recorded in ``meta('removing')``."""
        pending = self._removing()
        if not pending["people"] and not pending["faces"]:
            return
        self._delete(pending["people"], pending["faces"])
        self._report(
            f"{self.path}: finished a removal that was interrupted "
            f"({len(pending['people'])} people, {n_faces(len(pending['faces']))} by id)"
        )

    def _delete(self, person_ids: list[int], face_ids: list[int]) -> None:
        """Delete people (their row, then their faces by person id) and single faces; compact; clear the record."""
        self._set_meta("removing", json.dumps({"people": person_ids, "faces": face_ids}))
        if person_ids:
            self._client.delete(self._name("people"), filter=f"id in {_ints(person_ids)}")
        if self._faces_exist():
            if person_ids:
                self._client.delete(self._name("faces"), filter=f"person_id in {_ints(person_ids)}")
            if face_ids:
                self._client.delete(self._name("faces"), filter=f"id in {_ints(face_ids)}")
        self.unknown.drop_exclusions(person_ids, face_ids)
        self._compact()
        self._set_meta("removing", None)
        self._bump()

    def _compact(self) -> None:
        """Erase deleted rows: milvus-lite waits (up to ``timeout``); a server compacts in the background."""
        names = [self._name(w) for w in ("faces", "people") if w == "people" or self._faces_exist()]
        jobs = compaction.start(self._client, names)
        if self.location.lite:
            compaction.wait(self._client, jobs, self.timeout, self._report, self.path)
        elif jobs:
            self._set_meta("compacting", json.dumps(sorted({*jobs, *json.loads(self._meta("compacting") or "[]")})))

    @_guarded
    def pending(self) -> list[str]:
        """Erasures still under way (not problems): a server's compactions, kept in ``meta('compacting')``."""
        jobs = json.loads(self._meta("compacting") or "[]")
        left = compaction.unfinished(self._client, jobs)
        if left != jobs:
            self._set_meta("compacting", json.dumps(left) if left else None)
        if not left:
            return []
        return [f"{self.path}: {compaction.PENDING.format(n=len(left))}"]

    def _report(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)
            log.info("%s", problem)

    # -- the gallery's public behaviour (as faceid.gallery.Gallery) ------------------------------

    @property
    @_guarded
    def generation(self) -> int:
        """How many changes the gallery has seen."""
        return int(self._meta("generation") or 0)

    @property
    @_guarded
    def embedding_key(self) -> EmbeddingKey | None:
        value = self._meta("embedding_key")
        if not value:
            return None
        try:
            return EmbeddingKey.from_json(value)
        except EmbeddingKeyError as exc:
            raise GalleryCorruptError(f"{self.path}: the stored {exc}; restore the gallery from a backup") from None

    def check_embedding_key(self, key: EmbeddingKey) -> None:
        """Raise :class:`ModelMismatchError` unless ``key`` is this gallery's (or it has none yet)."""
        if not isinstance(key, EmbeddingKey):
            raise TypeError(f"an EmbeddingKey is needed, not {type(key).__name__}")
        mine = self.embedding_key
        if mine is not None and mine != key:
            raise ModelMismatchError(
                f"{self.path}: its embeddings were made with {mine.describe()}; refusing to mix in embeddings "
                f"made with {key.describe()} (differs in {', '.join(mine.differences(key))}). "
                "Use the gallery's settings, or enrol into a new gallery (--gallery ...)."
            )

    @property
    def dimension(self) -> int | None:
        key = self.embedding_key
        return key.dimension if key else None

    @_guarded
    def get_setting(self, name: str) -> object | None:
        value = self._meta(f"setting:{name}")
        return json.loads(value) if value is not None else None

    @_guarded
    def set_setting(self, name: str, value: object) -> None:
        """Store a setting (for example the calibrated threshold); ``None`` removes it."""
        self._record("setting", None, name=name, value=value)
        self._set_meta(f"setting:{name}", None if value is None else json.dumps(value))
        self._bump()

    @_guarded
    def people(self) -> list[Person]:
        """Everyone enrolled, by name (ASCII case ignored, as the local gallery sorts)."""
        counts: dict[int, int] = {}
        for row in self._scan("faces", ["id", "person_id"]):
            counts[int(row["person_id"])] = counts.get(int(row["person_id"]), 0) + 1
        found = [
            Person(int(r["id"]), str(r["name"]), counts.get(int(r["id"]), 0), str(r["created_at"]))
            for r in self._scan("people", ["id", "name", "created_at"])
        ]
        return sorted(found, key=lambda p: (p.name.translate(_ASCII_LOWER), p.id))

    @_guarded
    def __len__(self) -> int:
        return self._count("people")

    def _count(self, what: str, expr: str = "") -> int:
        if what == "faces" and not self._faces_exist():
            return 0
        rows = self._client.query(self._name(what), filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    @_guarded
    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return self._person_row(name) is not None
        except InvalidNameError:
            return False

    @property
    @_guarded
    def face_count(self) -> int:
        """How many faces are enrolled (counted by Milvus; by reading them all while a removal is unfinished)."""
        pending = self._removing()
        if not pending["people"] and not pending["faces"]:
            return self._count("faces", "person_id > 0")
        return len(self._live_faces(["id"]))

    @_guarded
    def person(self, name: str) -> Person:
        row = self._person_row(name)
        if row is None:
            raise self._not_found(name)
        count = len(self._query("faces", f"person_id == {int(row['id'])}", ["id"]))
        return Person(int(row["id"]), str(row["name"]), count, str(row["created_at"]))

    @_guarded
    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Enrolled faces (of one person, or all), oldest first."""
        if name is not None:
            row = self._person_row(name)
            if row is None:
                raise self._not_found(name)
            rows = self._query("faces", f"person_id == {int(row['id'])}", ["id", "person_id", "info"])
            return self._records(rows, {int(row["id"]): str(row["name"])})
        return self._records(self._live_faces(["id", "person_id", "info"]))

    def _live_faces(self, fields: list[str]) -> list[dict[str, Any]]:
        """Every face whose person exists (orphans left by an interrupted removal are not faces)."""
        rows = list(self._scan("faces", sorted(set(fields) | {"person_id"})))
        names = self._names({int(r["person_id"]) for r in rows})
        return [r for r in rows if int(r["person_id"]) in names]

    @_guarded
    def face_sources(self) -> list[FaceRecord]:
        """Every face (a kept unknown face has ``person`` ``""``), by id: where each came from, for re-embedding."""
        rows = list(self._scan("faces", ["id", "person_id", "info"]))
        names = {**self._names({int(r["person_id"]) for r in rows}), 0: ""}
        return self._records(rows, names)

    def _records(self, rows: list[dict[str, Any]], names: dict[int, str] | None = None) -> list[FaceRecord]:
        if names is None:
            names = self._names({int(r["person_id"]) for r in rows})
        out = []
        for r in sorted(rows, key=lambda r: int(r["id"])):
            owner = names.get(int(r["person_id"]))
            if owner is None:
                continue
            info = json.loads(r["info"])
            out.append(
                FaceRecord(
                    int(r["id"]),
                    owner,
                    info["image_path"],
                    info["image_sha256"],
                    tuple(info["box"]),
                    float(info["confidence"]),
                    info["created_at"],
                )
            )
        return out

    @_guarded
    def find_image(self, sha256: str) -> list[str]:
        """Names of the people who have a face enrolled from the image with this SHA-256."""
        rows = self._query("faces", f'image_key == "{_image_key(sha256)}"', ["id", "person_id"])
        return sorted(set(self._names({int(r["person_id"]) for r in rows}).values()))

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
        """Enrol ``faces`` for ``name`` (created if new); return the new face ids (``None``: image known, skipped).

        Not one transaction: see the module's docstring for what a crash half-way leaves.
        """
        if not isinstance(embedding_key, EmbeddingKey):
            raise TypeError(f"embedding_key must be an EmbeddingKey, not {type(embedding_key).__name__}")
        name = normalise_name(name)
        vectors = unit_vectors(faces, embedding_key.dimension)
        if not vectors:
            return []
        self.check_embedding_key(embedding_key)
        ids: list[int | None] = [None] * len(vectors)
        todo = list(range(len(faces)))
        if skip_known_images:
            known = {
                str(r["image_key"])
                for chunk in _chunks([_image_key(f.image_sha256) for f in faces])
                for r in self._query("faces", f"image_key in {_strs(chunk)}", ["id", "person_id", "image_key"])
                if self._names([int(r["person_id"])])
            }
            todo = [i for i in todo if _image_key(faces[i].image_sha256) not in known]
        if not todo:
            return ids
        if self.embedding_key is None:
            self._set_meta("embedding_key", embedding_key.dumps())
        self._create_faces(embedding_key.dimension)
        row = self._person_row(name)
        face_ids = self._new_ids("faces", len(todo))
        for i, face_id in zip(todo, face_ids):
            ids[i] = face_id
        self._record("enroll", name, new_person=row is None, faces=face_ids)
        if row is None:
            (pid,) = self._new_ids("people")
            self._client.insert(
                self._name("people"),
                [
                    {
                        "id": pid,
                        "name": name,
                        "name_key": _name_key(name),
                        "created_at": utc_now(),
                        "placeholder": _PLACEHOLDER,
                    }
                ],
            )
        else:
            pid = int(row["id"])
        rows = [
            _face_row(face_id, pid, faces[i], vectors[i], embedding_key.model) for i, face_id in zip(todo, face_ids)
        ]
        self._client.insert(self._name("faces"), rows)
        self._bump()
        return ids

    @_guarded
    def rename(self, old: str, new: str) -> None:
        """Rename a person (one write: the faces carry the person's id, not the name)."""
        old_n, new_n = normalise_name(old), normalise_name(new)
        row = self._person_row(old_n)
        if row is None:
            raise self._not_found(old_n)
        other = self._person_row(new_n)
        if other is not None and int(other["id"]) != int(row["id"]):
            raise InvalidNameError(f"{new_n!r} is already enrolled; remove or rename them first")
        self._record("rename", new_n, old=old_n, new=new_n)
        self._client.upsert(
            self._name("people"),
            [
                {
                    "id": int(row["id"]),
                    "name": new_n,
                    "name_key": _name_key(new_n),
                    "created_at": str(row["created_at"]),
                    "placeholder": _PLACEHOLDER,
                }
            ],
        )
        self._bump()

    @_guarded
    def remove(self, name: str, *, compact: bool = True) -> int:
        """Remove a person and every face of theirs; return how many faces went.

        The person's row goes first (from then on they are gone for every reader), then their
        faces, then Milvus compacts the collections; see the module's docstring.
        """
        name_n = normalise_name(name)
        row = self._person_row(name_n)
        if row is None:
            raise self._not_found(name_n)
        pid = int(row["id"])
        count = len(self._query("faces", f"person_id == {pid}", ["id"]))
        self._record("remove", name_n, faces=count)
        self._delete([pid], [])
        return count

    @property
    def compaction_pending(self) -> bool:
        """Always ``False``: a removal here compacts before it returns (``compact=False`` is the local
        gallery's way to answer first; the person is gone for every reader as soon as their row is)."""
        return False

    def compact(self, *, wait: bool = True) -> bool:
        """Nothing is left to compact (see :attr:`compaction_pending`)."""
        return True

    @_guarded
    def face(self, face_id: int) -> FaceRecord:
        found = self._records(self._query("faces", f"id == {int(face_id)}", ["id", "person_id", "info"]))
        if not found:
            raise FaceNotFoundError(f"no face with id {int(face_id)} in {self.path}")
        return found[0]

    @_guarded
    def remove_face(self, face_id: int, *, compact: bool = True) -> str:
        """Remove one face; return whose it was. The person stays."""
        owner = self.face_owners(np.array([int(face_id)])).get(int(face_id))
        if owner is None:
            raise FaceNotFoundError(f"no face with id {int(face_id)} in {self.path}")
        self._record("remove-face", owner, faces=[int(face_id)])
        self._delete([], [int(face_id)])
        return owner

    @_guarded
    def face_thumbnail(self, face_id: int) -> bytes | None:
        rows = self._query("faces", f"id == {int(face_id)}", ["id", "person_id", "thumbnail"])
        if not rows or not rows[0]["thumbnail"]:
            return None
        if int(rows[0]["person_id"]) != 0 and not self._names([int(rows[0]["person_id"])]):
            return None  # an orphan
        return base64.b64decode(rows[0]["thumbnail"])

    @_guarded
    def face_chip(self, face_id: int) -> FaceChip | None:
        """The face's chip (the photo around it, its box and landmarks: :mod:`~faceid.gallery.chips`),
        or ``None`` (no such face, or no chip kept: none given, or too large for the row)."""
        rows = self._query("faces", f"id == {int(face_id)}", ["id", "person_id", "info", *_CHIP_FIELDS])
        if not rows or (int(rows[0]["person_id"]) != 0 and not self._names([int(rows[0]["person_id"])])):
            return None  # no face, or an orphan
        return _chip_of(rows[0])

    @_guarded
    def audit_log(self) -> list[AuditEntry]:
        """Every change the gallery has seen, oldest first."""
        out = []
        for r in self._scan("audit", ["id", "entry"]):
            e = json.loads(r["entry"])
            out.append(AuditEntry(int(r["id"]), e["at"], e["user"], e["action"], e["person"], e["detail"]))
        return out

    # -- search -----------------------------------------------------------------------------------

    @_guarded
    def embeddings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All enrolled faces as ``(face_ids (N,) int64, person_ids (N,) int64, embeddings (N, D) float32)``."""
        rows = self._live_faces(["id", "embedding"])
        d = self.dimension or 0
        ids = np.array([int(r["id"]) for r in rows], np.int64)
        owners = np.array([int(r["person_id"]) for r in rows], np.int64)
        vectors = np.array([r["embedding"] for r in rows], np.float32).reshape(len(rows), d)
        return ids, owners, vectors

    @_guarded
    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar enrolled faces of each query, as :meth:`faceid.gallery.Gallery.search`.

        Faces whose person row is missing (a removal a crash interrupted) are never returned.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = len(queries)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        found = np.full((n, k), -1, dtype=np.int64)
        dimension = self.dimension
        if n == 0 or k <= 0 or dimension is None or not self._faces_exist():
            return scores, found
        if queries.shape[1] != dimension:
            raise ModelMismatchError(f"queries have {queries.shape[1]} dimensions, the gallery {dimension}")
        limit = min(k, _MAX_K)
        while True:
            hits = self._client.search(
                self._name("faces"),
                data=queries.tolist(),
                limit=limit,
                anns_field="embedding",
                search_params=SEARCH_PARAMS,
                filter="person_id > 0",  # kept unknown faces are never matched
                output_fields=["person_id"],
            )
            people = {int(h["entity"]["person_id"]) for row in hits for h in row}
            alive = set(self._names(people))
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

    @property
    def index_spec(self) -> str:
        """The kind of index Milvus keeps on the faces (``FLAT``: exact)."""
        return f"milvus {INDEX['index_type']} ({INDEX['metric_type']})"

    @_guarded
    def face_owners(self, face_ids: np.ndarray) -> dict[int, str]:
        """Map face ids to the names of the people they belong to (ids not found, and orphans, are left out)."""
        wanted = [int(i) for i in np.asarray(face_ids).reshape(-1) if i >= 0]
        rows = self._by_ids("faces", wanted, ["id", "person_id"])
        names = self._names({int(r["person_id"]) for r in rows})
        return {int(r["id"]): names[int(r["person_id"])] for r in rows if int(r["person_id"]) in names}

    @_guarded
    def rebuild_index(self) -> int:
        """Milvus keeps its own index in step with the rows: nothing to rebuild; return how many faces it holds."""
        return self.face_count

    @_guarded
    def check(self) -> list[str]:
        """Problems found in the gallery (empty when it is sound), each with how to repair it.

        Checks the stored embedding key, that every embedding is a finite unit vector of its
        dimension, that no face lacks its person (an interrupted removal), and that the faces
        agree with the audit log. Erasures still under way are not problems: see :meth:`pending`."""
        where = self.path
        problems: list[str] = []
        try:
            key = self.embedding_key
        except GalleryCorruptError as exc:
            return [str(exc)]
        rows = list(self._scan("faces", ["id", "person_id", "embedding"]))
        people = {int(r["id"]): str(r["name"]) for r in self._scan("people", ["id", "name"])}
        orphans = [r for r in rows if int(r["person_id"]) not in people and int(r["person_id"]) != 0]
        if orphans:
            problems.append(
                f"{where}: {n_faces(len(orphans))} belong to no person (a removal was interrupted); "
                "open the gallery once more to finish it"
            )
        live = [r for r in rows if int(r["person_id"]) in people]
        stored = [r for r in rows if int(r["person_id"]) in people or int(r["person_id"]) == 0]
        if stored and key is not None:
            vectors = np.array([r["embedding"] for r in stored], np.float32)
            if vectors.shape[1] != key.dimension:
                problems.append(f"{where}: embeddings have {vectors.shape[1]} values, the key says {key.dimension}")
            problems += vector_problems(vectors, where)
        actual = [(int(r["id"]), people[int(r["person_id"])]) for r in live]
        problems += audit.replay_problems(self.audit_log(), actual, where)
        return problems


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _meta_key(key: str) -> str:
    """A meta key as stored: setting names come from users, so anything but ``[A-Za-z0-9:_-]`` is hex-escaped."""
    return "".join(c if c.isascii() and (c.isalnum() or c in ":_-") else f"%{ord(c):x}." for c in key)


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:300]


def _quiet_pymilvus() -> None:
    """pymilvus and milvus-lite log every failed call with a traceback on stderr; faceid turns each
    failure into one :class:`GalleryError` line instead, so only their critical messages show."""
    for name in ("pymilvus", "milvus_lite"):
        logger = logging.getLogger(name)
        if logger.level < logging.CRITICAL:
            logger.setLevel(logging.CRITICAL)
