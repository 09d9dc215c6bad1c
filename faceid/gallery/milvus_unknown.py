"""Kept unknown faces on a Milvus gallery: :class:`MilvusUnknownFaces`, the ``unknown`` attribute of
:class:`~faceid.gallery.milvus.MilvusGallery`, with the behaviour of
:class:`faceid.gallery.unknown.UnknownFaces` (keep, group, name, move, merge, forget).

A kept face is a row of the faces collection with person id 0 (people's ids start at 1) and its
group id (0: none); searches ask Milvus for ``person_id > 0`` only, so a kept face is never
matched. What the user said about faces (moved out of a group or a person) is kept in the
``NAME_exclusions`` collection, one row per rule. The grouping is the local gallery's own
(:func:`faceid.gallery.unknown.plan_groups`). Each change is a few writes, ordered as the rest of
the Milvus gallery's: the audit entry first; a changed face is rewritten whole (``upsert``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import FaceNotFoundError, GroupNotFoundError, InvalidNameError
from faceid.gallery.milvus_common import _CHIP_FIELDS, _create, _face_row, _guarded, _image_key, _ints, _name_key, _strs
from faceid.gallery.people import unit_vectors
from faceid.gallery.records import NewFace, normalise_name, utc_now
from faceid.gallery.unknown import Group, GroupingUpdate, Kept, Named, UnknownFace, plan_groups

__all__ = ["MilvusUnknownFaces"]


_FIELDS = ["id", "person_id", "group_id", "embedding", "image_key", "info", "thumbnail", *_CHIP_FIELDS]


class MilvusUnknownFaces:
    """The kept unknown faces of a Milvus gallery; see the module's docstring."""

    def __init__(self, gallery: Any, params: Any = None) -> None:  # a MilvusGallery (not imported: no cycle)
        self._g = gallery
        self.params = params  # a faceid.cluster.GroupingParams, or None for the gallery's model's

    def _settings(self) -> Any:
        """The grouping settings: ``params``, else those measured for the gallery's embedding key."""
        from faceid.cluster import params_for

        return self.params if self.params is not None else params_for(self._g.embedding_key)

    # -- rows -------------------------------------------------------------------------------------

    def _rows(self, fields: list[str]) -> list[dict[str, Any]]:
        """Every kept unknown face, by id."""
        wanted = sorted(set(fields) | {"id", "person_id"})
        return [r for r in self._g._scan("faces", wanted) if int(r["person_id"]) == 0]

    def _rewrite(self, face_ids: Iterable[int], **values: int) -> None:
        """Set ``values`` (``person_id``, ``group_id``) on the faces ``face_ids`` (each row written whole)."""
        rows = self._g._by_ids("faces", face_ids, _FIELDS)
        for row in rows:
            row.update(values)
        for start in range(0, len(rows), 500):
            self._g._client.upsert(self._g._name("faces"), [dict(r) for r in rows[start : start + 500]])

    def _exclusions(self) -> list[tuple[int, int, int]]:
        """``(face, other, person)`` rules: a face kept apart from face ``other`` or from ``person`` (0: none)."""
        if not self._g._client.has_collection(self._g._name("exclusions")):
            return []
        return [
            (int(r["face_id"]), int(r["other_id"]), int(r["person_id"]))
            for r in self._g._scan("exclusions", ["id", "face_id", "other_id", "person_id"])
        ]

    def _exclude(self, rules: list[tuple[int, int, int]]) -> None:
        if not rules:
            return
        self._ensure_exclusions()
        have = set(self._exclusions())
        new = sorted({r for r in rules if r not in have})
        if not new:
            return
        ids = self._g._new_ids("exclusions", len(new))
        self._g._client.insert(
            self._g._name("exclusions"),
            [
                {"id": i, "face_id": f, "other_id": o, "person_id": p, "placeholder": [0.0, 0.0]}
                for i, (f, o, p) in zip(ids, new)
            ],
        )

    def _ensure_exclusions(self) -> None:
        from pymilvus import DataType

        name = self._g._name("exclusions")
        if self._g._client.has_collection(name):
            return
        client = self._g._client
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        for field in ("face_id", "other_id", "person_id"):
            schema.add_field(field, DataType.INT64)
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
        index = client.prepare_index_params()
        index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
        _create(client, name, schema, index)

    def _unexclude(self, expr: str) -> None:
        if self._g._client.has_collection(self._g._name("exclusions")):
            self._g._client.delete(self._g._name("exclusions"), filter=expr)

    def drop_exclusions(self, person_ids: Sequence[int], face_ids: Sequence[int]) -> None:
        """The rules about removed people and faces go with them (called by the gallery's removals)."""
        if person_ids:
            self._unexclude(f"person_id in {_ints(person_ids)}")
        if face_ids:
            self._unexclude(f"face_id in {_ints(face_ids)} or other_id in {_ints(face_ids)}")

    @staticmethod
    def _face(row: dict[str, Any]) -> UnknownFace:
        info = json.loads(row["info"])
        x, y, w, h = (int(v) for v in info["box"])
        group = int(row["group_id"]) or None
        return UnknownFace(
            int(row["id"]),
            group,
            info["image_path"],
            info["image_sha256"],
            (x, y, w, h),
            float(info["confidence"]),
            info["created_at"],
        )

    def _no_group(self, group_id: int) -> GroupNotFoundError:
        return GroupNotFoundError(
            f"no group {int(group_id)} of unknown faces in {self._g.path} (see `faceid clusters`)"
        )

    # -- reading ----------------------------------------------------------------------------------

    @_guarded
    def count(self) -> int:
        """How many kept unknown faces the gallery holds."""
        return self._g._count("faces", "person_id == 0")

    @_guarded
    def groups(self) -> list[Group]:
        """Every group of kept unknown faces, biggest first (ties: smaller id first)."""
        by_group: dict[int, list[UnknownFace]] = {}
        for row in self._rows(["group_id", "info"]):
            if int(row["group_id"]):
                by_group.setdefault(int(row["group_id"]), []).append(self._face(row))
        return sorted((Group(g, tuple(f)) for g, f in by_group.items()), key=lambda g: (-g.size, g.id))

    @_guarded
    def group(self, group_id: int) -> Group:
        faces = [self._face(r) for r in self._rows(["group_id", "info"]) if int(r["group_id"]) == int(group_id)]
        if not faces or not int(group_id):
            raise self._no_group(group_id)
        return Group(int(group_id), tuple(faces))

    @_guarded
    def ungrouped(self) -> list[UnknownFace]:
        return [self._face(r) for r in self._rows(["group_id", "info"]) if not int(r["group_id"])]

    # -- keeping ----------------------------------------------------------------------------------

    @_guarded
    def keep(
        self,
        faces: Sequence[NewFace],
        *,
        embedding_key: EmbeddingKey,
        group: bool = True,
        min_size: float | None = None,
        min_confidence: float | None = None,
    ) -> Kept:
        """As :meth:`faceid.gallery.unknown.UnknownFaces.keep`."""

        from faceid.cluster import keep_filters, keep_for_grouping, not_kept_reasons

        if not isinstance(embedding_key, EmbeddingKey):
            raise TypeError(f"embedding_key must be an EmbeddingKey, not {type(embedding_key).__name__}")
        vectors = unit_vectors(faces, embedding_key.dimension)
        boxes = np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
        min_size, min_confidence = keep_filters(embedding_key, min_size, min_confidence)
        boxes_conf = (boxes, np.array([f.confidence for f in faces], dtype=np.float64))
        keep = keep_for_grouping(*boxes_conf, min_size=min_size, min_confidence=min_confidence)
        reasons = tuple(not_kept_reasons(*boxes_conf, min_size=min_size, min_confidence=min_confidence))
        g = self._g
        g.check_embedding_key(embedding_key)
        ids: list[int | None] = [None] * len(faces)
        wanted = np.flatnonzero(keep).tolist()
        known: dict[tuple[str, tuple[int, ...]], int] = {}
        keys = sorted({_image_key(faces[i].image_sha256) for i in wanted})
        for start in range(0, len(keys), 1000):
            for r in g._query("faces", f"image_key in {_strs(keys[start : start + 1000])}", ["id", "info"]):
                info = json.loads(r["info"])
                spot = (info["image_sha256"], tuple(int(v) for v in info["box"]))
                known[spot] = min(known.get(spot, int(r["id"])), int(r["id"]))
        todo, duplicates = [], 0
        before = [False] * len(faces)
        for i in wanted:
            spot = (faces[i].image_sha256, tuple(int(v) for v in faces[i].box))
            if spot in known:
                ids[i] = known[spot]
                before[i] = True
                duplicates += 1
            else:
                todo.append(i)
        if todo:
            if g.embedding_key is None:
                g._set_meta("embedding_key", embedding_key.dumps())
            g._create_faces(embedding_key.dimension)
            new = g._new_ids("faces", len(todo))
            g._record("keep", None, faces=new)
            rows = []
            for i, face_id in zip(todo, new):
                ids[i] = face_id
                rows.append(_face_row(face_id, 0, faces[i], vectors[i], embedding_key.model))
            g._client.insert(g._name("faces"), rows)
            g._bump()
        if group and todo:
            self.update_groups()
        return Kept(tuple(ids), len(todo), int(len(faces) - keep.sum()), duplicates, reasons, tuple(before))

    # -- grouping ---------------------------------------------------------------------------------

    @_guarded
    def update_groups(self, *, leftovers: bool | None = None) -> GroupingUpdate:
        """As :meth:`faceid.gallery.unknown.UnknownFaces.update_groups`, except that every step here
        reads every kept face and groups the leftovers too (``leftovers`` is accepted and has no
        effect): a Milvus gallery keeps no cached group sums."""
        del leftovers
        return self._grouping(full=False)

    @_guarded
    def regroup(self) -> GroupingUpdate:
        """As :meth:`faceid.gallery.unknown.UnknownFaces.regroup`."""
        return self._grouping(full=True)

    def _grouping(self, *, full: bool) -> GroupingUpdate:
        key = self._g.embedding_key
        rows = self._rows(["group_id", "info", "embedding"])
        if key is None or not rows:
            return GroupingUpdate(0, 0, 0, 0)
        rows.sort(key=lambda r: int(r["id"]))
        ids = np.array([int(r["id"]) for r in rows], np.int64)
        current = np.array([int(r["group_id"]) for r in rows], np.int64)
        photo_of: dict[str, int] = {}
        photos = np.array(
            [photo_of.setdefault(json.loads(r["info"])["image_sha256"], len(photo_of)) for r in rows], np.int64
        )
        vectors = np.array([r["embedding"] for r in rows], np.float32).reshape(len(rows), key.dimension)
        unknown = set(ids.tolist())
        pairs = np.array(
            [(f, o) for f, o, _ in self._exclusions() if o and f in unknown and o in unknown], np.int64
        ).reshape(-1, 2)
        plan = plan_groups(ids, current, photos, vectors, pairs, full, self._settings())
        if plan is None:
            return GroupingUpdate(0, 0, 0, self.count())
        changed, groups, update = plan
        fresh = sorted({g for g in groups.tolist() if g < 0})  # placeholders for new groups: -1, -2, ...
        numbers = dict(zip(sorted(fresh, reverse=True), self._new_group_ids(len(fresh), int(current.max()))))
        target = {int(i): numbers.get(int(g), int(g)) if g != 0 else 0 for i, g in zip(changed, groups)}
        if full:
            target = {int(i): target.get(int(i), 0) for i in ids}
        by_value: dict[int, list[int]] = {}
        for face, value in target.items():
            if value != int(current[np.searchsorted(ids, face)]):
                by_value.setdefault(value, []).append(face)
        for value, faces in by_value.items():
            self._rewrite(faces, group_id=value)
        self._g._bump()
        return update

    def _new_group_ids(self, count: int, largest: int) -> list[int]:
        last = max(self._g._last_id("groups"), largest)
        self._g._set_meta("last_id:groups", str(last + count))
        return list(range(last + 1, last + count + 1))

    # -- naming and correcting --------------------------------------------------------------------

    @_guarded
    def name(self, group_id: int, name: str) -> Named:
        """As :meth:`faceid.gallery.unknown.UnknownFaces.name`."""
        name = normalise_name(name)
        gid = int(group_id)
        g = self._g
        members = [int(r["id"]) for r in self._rows(["group_id"]) if gid and int(r["group_id"]) == gid]
        if not members:
            raise self._no_group(gid)
        row = g._person_row(name)
        pid = int(row["id"]) if row is not None else None
        out = sorted(self._barred_from(pid, members)) if pid is not None else []
        named = sorted(set(members) - set(out))
        created = pid is None and bool(named)
        g._record("name", name, faces=named, group=gid, new_person=created)
        if pid is None and named:
            pid = self._add_person(name)
        if named:
            assert pid is not None
            self._rewrite(named, person_id=pid, group_id=0)
            self._rewrite(out, group_id=0)  # every face barred: the group stays as it is
        g._bump()
        return Named(name, tuple(named), tuple(out), created)

    def _add_person(self, name: str) -> int:
        (pid,) = self._g._new_ids("people")
        self._g._client.insert(
            self._g._name("people"),
            [
                {
                    "id": pid,
                    "name": name,
                    "name_key": _name_key(name),
                    "created_at": utc_now(),
                    "placeholder": [0.0, 0.0],
                }
            ],
        )
        return pid

    def _barred_from(self, person: int, faces: Sequence[int]) -> set[int]:
        """Which of ``faces`` must not become ``person``'s: moved out of them (or out of a group with
        one of their faces), or from a photo they already have a face in."""
        g = self._g
        theirs = g._query("faces", f"person_id == {int(person)}", ["id", "image_key"])
        their_ids = {int(r["id"]) for r in theirs}
        their_photos = {str(r["image_key"]) for r in theirs}
        barred = set()
        for face, other, who in self._exclusions():
            if who == person or (other and other in their_ids):
                barred.add(face)
            if other and face in their_ids:
                barred.add(other)
        barred |= {int(r["id"]) for r in self._rows(["image_key"]) if str(r["image_key"]) in their_photos}
        return barred & {int(f) for f in faces}

    @_guarded
    def move(self, face_ids: Sequence[int], name: str | None) -> list[int]:
        """As :meth:`faceid.gallery.unknown.UnknownFaces.move`."""
        g = self._g
        wanted = sorted({int(i) for i in face_ids})
        target = normalise_name(name) if name is not None else None
        rows = g._by_ids("faces", wanted, ["id", "person_id", "group_id"])
        missing = sorted(set(wanted) - {int(r["id"]) for r in rows})
        if missing:
            raise FaceNotFoundError(f"no face with id {missing[0]} in {g.path}")
        row = g._person_row(target) if target is not None else None
        pid = int(row["id"]) if row is not None else None
        moved = [r for r in rows if not (pid is not None and int(r["person_id"]) == pid)]
        if not moved:
            return []
        moving = sorted(int(r["id"]) for r in moved)
        g._record("move", target, faces=moving)
        if target is not None and pid is None:
            pid = self._add_person(target)
        rules = []
        grouped: dict[int, list[int]] = {}
        for r in self._rows(["group_id"]):
            grouped.setdefault(int(r["group_id"]), []).append(int(r["id"]))
        for r in moved:
            face, person, group = int(r["id"]), int(r["person_id"]), int(r["group_id"])
            if person:
                rules.append((face, 0, person))
            elif group:
                rules += [(min(face, o), max(face, o), 0) for o in grouped.get(group, []) if o not in moving]
        self._exclude(rules)
        if pid is not None:
            self._unexclude(f"face_id in [{', '.join(map(str, moving))}] and person_id == {pid}")
        self._rewrite(moving, person_id=pid or 0, group_id=0)
        g._bump()
        return moving

    @_guarded
    def merge(self, source: str, target: str) -> int:
        """As :meth:`faceid.gallery.unknown.UnknownFaces.merge`."""
        g = self._g
        src_name, dst_name = normalise_name(source), normalise_name(target)
        src, dst = g._person_row(src_name), g._person_row(dst_name)
        for row, who in ((src, src_name), (dst, dst_name)):
            if row is None:
                raise g._not_found(who)
        assert src is not None and dst is not None
        if int(src["id"]) == int(dst["id"]):
            raise InvalidNameError(f"{src_name!r} and {dst_name!r} are the same person")
        faces = sorted(int(r["id"]) for r in g._query("faces", f"person_id == {int(src['id'])}", ["id"]))
        g._record("merge", dst_name, source=src_name, faces=faces)
        self._rewrite(faces, person_id=int(dst["id"]))
        moved_rules = [(f, o, int(dst["id"])) for f, o, p in self._exclusions() if p == int(src["id"])]
        self._exclude(moved_rules)  # who was moved out of either stays out of the merged person
        self._unexclude(f"person_id == {int(src['id'])}")
        g._client.delete(g._name("people"), filter=f"id == {int(src['id'])}")
        g._bump()
        return len(faces)

    @_guarded
    def forget(self, older_than: timedelta | None = None, *, face_ids: Sequence[int] | None = None) -> int:
        """As :meth:`faceid.gallery.unknown.UnknownFaces.forget`: deleted, then compacted out of Milvus's segments."""
        rows = self._rows(["info"])
        if older_than is not None:
            cutoff = (datetime.now(timezone.utc) - older_than).isoformat(timespec="milliseconds")
            rows = [r for r in rows if json.loads(r["info"])["created_at"] < cutoff]
        ids = sorted(int(r["id"]) for r in rows)
        if face_ids is not None:
            ids = sorted(set(ids) & {int(i) for i in face_ids})
        if not ids:
            return 0
        self._g._record("forget", None, faces=len(ids))
        self._g._delete([], ids)
        return len(ids)
