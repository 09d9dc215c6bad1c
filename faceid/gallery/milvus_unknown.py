"""Kept unknown faces on a Milvus gallery: :class:`MilvusKept`, the kept-face operations of
:class:`~faceid.gallery.milvus.MilvusBackend` (the rules are :mod:`faceid.gallery.unknown`'s).

A kept face is a row of the faces collection with person id 0 (people's ids start at 1) and its
group id (0: none); searches ask Milvus for ``person_id > 0`` only, so a kept face is never
matched. What the user said about faces (moved out of a group or a person) is kept in the
``NAME_exclusions`` collection, one row per rule. A grouping step reads every kept face and plans
in memory (:func:`plan_groups`, the local gallery's rules of attaching and grouping); a changed
face is rewritten whole (``upsert``), a batch of faces per write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from faceid.gallery.backend import chunks
from faceid.gallery.milvus_common import CHIP_FIELDS, image_key, ints, strs
from faceid.gallery.milvus_rows import CHUNK, PLACEHOLDER, MilvusRows
from faceid.gallery.records import GroupingUpdate, UnknownFace

__all__ = ["FIELDS", "MilvusKept", "plan_groups"]

#: every field of a face row (a row is rewritten whole)
FIELDS = ["id", "person_id", "group_id", "embedding", "image_key", "info", "thumbnail", *CHIP_FIELDS]

_UPSERT = 500  # rows per upsert


class MilvusKept:
    """The kept unknown faces and the exclusions of a Milvus gallery, over its :class:`MilvusRows`."""

    def __init__(self, rows: MilvusRows) -> None:
        self.rows = rows

    def _kept(self, fields: list[str], where: str = "") -> list[dict[str, Any]]:
        """Every kept unknown face (``where`` it holds), by id."""
        wanted = sorted(set(fields) | {"id", "person_id"})
        expr = "person_id == 0" + (f" and {where}" if where else "")
        return list(self.rows.scan("faces", wanted, expr))

    def rewrite(self, face_ids: Iterable[int], **values: int) -> None:
        """Set ``values`` (``person_id``, ``group_id``) on the faces ``face_ids``: one query per
        :data:`~faceid.gallery.milvus_rows.CHUNK` faces, one upsert per 500."""
        rows = self.rows.by_ids("faces", face_ids, FIELDS)
        for row in rows:
            row.update(values)
        for chunk in chunks(rows, _UPSERT):
            self.rows.upsert("faces", [dict(r) for r in chunk])

    @staticmethod
    def face(row: dict[str, Any]) -> UnknownFace:
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

    # -- reading ----------------------------------------------------------------------------------

    def count(self) -> int:
        return self.rows.count("faces", "person_id == 0")

    def faces(self, *, group: int | None = None, grouped: bool | None = None) -> list[UnknownFace]:
        where = ""
        if group is not None:
            where = f"group_id == {int(group)}"
        elif grouped is not None:
            where = "group_id > 0" if grouped else "group_id == 0"
        return [self.face(r) for r in self._kept(["group_id", "info"], where)]

    def embeddings(self, dimension: int) -> np.ndarray:
        rows = self._kept(["embedding"])
        return np.array([r["embedding"] for r in rows], np.float32).reshape(len(rows), dimension)

    def kept_at(self, spots: Sequence[tuple[str, tuple[int, int, int, int]]]) -> dict[tuple[str, tuple[int, ...]], int]:
        """Faces stored at these (photo, box) spots: one query per :data:`CHUNK` photos."""
        wanted = {(sha, tuple(int(v) for v in box)) for sha, box in spots}
        keys = sorted({image_key(sha) for sha, _ in wanted})
        found: dict[tuple[str, tuple[int, ...]], int] = {}
        own = self.rows.sees_own_faces(keys)
        for chunk in chunks(keys, CHUNK):
            for r in self.rows.query("faces", f"image_key in {strs(chunk)}", ["id", "info"], own_writes=own):
                info = json.loads(r["info"])
                spot = (info["image_sha256"], tuple(int(v) for v in info["box"]))
                if spot in wanted:
                    found[spot] = min(found.get(spot, int(r["id"])), int(r["id"]))
        return found

    def before(self, cutoff: str | None) -> list[int]:
        rows = self._kept(["info"])
        if cutoff is not None:
            rows = [r for r in rows if json.loads(r["info"])["created_at"] < cutoff]
        return sorted(int(r["id"]) for r in rows)

    # -- exclusions -------------------------------------------------------------------------------

    def exclusions(self, *, faces: Sequence[int] = (), person: int | None = None) -> list[tuple[int, int, int]]:
        if not self.rows.client.has_collection(self.rows.name("exclusions")):
            return []
        rules = [
            (int(r["face_id"]), int(r["other_id"]), int(r["person_id"]))
            for r in self.rows.scan("exclusions", ["id", "face_id", "other_id", "person_id"])
        ]
        if person is None and not faces:
            return rules
        wanted = {int(f) for f in faces}
        return [r for r in rules if (person is not None and r[2] == person) or r[0] in wanted or r[1] in wanted]

    def exclude(self, rules: Sequence[tuple[int, int, int]]) -> None:
        if not rules:
            return
        self._ensure_exclusions()
        have = set(self.exclusions())
        new = sorted({(int(f), int(o), int(p)) for f, o, p in rules} - have)
        if not new:
            return
        ids = self.rows.new_ids("exclusions", len(new))
        self.rows.insert(
            "exclusions",
            [
                {"id": i, "face_id": f, "other_id": o, "person_id": p, "placeholder": PLACEHOLDER}
                for i, (f, o, p) in zip(ids, new)
            ],
        )

    def _ensure_exclusions(self) -> None:
        from pymilvus import DataType

        self.rows.plain_collection(
            "exclusions",
            [("id", DataType.INT64, {"is_primary": True})]
            + [(field, DataType.INT64, {}) for field in ("face_id", "other_id", "person_id")],
        )

    def unexclude(self, expr: str) -> None:
        if self.rows.client.has_collection(self.rows.name("exclusions")):
            self.rows.delete("exclusions", expr)

    def move_exclusions(self, source: int, target: int) -> None:
        self.exclude([(f, o, int(target)) for f, o, p in self.exclusions(person=int(source)) if p == int(source)])
        self.unexclude(f"person_id == {int(source)}")

    def drop_exclusions(self, person_ids: Sequence[int], face_ids: Sequence[int]) -> None:
        """The rules about removed people and faces go with them (the removals call it)."""
        if person_ids:
            self.unexclude(f"person_id in {ints(person_ids)}")
        if face_ids:
            self.unexclude(f"face_id in {ints(face_ids)} or other_id in {ints(face_ids)}")

    # -- grouping ---------------------------------------------------------------------------------

    def group(self, dimension: int, *, full: bool, params: Any) -> GroupingUpdate:
        """One grouping step over every kept face (``full``: from scratch), planned by :func:`plan_groups`."""
        rows = self._kept(["group_id", "info", "embedding"])
        if not dimension or not rows:
            return GroupingUpdate(0, 0, 0, 0)
        ids = np.array([int(r["id"]) for r in rows], np.int64)
        current = np.array([int(r["group_id"]) for r in rows], np.int64)
        photo_of: dict[str, int] = {}
        photos = np.array(
            [photo_of.setdefault(json.loads(r["info"])["image_sha256"], len(photo_of)) for r in rows], np.int64
        )
        vectors = np.array([r["embedding"] for r in rows], np.float32).reshape(len(rows), dimension)
        unknown = set(ids.tolist())
        pairs = np.array(
            [(f, o) for f, o, _ in self.exclusions() if o and f in unknown and o in unknown], np.int64
        ).reshape(-1, 2)
        plan = plan_groups(ids, current, photos, vectors, pairs, full, params)
        if plan is None:
            return GroupingUpdate(0, 0, 0, self.count())
        changed, groups, update = plan
        fresh = sorted({g for g in groups.tolist() if g < 0})  # placeholders for new groups: -1, -2, ...
        numbers = dict(
            zip(sorted(fresh, reverse=True), self.rows.new_ids("groups", len(fresh), above=int(current.max())))
        )
        target = {int(i): numbers.get(int(g), int(g)) if g != 0 else 0 for i, g in zip(changed, groups)}
        if full:
            target = {int(i): target.get(int(i), 0) for i in ids}
        by_value: dict[int, list[int]] = {}
        for face, value in target.items():
            if value != int(current[np.searchsorted(ids, face)]):
                by_value.setdefault(value, []).append(face)
        for value, faces in by_value.items():
            self.rewrite(faces, group_id=value)
        self.rows.bump()
        return update


def plan_groups(
    ids: np.ndarray,
    current: np.ndarray,
    photos: np.ndarray,
    vectors: np.ndarray,
    pairs: np.ndarray,
    full: bool,
    params: Any,
) -> tuple[np.ndarray, np.ndarray, GroupingUpdate] | None:
    """One grouping step in memory on kept faces read from any store (the Milvus gallery uses it):
    with no groups yet, group the faces (:func:`faceid.cluster.group_faces`); else go on from the
    groups (:func:`faceid.cluster.incremental.settle`: faces in no group join groups or form new
    ones, and groups whose average link clears the bar merge). ``ids`` (n,) ascending,
    their ``current`` groups (0: none), ``photos`` (n,) a number per photo, ``vectors`` (n, D), and
    the kept-apart ``pairs`` (m, 2) of face ids (both kept unknown faces). Returns ``(face ids,
    groups, summary)`` as the local gallery's step plans them, or ``None`` if nothing changes."""
    from faceid.cluster import group_faces
    from faceid.cluster.incremental import settle

    pairs = np.searchsorted(ids, pairs)  # face ids -> row indices
    groups = np.zeros(len(ids), np.int64) if full else current.copy()
    attached = merged = new_groups = newly = 0
    todo = np.flatnonzero(groups == 0)
    if not len(todo):
        return None
    grouped = np.flatnonzero(groups != 0)
    if len(grouped) and len(todo):
        # go on from the groups as one run would: faces join, groups merge (faceid.cluster.incremental)
        existing, dense_of = np.unique(groups[grouped], return_inverse=True)
        dense = np.full(len(ids), -1, np.int64)
        dense[grouped] = dense_of.ravel()
        sums = np.zeros((len(existing), vectors.shape[1]), np.float64)
        np.add.at(sums, dense[grouped], vectors[grouped].astype(np.float64))
        sizes = np.bincount(dense[grouped], minlength=len(existing))
        position = np.full(len(ids), -1, np.int64)
        position[todo] = np.arange(len(todo))
        a, b = pairs[:, 0], pairs[:, 1]
        both = (position[a] >= 0) & (position[b] >= 0)
        one = (position[a] >= 0) & (dense[b] >= 0)
        other = (position[b] >= 0) & (dense[a] >= 0)
        apart = (dense[a] >= 0) & (dense[b] >= 0)
        settled = settle(
            sums,
            sizes,
            np.ascontiguousarray(vectors[todo]),
            params=params,
            face_photos=photos[todo],
            group_photos=np.stack([photos[grouped], dense[grouped]], axis=1),
            forbidden=np.concatenate(
                [np.stack([position[a[one]], dense[b[one]]], 1), np.stack([position[b[other]], dense[a[other]]], 1)]
            ),
            cannot_link=np.stack([position[a[both]], position[b[both]]], axis=1),
            group_cannot_link=np.stack([dense[a[apart]], dense[b[apart]]], axis=1),
        )
        groups[grouped] = existing[settled.merged_into[dense[grouped]]]
        g = len(existing)
        to = settled.faces
        joined, fresh = (to >= 0) & (to < g), to >= g
        groups[todo[joined]] = existing[to[joined]]
        groups[todo[fresh]] = -(to[fresh] - g + 1)
        attached, merged = int(joined.sum()), settled.merges
        new_groups, newly = settled.new_groups, int(fresh.sum())
    elif len(todo) >= 2:
        where = {int(f): i for i, f in enumerate(todo.tolist())}
        links = [(where[x], where[y]) for x, y in pairs.tolist() if x in where and y in where]
        grouping = group_faces(
            np.ascontiguousarray(vectors[todo]),
            photos=photos[todo],
            cannot_link=np.array(links, np.int64).reshape(-1, 2),
            params=params,
        )
        labelled = grouping.labels >= 0
        groups[todo[labelled]] = -(grouping.labels[labelled] + 1)
        new_groups, newly = grouping.groups, int(labelled.sum())
    if not full and attached == 0 and new_groups == 0 and merged == 0:
        return None
    changed = groups != current
    update = GroupingUpdate(attached, new_groups, newly, int(np.sum(groups == 0)), merged)
    if full:
        return ids, groups, update
    return ids[changed], groups[changed], update
