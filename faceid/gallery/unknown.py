"""Kept unknown faces: stored beside enrolled ones, grouped into likely people, named, corrected.

``faceid identify --remember`` keeps the faces it calls unknown (:meth:`UnknownFaces.keep`): a
row of the ``faces`` table with no person, with its embedding, thumbnail, source path and
SHA-256, box, detection confidence and time, so naming or moving a face keeps its id. A kept
face is never matched: the search index holds enrolled faces only.

Kept faces are grouped (:mod:`faceid.cluster`): new ones attach to an existing group when they
clearly belong, and faces left over form new groups when enough of them agree
(:meth:`UnknownFaces.update_groups`), without grouping everything again; :meth:`~UnknownFaces.regroup`
groups every kept face again, deterministically. Attaching reads only the faces kept since the
last step and each group's cached embedding sum (:mod:`faceid.gallery.groupsums`), so its cost
follows the new faces, not the gallery. What is known constrains the grouping:

- two faces of one photo (one SHA-256) are never grouped together, nor named as one person;
- a face the user moved out of a group is never grouped with that group's faces again, and a
  face moved out of a person never named as them again (``face_exclusions``); naming a group
  into that person leaves such a face unknown, and says so (:attr:`Named.kept_out`);
- named faces are not grouped: only faces without a person are.

Naming a group (:meth:`~UnknownFaces.name`) gives its faces a person in one transaction with its
audit entry, as enrolment does; they enter the search index in place (the log of
:mod:`faceid.gallery.changes`), so the next identification names them. Group ids come from a
counter that only grows, so an id shown before a re-grouping never names another group.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import FaceNotFoundError, GroupNotFoundError, InvalidNameError
from faceid.gallery import audit, changes, deletion, groupsums, people
from faceid.gallery.records import NewFace, n_faces, normalise_name
from faceid.gallery.store import Unchanged, guarded
from faceid.gallery.unknown_settle import settle_faces

__all__ = [
    "Group",
    "GroupingUpdate",
    "Kept",
    "Named",
    "UnknownFace",
    "UnknownFaces",
    "plan_groups",
    "unknown_embeddings",
]

log = logging.getLogger(__name__)

_COLUMNS = "id, group_id, image_path, image_sha256, box, confidence, created_at"


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
    face, why it was not kept (``"confidence 0.91 below 0.95"``), ``None`` if it was;
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


class UnknownFaces:
    """The kept unknown faces of a :class:`~faceid.gallery.Gallery` (its ``unknown`` attribute).

    Every method is one transaction (reads: one snapshot); errors as the gallery's own. The
    grouping settings are :class:`faceid.cluster.GroupingParams`' defaults unless ``params``.
    """

    def __init__(self, gallery: Any, params: Any = None) -> None:  # a Gallery (not imported: it imports this)
        self._gallery = gallery
        self._store = gallery._store
        self.params = params  # a faceid.cluster.GroupingParams, or None for the gallery's model's

    def _settings(self) -> Any:
        """The grouping settings: ``params``, else those measured for the gallery's embedding key."""
        from faceid.cluster import params_for

        return self.params if self.params is not None else params_for(self._gallery.embedding_key)

    # -- reading --------------------------------------------------------------------------------

    @guarded
    def count(self) -> int:
        """How many kept unknown faces the gallery holds."""
        if self._store.schema < 2:
            return 0
        return int(self._store.db.execute("SELECT COUNT(*) FROM faces WHERE person_id IS NULL").fetchone()[0])

    @guarded
    def groups(self) -> list[Group]:
        """Every group of kept unknown faces, biggest first (ties: smaller id first)."""
        if self._store.schema < 2:
            return []
        rows = self._store.db.execute(
            f"SELECT {_COLUMNS} FROM faces WHERE person_id IS NULL AND group_id IS NOT NULL ORDER BY group_id, id"
        ).fetchall()
        by_group: dict[int, list[UnknownFace]] = {}
        for row in rows:
            by_group.setdefault(int(row[1]), []).append(_face(row))
        return sorted((Group(g, tuple(f)) for g, f in by_group.items()), key=lambda g: (-g.size, g.id))

    @guarded
    def group(self, group_id: int) -> Group:
        """One group; :class:`GroupNotFoundError` if there is none of that id."""
        rows = self._faces_where("group_id = ?", (int(group_id),))
        if not rows:
            raise self._no_group(group_id)
        return Group(int(group_id), tuple(rows))

    @guarded
    def ungrouped(self) -> list[UnknownFace]:
        """Kept unknown faces in no group (yet), by id."""
        return self._faces_where("group_id IS NULL", ())

    def _faces_where(self, where: str, args: tuple[Any, ...]) -> list[UnknownFace]:
        if self._store.schema < 2:
            return []
        query = f"SELECT {_COLUMNS} FROM faces WHERE person_id IS NULL AND {where} ORDER BY id"
        return [_face(r) for r in self._store.db.execute(query, args).fetchall()]

    def _no_group(self, group_id: int) -> GroupNotFoundError:
        return GroupNotFoundError(
            f"no group {int(group_id)} of unknown faces in {self._gallery.path} (see `faceid clusters`)"
        )

    # -- keeping --------------------------------------------------------------------------------

    @guarded
    def keep(
        self,
        faces: Sequence[NewFace],
        *,
        embedding_key: EmbeddingKey,
        group: bool = True,
        min_size: float | None = None,
        min_confidence: float | None = None,
    ) -> Kept:
        """Keep unknown ``faces`` in one transaction (never matched as anyone); then, with ``group``,
        :meth:`update_groups`.

        Faces whose box's shorter side is under ``min_size`` pixels or whose detection confidence
        is under ``min_confidence`` are not kept (default: measured per model,
        :func:`faceid.cluster.keep_filters_for`: small, unsure faces make junk groups). A face
        already in the gallery (same photo SHA-256 and box) is not kept twice. An empty gallery
        takes ``embedding_key`` as its own.

        Raises:
            ModelMismatchError: the gallery's embeddings come from another model or preprocessing.
            ValueError: an embedding has the wrong shape or is not finite and unit-length.
        """
        from faceid.cluster import keep_filters, keep_for_grouping, not_kept_reasons

        if not isinstance(embedding_key, EmbeddingKey):
            raise TypeError(f"embedding_key must be an EmbeddingKey, not {type(embedding_key).__name__}")
        self._store.require(2, "keeping unknown faces")
        vectors = people.unit_vectors(faces, embedding_key.dimension)
        boxes = np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
        min_size, min_confidence = keep_filters(embedding_key, min_size, min_confidence)
        boxes_conf = (boxes, np.array([f.confidence for f in faces], dtype=np.float64))
        keep = keep_for_grouping(*boxes_conf, min_size=min_size, min_confidence=min_confidence)
        reasons = tuple(not_kept_reasons(*boxes_conf, min_size=min_size, min_confidence=min_confidence))
        ids: list[int | None] = [None] * len(faces)
        before = [False] * len(faces)
        added = duplicates = 0
        try:
            with self._store.write() as db:
                self._gallery.check_embedding_key(embedding_key)
                todo = []
                for i in np.flatnonzero(keep).tolist():
                    known = db.execute(
                        "SELECT id FROM faces WHERE image_sha256 = ? AND box = ? ORDER BY id LIMIT 1",
                        (faces[i].image_sha256, _box_json(faces[i].box)),
                    ).fetchone()
                    if known is not None:
                        ids[i] = int(known[0])
                        before[i] = True
                        duplicates += 1
                    else:
                        todo.append(i)
                if not todo:
                    raise Unchanged
                if self._gallery.embedding_key is None:
                    db.execute("INSERT INTO meta VALUES ('embedding_key', ?)", (embedding_key.dumps(),))
                for i, face_id in zip(todo, people.new_ids(db, "faces", len(todo))):
                    people.insert_face(db, face_id, None, vectors[i], faces[i], embedding_key.model)
                    ids[i] = face_id
                added = len(todo)
                audit.record(db, "keep", None, actor=self._gallery.actor, faces=[ids[i] for i in todo])
        except Unchanged:
            pass
        if group and added:
            self.update_groups()
        return Kept(tuple(ids), added, int(len(faces) - keep.sum()), duplicates, reasons, tuple(before))

    # -- grouping -------------------------------------------------------------------------------

    @guarded
    def update_groups(self, *, leftovers: bool | None = None) -> GroupingUpdate:
        """Place the kept faces that are in no group: each face kept since the last grouping joins an
        existing group when it clearly belongs (:func:`faceid.cluster.attach`); then the faces in no
        group form new groups when enough of them agree (:func:`faceid.cluster.group_faces` over the
        ungrouped faces only). Existing groups stay.

        The cost of attaching follows the new faces, not the gallery: groups' embedding sums are
        cached (:mod:`faceid.gallery.groupsums`). Grouping the faces left over reads them all, so
        by default (``leftovers=None``) it runs while they are few (:data:`LEFTOVERS_ALWAYS`) or
        when their number grew by a quarter (at least :data:`LEFTOVERS_ALWAYS`) since it last ran;
        ``True``: now; ``False``: not."""
        return self._grouping(full=False, leftovers=leftovers)

    @guarded
    def regroup(self) -> GroupingUpdate:
        """Group every kept unknown face again from scratch (deterministic: the same faces and
        constraints give the same groups; the groups get new ids, biggest first)."""
        return self._grouping(full=True, leftovers=True)

    def _grouping(self, *, full: bool, leftovers: bool | None) -> GroupingUpdate:
        if self._store.schema < 2:
            return GroupingUpdate(0, 0, 0, 0)
        # computed outside the write lock (minutes for a million faces), written only if
        # nothing changed meanwhile; else computed again under the lock
        with self._store.snapshot():
            generation = self._store.generation()
            plan = _plan(self._store.db, self._dimension(), full, leftovers, self._settings())
        if plan is None:
            return GroupingUpdate(0, 0, 0, self.count())
        try:
            return self._write_plan(plan, generation, leftovers)
        except Unchanged:  # another process placed the faces meanwhile
            return GroupingUpdate(0, 0, 0, self.count())

    def _write_plan(self, plan: _Plan, generation: int, leftovers: bool | None) -> GroupingUpdate:
        # a plan that changes no face (only the cache and the bookkeeping) makes no new generation
        versioned = bool(len(plan.ids)) or plan.full or bool(plan.merges)
        with self._store.write(versioned=versioned) as db:
            if self._store.generation() != generation:
                again = _plan(db, self._dimension(), plan.full, leftovers, self._settings())
                if again is None:
                    raise Unchanged
                plan = again
                if not versioned and (len(plan.ids) or plan.full or plan.merges):
                    db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            fresh = sorted({g for g in plan.groups.tolist() if g < 0})  # placeholders for new groups: -1, -2, ...
            numbers = dict(zip(sorted(fresh, reverse=True), _new_group_ids(db, len(fresh))))
            if plan.full:
                db.execute("UPDATE faces SET group_id = NULL WHERE person_id IS NULL AND group_id IS NOT NULL")
                if groupsums.exists(db):
                    db.execute("DELETE FROM group_sums")
            db.executemany(
                "UPDATE faces SET group_id = ? WHERE id = ? AND person_id IS NULL",
                [(numbers.get(g, g) if g != 0 else None, i) for i, g in zip(plan.ids.tolist(), plan.groups.tolist())],
            )
            db.executemany(
                "UPDATE faces SET group_id = ? WHERE group_id = ? AND person_id IS NULL",
                [(into, old) for old, into in plan.merges.items()],
            )
            if plan.sums and groupsums.exists(db):  # after the updates: their triggers dropped the old rows
                gids = list(plan.sums)
                groupsums.store(
                    db,
                    [numbers.get(g, g) for g in gids],
                    [plan.sums[g][0] for g in gids],
                    [plan.sums[g][1] for g in gids],
                )
            _set_meta(db, "grouping:tried", plan.tried)
            if plan.left is not None:
                _set_meta(db, "grouping:left", plan.left)
        return plan.update

    def _dimension(self) -> int:
        key = self._gallery.embedding_key
        return key.dimension if key else 0

    # -- naming and correcting ------------------------------------------------------------------

    @guarded
    def name(self, group_id: int, name: str) -> Named:
        """Make a group's faces the enrolled faces of ``name`` (new, or an existing person), in one
        transaction; no face is embedded again. The next identification names them.

        A face moved out of that person before, or from a photo the person already has a face
        in, stays unknown (out of the group): :attr:`Named.kept_out`. When that is every face of
        the group, the group stays as it is.

        Raises:
            GroupNotFoundError: there is no such group (named already, or grouped again).
            InvalidNameError: the name is not acceptable.
        """
        name = normalise_name(name)
        gid = int(group_id)
        self._store.require(2, "naming a group")
        with self._store.write() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM faces WHERE group_id = ? AND person_id IS NULL", (gid,))]
            if not ids:
                raise self._no_group(gid)
            pid = people.person_id(db, name)
            out = sorted(_barred_from(db, pid, ids)) if pid is not None else []
            named = sorted(set(ids) - set(out))
            created = pid is None and bool(named)
            if pid is None and named:
                pid = people.add_person(db, name)
            _set(db, "person_id = ?, group_id = NULL", named, pid)
            if named:  # every face barred: the group stays as it is
                _set(db, "group_id = NULL", out)
            changes.note_removed_faces(db, named, self._store.generation() + 1)  # they enter the index
            audit.record(db, "name", name, actor=self._gallery.actor, faces=named, group=gid, new_person=created)
        return Named(name, tuple(named), tuple(out), created)

    @guarded
    def move(self, face_ids: Sequence[int], name: str | None) -> list[int]:
        """Move faces (enrolled or kept unknown) to the person ``name`` (created if new), or with
        ``None`` back to unknown (in no group); return the ids moved.

        The move is remembered: a face moved out of a person is never named as them again by
        naming a group, and a face moved out of a group is never grouped with its faces again.
        Moving a face to a person explicitly lifts a former exclusion from them. A face leaving
        the enrolled faces leaves the search index at once (and its index file, in place).

        Raises:
            FaceNotFoundError: a face id is not in the gallery.
            InvalidNameError: the name is not acceptable.
        """
        wanted = sorted({int(i) for i in face_ids})
        target = normalise_name(name) if name is not None else None
        self._store.require(2, "moving faces")
        left: list[int] = []
        try:
            return self._move(wanted, target, left)
        except Unchanged:  # nothing to move: rolled back, no new generation
            return []
        finally:
            if left:
                self._gallery._search.removed(np.array(left, np.int64))

    def _move(self, wanted: list[int], target: str | None, left: list[int]) -> list[int]:
        with self._store.write() as db:
            rows = _rows(db, "SELECT id, person_id, group_id FROM faces WHERE id IN ({})", wanted)
            missing = sorted(set(wanted) - {r[0] for r in rows})
            if missing:
                raise FaceNotFoundError(f"no face with id {missing[0]} in {self._gallery.path}")
            pid = people.person_id(db, target) if target is not None else None
            if target is not None and pid is None:
                pid = people.add_person(db, target)
            moved = [r for r in rows if not (pid is not None and r[1] == pid)]
            if not moved:
                raise Unchanged
            moving = {r[0] for r in moved}
            for face, person, group in moved:
                if person is not None:
                    _exclude(db, face, person=person)
                elif group is not None:
                    others = [r[0] for r in db.execute("SELECT id FROM faces WHERE group_id = ?", (group,))]
                    for other in others:
                        if other not in moving:
                            _exclude(db, face, other=other)
                if pid is not None:
                    db.execute("DELETE FROM face_exclusions WHERE face_id = ? AND person_id = ?", (face, pid))
            _set(db, "person_id = ?, group_id = NULL", sorted(moving), pid)
            # faces entering or leaving the search index
            switched = [f for f, person, _ in moved if (person is None) != (pid is None)]
            changes.note_removed_faces(db, switched, self._store.generation() + 1)
            audit.record(db, "move", target, actor=self._gallery.actor, faces=sorted(moving))
        left += [f for f, person, _ in moved if person is not None and pid is None]  # after the commit only
        return sorted(moving)

    @guarded
    def merge(self, source: str, target: str) -> int:
        """Merge person ``source`` into ``target`` (two names for one person): ``source``'s faces become
        ``target``'s and ``source`` is no more; return how many faces moved.

        Raises:
            PersonNotFoundError: either is not enrolled.
            InvalidNameError: they are the same person.
        """
        src_name, dst_name = normalise_name(source), normalise_name(target)
        with self._store.write() as db:
            src, dst = people.person_id(db, src_name), people.person_id(db, dst_name)
            for pid, who in ((src, src_name), (dst, dst_name)):
                if pid is None:
                    raise self._gallery._not_found(who)
            if src == dst:
                raise InvalidNameError(f"{src_name!r} and {dst_name!r} are the same person")
            faces = [r[0] for r in db.execute("SELECT id FROM faces WHERE person_id = ? ORDER BY id", (src,))]
            db.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (dst, src))
            if self._store.schema >= 2:  # who was moved out of either stays out of the merged person
                db.execute("UPDATE OR IGNORE face_exclusions SET person_id = ? WHERE person_id = ?", (dst, src))
            db.execute("DELETE FROM people WHERE id = ?", (src,))
            audit.record(db, "merge", dst_name, actor=self._gallery.actor, source=src_name, faces=faces)
        return len(faces)

    @guarded
    def forget(self, older_than: timedelta | None = None, *, face_ids: Sequence[int] | None = None) -> int:
        """Delete kept unknown faces (all, those kept longer ago than ``older_than``, or those of
        ``face_ids``) securely, as :meth:`Gallery.remove <faceid.gallery.Gallery.remove>` does: nothing
        of them (embedding, thumbnail, path, hash) stays in the gallery's files. Return how many went.
        Enrolled faces among ``face_ids`` are left alone (remove them with ``remove_face``)."""
        if self._store.schema < 2:
            return 0
        where, args = "person_id IS NULL", []
        if older_than is not None:
            cutoff = datetime.now(timezone.utc) - older_than
            where += " AND created_at < ?"
            args.append(cutoff.isoformat(timespec="milliseconds"))
        try:
            with self._store.write() as db:
                ids = [r[0] for r in db.execute(f"SELECT id FROM faces WHERE {where} ORDER BY id", args)]
                if face_ids is not None:
                    ids = sorted(set(ids) & {int(i) for i in face_ids})
                if not ids:
                    raise Unchanged
                _set(db, "", ids)  # thumbnails and exclusions go with them (ON DELETE CASCADE)
                audit.record(db, "forget", None, actor=self._gallery.actor, faces=len(ids))
                deletion.note_removal(db)
        except Unchanged:
            return 0
        if not self._gallery._compact(wait=True):
            self._gallery._report(
                f"{self._gallery.path}: {n_faces(len(ids))} forgotten, but other processes kept the gallery busy, "
                "so old copies may stay in unused parts of gallery.db until faceid next opens it while no one "
                "else uses it"
            )
        return len(ids)


# -- helpers ------------------------------------------------------------------------------------------


def _box_json(box: Sequence[int]) -> str:
    return json.dumps([int(v) for v in box])  # as people.add_face stores it


def _face(row: Sequence[Any]) -> UnknownFace:
    x, y, w, h = (int(v) for v in json.loads(row[4]))
    group = None if row[1] is None else int(row[1])
    return UnknownFace(int(row[0]), group, row[2], row[3], (x, y, w, h), float(row[5]), row[6])


def _rows(db: sqlite3.Connection, query: str, ids: Sequence[int]) -> list[tuple[Any, ...]]:
    """``query`` (with ``IN ({})``) over ``ids`` in chunks SQLite accepts."""
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), 900):
        chunk = list(ids[start : start + 900])
        out += db.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall()
    return out


def _set(db: sqlite3.Connection, assignments: str, ids: Sequence[int], *values: Any) -> None:
    """``UPDATE faces SET assignments`` (``""``: delete) for the faces ``ids``, in chunks."""
    for start in range(0, len(ids), 900):
        chunk = list(ids[start : start + 900])
        marks = ",".join("?" * len(chunk))
        if not assignments:
            db.execute(f"DELETE FROM faces WHERE id IN ({marks})", chunk)
        else:
            db.execute(f"UPDATE faces SET {assignments} WHERE id IN ({marks})", [*values, *chunk])


def _exclude(db: sqlite3.Connection, face: int, *, other: int | None = None, person: int | None = None) -> None:
    if other is not None:
        face, other = min(face, other), max(face, other)
    db.execute(
        "INSERT OR IGNORE INTO face_exclusions (face_id, other_id, person_id) VALUES (?, ?, ?)", (face, other, person)
    )


def _barred_from(db: sqlite3.Connection, person: int, faces: Sequence[int]) -> set[int]:
    """Which of ``faces`` must not become ``person``'s: moved out of them (or out of a group with one
    of their faces), or from a photo they already have a face in."""
    barred = {
        int(r[0])
        for r in db.execute(
            "SELECT face_id FROM face_exclusions WHERE person_id = :p "
            "UNION SELECT e.face_id FROM face_exclusions e JOIN faces f ON f.id = e.other_id WHERE f.person_id = :p "
            "UNION SELECT e.other_id FROM face_exclusions e JOIN faces f ON f.id = e.face_id "
            "WHERE f.person_id = :p AND e.other_id IS NOT NULL "
            "UNION SELECT u.id FROM faces u JOIN faces f ON f.image_sha256 = u.image_sha256 "
            "WHERE f.person_id = :p AND u.person_id IS NULL",
            {"p": person},
        )
    }
    return barred & {int(f) for f in faces}


def _new_group_ids(db: sqlite3.Connection, count: int) -> list[int]:
    """``count`` group ids never given before (a counter in ``meta`` that only grows)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'last_id:groups'").fetchone()
    largest = db.execute("SELECT COALESCE(MAX(group_id), 0) FROM faces").fetchone()[0]
    last = max(int(row[0]) if row else 0, int(largest))
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_id:groups', ?)", (str(last + count),))
    return list(range(last + 1, last + count + 1))


#: Faces in no group that are grouped among themselves at every grouping step while there are
#: at most this many (a few seconds); above, when their number grew by a quarter of what was left
#: last time (at least this many more). :meth:`UnknownFaces.update_groups`.
LEFTOVERS_ALWAYS = 2_000
#: Up to this many faces in no group, a step that looks at the leftovers settles them all against
#: the groups (:func:`faceid.cluster.incremental.settle`: they may join groups and merge them, as
#: in one run); above, they are grouped among themselves only (a search of every one against every
#: group would take minutes).
SETTLE_LEFTOVERS_UP_TO = 20_000

#: Rows read from SQLite at a time when reading many faces' embeddings.
_READ_BATCH = 10_000


@dataclass(frozen=True)
class _Plan:
    """What a grouping step writes: ``groups`` per face of ``ids`` (an existing group id, ``0`` for
    none, ``-1, -2, ...`` for new groups, biggest first); ``sums``: ``(sum, size)`` to cache per group
    (id or placeholder); ``tried``: the largest face id attach has seen; ``left``: faces left in no
    group when the leftovers were grouped (``None``: they were not); ``merges``: old group id -> the
    group it merged into."""

    ids: np.ndarray
    groups: np.ndarray
    update: GroupingUpdate
    sums: dict[int, tuple[np.ndarray, int]]
    tried: int
    left: int | None
    full: bool
    merges: dict[int, int] = field(default_factory=dict)


def _meta_int(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def _set_meta(db: sqlite3.Connection, key: str, value: int) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(int(value))))


def _read(
    db: sqlite3.Connection, where: str, args: Sequence[Any], dimension: int
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``(ids (N,) int64, photo hashes, embeddings (N, D) float32)`` of the kept unknown faces ``where``, by id;
    read in batches into one array (no list of a million blobs)."""
    where = f"person_id IS NULL AND {where}"
    (n,) = db.execute(f"SELECT COUNT(*) FROM faces WHERE {where}", args).fetchone()
    ids = np.zeros(n, np.int64)
    vectors = np.zeros((n, dimension), np.float32)
    shas: list[str] = []
    cursor = db.execute(f"SELECT id, image_sha256, embedding FROM faces WHERE {where} ORDER BY id", args)
    done = 0
    while batch := cursor.fetchmany(_READ_BATCH):
        end = min(done + len(batch), n)
        batch = batch[: end - done]
        ids[done:end] = [r[0] for r in batch]
        shas += [r[1] for r in batch]
        vectors[done:end] = np.frombuffer(b"".join(r[2] for r in batch), np.float32).reshape(-1, dimension)
        done = end
    return ids[:done], shas, vectors[:done]


def unknown_embeddings(db: sqlite3.Connection, dimension: int) -> np.ndarray:
    """``(N, D)`` float32 embeddings of every kept unknown face, by id (for ``gallery check``)."""
    return _read(db, "1", (), dimension)[2]


def _exclusion_pairs(db: sqlite3.Connection, ids: np.ndarray) -> list[tuple[int, int]]:
    """Every face-face exclusion ``(face, other)`` that involves one of ``ids`` (either end)."""
    query = "SELECT face_id, other_id FROM face_exclusions WHERE other_id IS NOT NULL AND {} IN ({})"
    pairs: set[tuple[int, int]] = set()
    values = ids.tolist()
    for column in ("face_id", "other_id"):
        for start in range(0, len(values), 900):
            chunk = values[start : start + 900]
            pairs.update(db.execute(query.format(column, ",".join("?" * len(chunk))), chunk).fetchall())
    return sorted(pairs)


def _plan(db: sqlite3.Connection, dimension: int, full: bool, leftovers: bool | None, params: Any) -> _Plan | None:
    """What a grouping step would write, or ``None`` if it would change nothing."""
    if dimension <= 0:
        return None
    if full:
        ids, shas, vectors = _read(db, "1", (), dimension)
        if not len(ids):
            return None
        groups, update, new_sums = _group_new(db, ids, shas, vectors, params)
        grouped = groups != 0  # the others are in no group once the write has cleared every group
        return _Plan(ids[grouped], groups[grouped], update, new_sums, int(ids.max()), update.ungrouped, True)
    tried_before = _meta_int(db, "grouping:tried")
    (largest,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM faces").fetchone()  # ids only grow
    tried = max(tried_before, int(largest))
    (ungrouped,) = db.execute("SELECT COUNT(*) FROM faces WHERE group_id IS NULL AND person_id IS NULL").fetchone()
    left_before = _meta_int(db, "grouping:left")
    if leftovers is None:
        grew = ungrouped - left_before
        leftovers = ungrouped <= LEFTOVERS_ALWAYS or grew >= max(LEFTOVERS_ALWAYS, left_before // 4)
    sums: dict[int, tuple[np.ndarray, int]] = {}
    merges: dict[int, int] = {}
    ids, groups = np.zeros(0, np.int64), np.zeros(0, np.int64)
    attached = new_groups = newly = 0
    left: int | None = None
    everyone = bool(leftovers) and ungrouped <= SETTLE_LEFTOVERS_UP_TO
    if db.execute("SELECT 1 FROM faces WHERE group_id IS NOT NULL LIMIT 1").fetchone():
        # go on from the groups (faceid.cluster.incremental): the new faces, or every face in no group
        if everyone:
            face_ids, shas, vectors = _read(db, "group_id IS NULL", (), dimension)
        elif tried > tried_before:
            face_ids, shas, vectors = _read(db, "group_id IS NULL AND id > ?", (tried_before,), dimension)
        else:
            face_ids, shas, vectors = np.zeros(0, np.int64), [], np.zeros((0, dimension), np.float32)
        if len(face_ids):
            settled = settle_faces(db, face_ids, shas, vectors, dimension, params, _exclusion_pairs(db, face_ids))
            ids, groups, sums, merges = settled.ids, settled.groups, dict(settled.sums), settled.merges
            attached, new_groups, newly = settled.attached, settled.new_groups, settled.newly_grouped
        if everyone:
            left = ungrouped - attached - newly
        elif leftovers:  # too many to settle at once: group them among themselves, as before
            rest_ids, rest_shas, rest_vectors = _read(db, "group_id IS NULL", (), dimension)
            rest = ~np.isin(rest_ids, ids)
            rest_groups, grouping, new_sums = _group_new(
                db, rest_ids[rest], [s for s, k in zip(rest_shas, rest.tolist()) if k], rest_vectors[rest], params
            )
            offset = new_groups  # placeholders after the settled ones
            sums.update({g - offset: v for g, v in new_sums.items()})
            grouped = rest_groups != 0
            ids = np.concatenate([ids, rest_ids[rest][grouped]])
            groups = np.concatenate([groups, rest_groups[grouped] - offset])
            new_groups, newly = new_groups + grouping.new_groups, newly + grouping.newly_grouped
            left = grouping.ungrouped
    elif leftovers and ungrouped >= 2:
        rest_ids, rest_shas, rest_vectors = _read(db, "group_id IS NULL", (), dimension)
        rest_groups, grouping, sums = _group_new(db, rest_ids, rest_shas, rest_vectors, params)
        grouped = rest_groups != 0
        ids, groups = rest_ids[grouped], rest_groups[grouped]
        new_groups, newly = grouping.new_groups, grouping.newly_grouped
        left = grouping.ungrouped
    elif leftovers:
        left = ungrouped
    if not len(ids) and not merges and tried == tried_before and not sums and (left is None or left == left_before):
        return None
    update = GroupingUpdate(attached, new_groups, newly, ungrouped - attached - newly, len(merges))
    return _Plan(ids, groups, update, sums, tried, left, False, merges)


def _group_new(
    db: sqlite3.Connection, ids: np.ndarray, shas: list[str], vectors: np.ndarray, params: Any
) -> tuple[np.ndarray, GroupingUpdate, dict[int, tuple[np.ndarray, int]]]:
    """Group the faces ``ids`` among themselves: ``(group per face: -1, -2, ... new, 0 none; summary;
    sums of the new groups by placeholder)``."""
    from faceid.cluster import group_faces

    groups = np.zeros(len(ids), np.int64)
    if len(ids) < 2:
        return groups, GroupingUpdate(0, 0, 0, len(ids)), {}
    photo_of: dict[str, int] = {}
    photos = np.array([photo_of.setdefault(sha, len(photo_of)) for sha in shas], np.int64)
    pairs = np.array(
        db.execute(
            "SELECT e.face_id, e.other_id FROM face_exclusions e JOIN faces a ON a.id = e.face_id "
            "JOIN faces b ON b.id = e.other_id WHERE a.person_id IS NULL AND b.person_id IS NULL"
        ).fetchall(),
        np.int64,
    ).reshape(-1, 2)
    inside = np.isin(pairs, ids).all(axis=1)
    links = np.searchsorted(ids, pairs[inside])  # face ids -> row indices (ids are sorted)
    grouping = group_faces(np.ascontiguousarray(vectors), photos=photos, cannot_link=links, params=params)
    grouped = grouping.labels >= 0
    groups[grouped] = -(grouping.labels[grouped] + 1)
    from faceid.cluster import GroupCentroids

    centroids = GroupCentroids.from_labels(vectors, grouping.labels)
    sums = {-(g + 1): (centroids.sums[g], int(centroids.sizes[g])) for g in range(grouping.groups)}
    newly = int(grouped.sum())
    return groups, GroupingUpdate(0, grouping.groups, newly, len(ids) - newly), sums


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
