"""The rows of a Milvus gallery: :class:`MilvusRows`, one connection and its collections.

What :class:`~faceid.gallery.milvus.MilvusBackend`, its kept faces
(:mod:`~faceid.gallery.milvus_unknown`) and its keys (:mod:`~faceid.gallery.milvus_keys`) share:
connecting (one milvus-lite server per folder and process), the collections, reading rows in
windows (Milvus caps one query's rows), the ``meta`` collection (counters, the generation, the
record of a removal in progress), the audit log, and deleting with compaction. See
:mod:`faceid.gallery.milvus` for the guarantees.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from faceid.errors import GalleryBusyError, GalleryCorruptError, GalleryError
from faceid.gallery import audit
from faceid.gallery import milvus_compaction as compaction
from faceid.gallery.backend import chunks
from faceid.gallery.location import MilvusLocation
from faceid.gallery.milvus_common import CHIP_FIELDS, TEXT, create_collection, guarded, ints, name_key, wait_loaded
from faceid.gallery.milvus_session import ReadPoint
from faceid.gallery.milvus_timeout import TimedClient
from faceid.gallery.records import n_faces, utc_now

__all__ = ["CHUNK", "INDEX", "PLACEHOLDER", "SCHEMA", "SEARCH_PARAMS", "MilvusRows", "quiet_pymilvus", "reason"]

log = logging.getLogger(__name__)

#: the schema of the collections this version writes (``meta('schema')``)
SCHEMA = "milvus-2"  # 2: face chips in the faces collection

#: The index on the faces' vectors, and its search parameters: exact (``FLAT``), so a Milvus gallery
#: names the same people as the local exact index. `faceid bench --only milvus` measured the others
#: in milvus-lite (README, A gallery on Milvus): HNSW lost up to 30% of strangers' nearest faces at
#: 100,000, IVF_FLAT needed nprobe 128 for recall 1; measure on a server before choosing one there.
INDEX: dict[str, Any] = {"index_type": "FLAT", "metric_type": "IP", "params": {}}
SEARCH_PARAMS: dict[str, Any] = {"metric_type": "IP", "params": {}}

PLACEHOLDER = [0.0, 0.0]  # Milvus needs a vector field in every collection: the non-face ones get this
_WINDOW = 8192  # ids per query when reading a whole collection (Milvus returns at most 16,384 rows)
CHUNK = 1000  # ids per "id in [...]" expression
#: face rows this process wrote, kept whole (newest last) so that reading them back costs no round
#: trip: a grouping step rewrites the faces a keep has just inserted (:meth:`MilvusRows.by_ids`)
WRITTEN_FACES = 1024

#: milvus-lite servers this process runs, by folder, and how many open galleries use each
_lite_users: dict[str, int] = {}
_lite_lock = threading.Lock()


class MilvusRows:
    """One open Milvus gallery's connection and collections (``NAME_meta``, ``_people``, ``_faces``,
    ``_audit``, ``_exclusions``). ``report`` records a problem found and worked around."""

    def __init__(self, location: MilvusLocation, *, create: bool, timeout: float, report: Any) -> None:
        self.location = location
        self.path = location.spec
        self.timeout = float(timeout)
        self.report = report
        #: who makes the changes, for the audit log (``None``: the OS user)
        self.actor: str | None = None
        self._prefix = location.name
        self._faces_seen = False
        self._faces_loading = False
        #: what this process wrote, so that a read waits for its own writes only when they can change
        #: what it reads (:class:`~faceid.gallery.milvus_session.ReadPoint`): faces or people changed
        #: or removed; enrolled faces added; the photos (image keys) and names (name keys) it added
        self.faces_changed = self.faces_enrolled = self._people_changed = False
        self._added_photos: set[str] = set()
        self._added_names: set[str] = set()
        #: the ``meta`` values this process wrote (stored key -> value, ``None``: deleted), read from here:
        #: see :meth:`meta`
        self._mine: dict[str, str | None] = {}
        #: the last :data:`WRITTEN_FACES` face rows this process inserted or upserted, by id, as written
        self._written: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._closed = True
        self.client = self._connect(create)
        self._closed = False
        self.reads = ReadPoint(lambda: self.client, server=not location.lite, timeout=self.timeout)

    # -- connection -------------------------------------------------------------------------------

    def _connect(self, create: bool) -> Any:
        quiet_pymilvus()
        from pymilvus import MilvusClient

        loc = self.location
        if not loc.lite:
            try:
                return TimedClient.connect(loc.uri, self.timeout, self.path)
            except Exception as exc:
                raise GalleryError(f"{self.path}: cannot reach Milvus at {loc.uri} ({reason(exc)})") from None
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
                        f"{self.path}: cannot open it ({reason(exc)}): milvus-lite lets one process at a time "
                        f"open a gallery, and another has held it for over {self.timeout:g} s; try again when "
                        "it has finished"
                    ) from None
                time.sleep(0.2)
                continue
            with _lite_lock:
                _lite_users[loc.uri] = _lite_users.get(loc.uri, 0) + 1
            return client

    def translate(self, exc: Exception) -> GalleryError | None:
        from pymilvus.exceptions import MilvusException

        if isinstance(exc, MilvusException):
            return GalleryError(f"{self.path}: Milvus refused an operation ({reason(exc)})")
        return None

    def close(self) -> None:
        """Close the connection (and stop milvus-lite's server for this folder when no other gallery uses it)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.client.close()
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

    def name(self, what: str) -> str:
        """The collection ``what`` of this gallery (``NAME_what``)."""
        return f"{self._prefix}_{what}"

    @guarded
    def open(self, create: bool) -> None:
        """Check (or with ``create``, make) the collections, and load them."""
        c = self.client
        have = set(c.list_collections())
        self.reads.open()
        if self.name("meta") not in have:
            if not create:
                raise GalleryError(f"{self.path}: no gallery here; enrol someone to create one")
            self._create_collections(have)  # made and loaded
            return self._check_schema()
        for what in ("meta", "people", "audit"):
            if self.name(what) not in have:
                raise GalleryCorruptError(f"{self.path}: the collection {self.name(what)} is missing")
        for what in ("meta", "people", "audit", "faces", "exclusions"):
            # load what is not loaded (after a server restart, say): asking for a load polls until it is
            # done, about 1.5 s a collection on a server even when it was loaded already
            if (
                self.name(what) in have
                and getattr(c.get_load_state(self.name(what)).get("state"), "name", "") != "Loaded"
            ):
                c.load_collection(self.name(what))
        self._check_schema()

    def _check_schema(self) -> None:
        schema = self.meta("schema")
        if schema != SCHEMA:
            raise GalleryError(f"{self.path}: gallery schema {schema}, this faceid reads {SCHEMA}")

    def faces_exist(self) -> bool:
        """Whether the faces collection exists (made with the first face; once seen, not asked again)."""
        if not self._faces_seen:
            self._faces_seen = bool(self.client.has_collection(self.name("faces")))
        if self._faces_loading:  # made by this process, its load started: reads wait for it here
            wait_loaded(self.client, [self.name("faces")], self.timeout, self.path)
            self._faces_loading = False
        return self._faces_seen

    def plain_collection(self, what: str, fields: list[tuple[str, Any, dict[str, Any]]], *, wait: bool = True) -> None:
        """Make a collection of rows without a face vector (they get a placeholder vector), if missing
        (loaded, or with ``wait=False`` its load started: :func:`~faceid.gallery.milvus_common.wait_loaded`)."""
        from pymilvus import DataType

        name = self.name(what)
        if self.client.has_collection(name):
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        for field, kind, options in fields:
            schema.add_field(field, kind, **options)
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
        index = self.client.prepare_index_params()
        index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
        create_collection(self.client, name, schema, index, wait=wait)

    def _create_collections(self, have: set[str]) -> None:
        from pymilvus import DataType

        self.plain_collection(
            "audit",
            [("id", DataType.INT64, {"is_primary": True}), ("entry", DataType.VARCHAR, {"max_length": TEXT})],
            wait=False,
        )
        self.plain_collection(
            "people",
            [
                ("id", DataType.INT64, {"is_primary": True}),
                ("name", DataType.VARCHAR, {"max_length": 1024}),
                ("name_key", DataType.VARCHAR, {"max_length": 64}),
                ("created_at", DataType.VARCHAR, {"max_length": 64}),
            ],
            wait=False,
        )
        # meta last: its schema row says the gallery is complete
        self.plain_collection(
            "meta",
            [
                ("key", DataType.VARCHAR, {"is_primary": True, "max_length": 256}),
                ("value", DataType.VARCHAR, {"max_length": TEXT}),
            ],
            wait=False,
        )
        wait_loaded(self.client, [self.name(w) for w in ("audit", "people", "meta")], self.timeout, self.path)
        self.set_meta("schema", SCHEMA)

    def create_faces(self, dimension: int) -> None:
        """Make the faces collection (its vectors have ``dimension`` values), if missing."""
        from pymilvus import DataType

        name = self.name("faces")
        if self._faces_seen or self.faces_exist():
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("person_id", DataType.INT64)  # 0: a kept unknown face (person ids start at 1)
        schema.add_field("group_id", DataType.INT64)  # its group of unknown faces, 0: none
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=int(dimension))
        schema.add_field("image_key", DataType.VARCHAR, max_length=64)
        schema.add_field("info", DataType.VARCHAR, max_length=TEXT)
        schema.add_field("thumbnail", DataType.VARCHAR, max_length=TEXT)
        for field in CHIP_FIELDS:
            schema.add_field(field, DataType.VARCHAR, max_length=TEXT)
        index = self.client.prepare_index_params()
        index.add_index(field_name="embedding", **INDEX)
        # inserts need no load, reads do: the load (about 3 s on a server) runs while the enrolment
        # goes on, and the first read of the faces waits for what is left of it (faces_exist)
        create_collection(self.client, name, schema, index, wait=False)
        self._faces_seen = self._faces_loading = True

    # -- rows -------------------------------------------------------------------------------------

    def query(
        self, what: str, expr: str, fields: list[str], limit: int | None = None, *, own_writes: bool = True
    ) -> list[dict[str, Any]]:
        """The rows of ``what`` where ``expr`` holds, as fresh as :class:`~faceid.gallery.milvus_session.ReadPoint`
        makes them (``own_writes=False``: the caller keeps this process's writes of these rows in memory)."""
        if what == "faces" and not self.faces_exist():
            return []
        options: dict[str, Any] = {"limit": limit} if limit is not None else {}
        options.update(self.reads.options(self.name(what), own_writes=own_writes))
        return list(self.client.query(self.name(what), filter=expr, output_fields=fields, **options))

    def by_ids(
        self, what: str, ids: Iterable[int], fields: list[str], column: str = "id", *, own_writes: bool = True
    ) -> list[dict[str, Any]]:
        """The rows whose ``column`` is one of ``ids``: one query per :data:`CHUNK` ids.

        Face rows this process wrote are answered from memory (:data:`WRITTEN_FACES`): what it wrote
        is what is stored, as a gallery has one writing process (see :meth:`meta`), and a read of
        them through the server would wait for its next time tick, about 0.2 s, to see them."""
        wanted = sorted({int(i) for i in ids})
        rows: list[dict[str, Any]] = []
        if what == "faces" and column == "id" and self._written:
            mine = [i for i in wanted if i in self._written]
            rows = [{f: self._written[i][f] for f in fields} for i in mine]
            wanted = [i for i in wanted if i not in self._written]
        for chunk in chunks(wanted, CHUNK):
            rows += self.query(what, f"{column} in {ints(chunk)}", fields, own_writes=own_writes)
        return rows

    def scan(self, what: str, fields: list[str], where: str = "") -> Iterator[dict[str, Any]]:
        """Every row of a collection (``where`` it holds), by windows of ids, ascending."""
        top = self.last_id(what)
        extra = f" and ({where})" if where else ""
        for low in range(0, top + 1, _WINDOW):
            rows = self.query(what, f"id >= {low} and id < {low + _WINDOW}{extra}", fields)
            yield from sorted(rows, key=lambda r: int(r["id"]))

    def count(self, what: str, expr: str = "", *, own_writes: bool = True) -> int:
        if what == "faces" and not self.faces_exist():
            return 0
        options = self.reads.options(self.name(what), own_writes=own_writes)
        rows = self.client.query(self.name(what), filter=expr, output_fields=["count(*)"], **options)
        return int(rows[0]["count(*)"]) if rows else 0

    def insert(self, what: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.client.insert(self.name(what), list(rows))
            self.reads.wrote(self.name(what))
            if what == "faces":
                self._remember_written(rows)
                self._added_photos.update(str(r["image_key"]) for r in rows)
                self.faces_enrolled |= any(int(r["person_id"]) != 0 for r in rows)
            elif what == "people":
                self._added_names.update(str(r["name_key"]) for r in rows)

    def upsert(self, what: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            if what == "faces":  # until the server says it took them, what it holds is its to say
                for row in rows:
                    self._written.pop(int(row["id"]), None)
            self.client.upsert(self.name(what), list(rows))
            self.reads.wrote(self.name(what))
            if what == "faces":
                self._remember_written(rows)
            self.faces_changed |= what == "faces"
            self._people_changed |= what == "people"

    def _remember_written(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            face_id = int(row["id"])
            self._written.pop(face_id, None)
            self._written[face_id] = dict(row)
        while len(self._written) > WRITTEN_FACES:
            self._written.popitem(last=False)

    def delete(self, what: str, expr: str) -> None:
        if what != "faces" or self.faces_exist():
            if what == "faces":
                self._written.clear()  # which rows ``expr`` took is the server's to say
            self.client.delete(self.name(what), filter=expr)
            self.reads.wrote(self.name(what))
            self.faces_changed |= what == "faces"
            self._people_changed |= what == "people"

    def sees_own_faces(self, image_keys: Iterable[str]) -> bool:
        """Whether a read of the faces of these photos (:func:`~faceid.gallery.milvus_common.image_key`)
        must wait for this process's writes to the faces: only if it changed or removed a face, or
        added one of these photos. An enrolment or ``identify --remember`` adds the rows of other
        photos, so it reads each new photo's faces without waiting for the server to apply the
        previous photo's."""
        return self.faces_changed or not self._added_photos.isdisjoint(image_keys)

    @property
    def searches_own_faces(self) -> bool:
        """Whether a search must wait for this process's writes to the faces: not for kept unknown
        faces alone (a search never returns them)."""
        return self.faces_changed or self.faces_enrolled

    def meta(self, key: str) -> str | None:
        """A ``meta`` value: from memory if this process wrote it, else one query.

        What this process wrote is what is stored (its id counters, the generation, the removal and
        compactions in progress, settings it set): a gallery has one writing process at a time
        (milvus-lite's folder admits one process; on a server it is the rule faceid documents, as no
        other process may move an id counter while this one hands out ids from it either). So an
        enrolment reads each counter once per process, not once per change, and never waits for the
        server to apply its own meta writes first. A value this process never wrote is read from
        Milvus each time (a reader sees the writer's changes)."""
        stored = meta_key(key)
        if stored in self._mine:
            return self._mine[stored]
        rows = self.query("meta", f'key == "{stored}"', ["value"], own_writes=False)
        return str(rows[0]["value"]) if rows else None

    def metas(self, prefix: str) -> list[tuple[str, str]]:
        """Every ``(key as stored, value)`` of ``meta`` whose key starts with ``prefix`` (``[A-Za-z0-9:_-]`` only)."""
        return [(str(r["key"]), str(r["value"])) for r in self.query("meta", f'key like "{prefix}%"', ["key", "value"])]

    def set_meta(self, key: str, value: str | None) -> None:
        key = meta_key(key)
        if value is None:
            self.client.delete(self.name("meta"), filter=f'key == "{key}"')
        else:
            self.client.upsert(self.name("meta"), [{"key": key, "value": value, "placeholder": PLACEHOLDER}])
        self.reads.wrote(self.name("meta"))
        self._mine[key] = value

    def last_id(self, what: str) -> int:
        return int(self.meta(f"last_id:{what}") or 0)

    def new_ids(self, what: str, count: int = 1, *, above: int = 0) -> list[int]:
        """``count`` ids never given before (and above ``above``): the counter row moves on before any row uses them."""
        if count <= 0:
            return []
        last = max(self.last_id(what), int(above))
        self.set_meta(f"last_id:{what}", str(last + count))
        return list(range(last + 1, last + count + 1))

    def generation(self) -> int:
        return int(self.meta("generation") or 0)

    def bump(self) -> None:
        self.set_meta("generation", str(self.generation() + 1))

    def record(self, action: str, person: str | None, **detail: Any) -> None:
        """Append an audit entry (before the change it records: the log may hold a change a crash stopped)."""
        (entry_id,) = self.new_ids("audit")
        entry = {
            "at": utc_now(),
            "user": self.actor if self.actor is not None else audit.os_user(),
            "action": action,
            "person": person,
            "detail": detail,
        }
        self.insert("audit", [{"id": entry_id, "entry": json.dumps(entry, sort_keys=True), "placeholder": PLACEHOLDER}])

    def person_row(self, name: str) -> dict[str, Any] | None:
        """The person of that name (waiting for this process's writes to the people only if it renamed or
        removed someone, or added this name: enrolling seven people reads without a wait)."""
        key = name_key(name)
        own = self._people_changed or key in self._added_names
        rows = self.query("people", f'name_key == "{key}"', ["id", "name", "created_at"], own_writes=own)
        return min(rows, key=lambda r: int(r["id"])) if rows else None

    def names(self, person_ids: Iterable[int]) -> dict[int, str]:
        """The names of the people among ``person_ids`` that exist."""
        return {int(r["id"]): str(r["name"]) for r in self.by_ids("people", person_ids, ["id", "name"])}

    def person_fields(self, pid: int, name: str, created_at: str) -> dict[str, Any]:
        return {
            "id": int(pid),
            "name": name,
            "name_key": name_key(name),
            "created_at": created_at,
            "placeholder": PLACEHOLDER,
        }

    # -- removals ---------------------------------------------------------------------------------

    def removing(self) -> dict[str, list[int]]:
        value = self.meta("removing")
        return json.loads(value) if value else {"people": [], "faces": []}

    def finish_removals(self, drop_exclusions: Any) -> None:
        """Finish a removal a crash interrupted: the people and faces recorded in ``meta('removing')``."""
        pending = self.removing()
        if not pending["people"] and not pending["faces"]:
            return
        self.delete_rows(pending["people"], pending["faces"], drop_exclusions)
        self.bump()
        self.report(
            f"{self.path}: finished a removal that was interrupted "
            f"({len(pending['people'])} people, {n_faces(len(pending['faces']))} by id)"
        )

    def delete_rows(self, person_ids: Sequence[int], face_ids: Sequence[int], drop_exclusions: Any) -> None:
        """Delete people (their row, then their faces by person id) and single faces; compact; clear the record."""
        self.set_meta("removing", json.dumps({"people": list(person_ids), "faces": list(face_ids)}))
        if person_ids:
            self.client.delete(self.name("people"), filter=f"id in {ints(person_ids)}")
            self.reads.wrote(self.name("people"))
            self._people_changed = True
        if self.faces_exist():
            self._written.clear()
            if person_ids:
                self.client.delete(self.name("faces"), filter=f"person_id in {ints(person_ids)}")
                self.reads.wrote(self.name("faces"))
                self.faces_changed = True
            if face_ids:
                self.client.delete(self.name("faces"), filter=f"id in {ints(face_ids)}")
                self.reads.wrote(self.name("faces"))
                self.faces_changed = True
        drop_exclusions(person_ids, face_ids)
        self.compact()
        self.set_meta("removing", None)

    def compact(self) -> None:
        """Erase deleted rows from the segments (a delete takes effect at once; this only erases).
        milvus-lite flushes and compacts, waiting (up to ``timeout``): its files must lose the rows
        before the removal returns. On a server the removal only asks for the flush, records the
        collections in ``meta('compacting')``, and the compactions follow (:mod:`~faceid.gallery.milvus_compaction`);
        :meth:`compactions_left` reports them pending until the server has finished."""
        names = [self.name(w) for w in ("faces", "people") if w == "people" or self.faces_exist()]
        if self.location.lite:
            jobs = compaction.start(self.client, names, self.timeout)
            compaction.wait(self.client, jobs, self.timeout, self.report, self.path)
            return
        compaction.flush(self.client, names, self.timeout, wait=False)
        self._set_compacting([*self.compacting(), *(n for n in names if n not in self.compacting())])

    def compacting(self) -> list[int | str]:
        """The server's erasures recorded and not yet seen finished: compaction job ids, and the names
        of collections whose flush is awaited before their compaction can start."""
        return [e if isinstance(e, str) else int(e) for e in json.loads(self.meta("compacting") or "[]")]

    def _set_compacting(self, entries: list[int | str]) -> None:
        self.set_meta("compacting", json.dumps(entries) if entries else None)

    def compactions_left(self, *, wait: bool = False) -> list[int | str]:
        """The recorded erasures the server has not finished, after starting the compactions whose
        flush has ended (waiting up to ``timeout`` for each flush and job if ``wait``); forgets the
        finished ones."""
        entries = self.compacting()
        if not entries:
            return []
        left = compaction.advance(self.client, entries, self.timeout, wait=wait)
        jobs = [e for e in left if isinstance(e, int)]
        if wait:
            compaction.wait(self.client, jobs, self.timeout, self.report, self.path)
        done = set(jobs) - set(compaction.unfinished(self.client, jobs))
        left = [e for e in left if e not in done]
        if left != entries:
            self._set_compacting(left)
        return left


def meta_key(key: str) -> str:
    """A meta key as stored: setting names come from users, so anything but ``[A-Za-z0-9:_-]`` is hex-escaped."""
    return "".join(c if c.isascii() and (c.isalnum() or c in ":_-") else f"%{ord(c):x}." for c in key)


def reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:300]


def quiet_pymilvus() -> None:
    """pymilvus and milvus-lite log every failed call with a traceback on stderr; faceid turns each
    failure into one :class:`GalleryError` line instead, so only their critical messages show."""
    for name in ("pymilvus", "milvus_lite"):
        logger = logging.getLogger(name)
        if logger.level < logging.CRITICAL:
            logger.setLevel(logging.CRITICAL)
