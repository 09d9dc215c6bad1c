"""Kept unknown faces: stored beside enrolled ones, grouped into likely people, named, corrected.

``faceid identify --remember`` keeps the faces it calls unknown (:meth:`UnknownFaces.keep`): a
face with no person, with its embedding, thumbnail, source path and SHA-256, box, detection
confidence and time, so naming or moving a face keeps its id. A kept face is never matched: the
search holds enrolled faces only.

Kept faces are grouped (:mod:`faceid.cluster`): new ones attach to an existing group when they
clearly belong, and faces left over form new groups when enough of them agree
(:meth:`UnknownFaces.update_groups`), without grouping everything again; :meth:`~UnknownFaces.regroup`
groups every kept face again, deterministically. How a step reads the faces is the backend's
(:meth:`GalleryBackend.group_faces <faceid.gallery.backend.GalleryBackend.group_faces>`). What is
known constrains the grouping:

- two faces of one photo (one SHA-256) are never grouped together, nor named as one person;
- a face the user moved out of a group is never grouped with that group's faces again, and a
  face moved out of a person never named as them again (the exclusions); naming a group into
  that person leaves such a face unknown, and says so (:attr:`Named.kept_out`);
- named faces are not grouped: only faces without a person are.

Every rule here is written once, over the :class:`~faceid.gallery.backend.GalleryBackend` of the
gallery; each method is one change (:meth:`~faceid.gallery.backend.GalleryBackend.change`) with its
audit entry. Group ids come from a counter that only grows, so an id shown before a re-grouping
never names another group.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import (
    FaceNotFoundError,
    GroupNotFoundError,
    InvalidNameError,
    PersonNotFoundError,
    UncalibratedError,
)
from faceid.gallery import intents
from faceid.gallery.backend import GalleryBackend, Unchanged
from faceid.gallery.people import unit_vectors
from faceid.gallery.records import Group, GroupingUpdate, Kept, Named, NewFace, UnknownFace, n_faces, normalise_name

__all__ = [
    "Group",
    "GroupingUpdate",
    "Kept",
    "Named",
    "UnknownFace",
    "Suggestion",
    "UnknownFaces",
    "barred_from",
]

log = logging.getLogger(__name__)


class Rules(Protocol):
    """What the kept faces' rules use of the gallery's own (:class:`faceid.gallery.Gallery`)."""

    path: Any

    def guard(self) -> AbstractContextManager[None]: ...

    def check_embedding_key(self, key: EmbeddingKey) -> EmbeddingKey | None: ...

    def adopt_embedding_key(self, key: EmbeddingKey) -> None: ...

    @property
    def embedding_key(self) -> EmbeddingKey | None: ...

    def not_found(self, name: str) -> PersonNotFoundError: ...


@dataclass(frozen=True)
class Suggestion:
    """A kept unknown face whose best match is an enrolled ``person`` at ``similarity`` (cosine),
    above the model's suggest bar (:data:`faceid.thresholds.GROUPING`)."""

    face: UnknownFace
    person: str
    similarity: float


class UnknownFaces:
    """The kept unknown faces of a :class:`~faceid.gallery.Gallery` (its ``unknown`` attribute).

    Every method is one change (reads: one snapshot where the backend has them); errors as the
    gallery's own. The grouping settings are those measured for the gallery's embedding key
    (:func:`faceid.cluster.params_for`) unless ``params``.
    """

    def __init__(self, gallery: Rules, backend: GalleryBackend, params: Any = None) -> None:
        self._gallery = gallery
        self._b = backend
        self.params = params  # a faceid.cluster.GroupingParams, or None for the gallery's model's
        self._key: EmbeddingKey | None = None

    # -- reading --------------------------------------------------------------------------------

    def count(self) -> int:
        """How many kept unknown faces the gallery holds."""
        with self._gallery.guard():
            return self._b.unknown_count()

    def groups(self) -> list[Group]:
        """Every group of kept unknown faces, biggest first (ties: smaller id first)."""
        with self._gallery.guard():
            faces = self._b.unknown_faces(grouped=True)
        by_group: dict[int, list[UnknownFace]] = {}
        for face in faces:
            assert face.group is not None
            by_group.setdefault(face.group, []).append(face)
        return sorted((Group(g, tuple(f)) for g, f in by_group.items()), key=lambda g: (-g.size, g.id))

    def group(self, group_id: int) -> Group:
        """One group; :class:`GroupNotFoundError` if there is none of that id."""
        with self._gallery.guard():
            faces = self._b.unknown_faces(group=int(group_id)) if int(group_id) else []
        if not faces:
            raise self._no_group(group_id)
        return Group(int(group_id), tuple(faces))

    def ungrouped(self) -> list[UnknownFace]:
        """Kept unknown faces in no group (yet), by id."""
        with self._gallery.guard():
            return self._b.unknown_faces(grouped=False)

    def _no_group(self, group_id: int) -> GroupNotFoundError:
        return GroupNotFoundError(
            f"no group {int(group_id)} of unknown faces in {self._gallery.path} (see `faceid clusters`)"
        )

    # -- keeping --------------------------------------------------------------------------------

    def keep(
        self,
        faces: Sequence[NewFace],
        *,
        embedding_key: EmbeddingKey,
        group: bool = True,
        min_size: float | None = None,
        min_confidence: float | None = None,
    ) -> Kept:
        """Keep unknown ``faces`` in one change (never matched as anyone); then, with ``group``,
        :meth:`update_groups`.

        Faces whose box's shorter side is under ``min_size`` pixels or whose detection confidence
        is under ``min_confidence`` are not kept (default: measured per model,
        :func:`faceid.cluster.keep_filters`: small, unsure faces make junk groups), each with its
        reason (:attr:`Kept.reasons`). A face
        already in the gallery (same photo SHA-256 and box) is not kept twice. An empty gallery
        takes ``embedding_key`` as its own.

        Raises:
            ModelMismatchError: the gallery's embeddings come from another model or preprocessing.
            ValueError: an embedding has the wrong shape or is not finite and unit-length.
        """
        from faceid.cluster import keep_filters, keep_for_grouping, not_kept_reasons

        if not isinstance(embedding_key, EmbeddingKey):
            raise TypeError(f"embedding_key must be an EmbeddingKey, not {type(embedding_key).__name__}")
        b = self._b
        with self._gallery.guard():
            b.require_unknown("keeping unknown faces")
        vectors = unit_vectors(faces, embedding_key.dimension)
        boxes = np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
        try:
            min_size, min_confidence = keep_filters(embedding_key, min_size, min_confidence)
        except UncalibratedError:
            with self._gallery.guard():
                self._gallery.check_embedding_key(embedding_key)  # another model's faces: that error first
            raise
        boxes_conf = (boxes, np.array([f.confidence for f in faces], dtype=np.float64))
        keep = keep_for_grouping(*boxes_conf, min_size=min_size, min_confidence=min_confidence)
        reasons = tuple(not_kept_reasons(*boxes_conf, min_size=min_size, min_confidence=min_confidence))
        ids: list[int | None] = [None] * len(faces)
        before = [False] * len(faces)
        wanted = np.flatnonzero(keep).tolist()
        todo: list[int] = []
        duplicates = 0
        try:
            with self._gallery.guard(), b.change():
                mine = self._gallery.check_embedding_key(embedding_key)
                spots = [(faces[i].image_sha256, _box(faces[i].box)) for i in wanted]
                known = b.kept_at(spots) if spots else {}
                for i, spot in zip(wanted, spots):
                    if spot in known:
                        ids[i] = known[spot]
                        before[i] = True
                        duplicates += 1
                    else:
                        todo.append(i)
                if not todo:
                    raise Unchanged
                if mine is None:
                    self._gallery.adopt_embedding_key(embedding_key)
                new = b.new_face_ids(len(todo))
                for i, face_id in zip(todo, new):
                    ids[i] = face_id
                intents.begin(b, "keep", None, False, new)  # settled at the next open if a kill stops the keep
                b.audit("keep", None, faces=new)
                b.insert_faces(None, new, [vectors[i] for i in todo], [faces[i] for i in todo], embedding_key.model)
                intents.end(b)
        except Unchanged:
            todo = []
        if group and todo:
            self.update_groups()
        if todo or duplicates:
            self._key = embedding_key  # the gallery's, now (checked in the change)
        return Kept(tuple(ids), len(todo), int(len(faces) - keep.sum()), duplicates, reasons, tuple(before))

    # -- grouping -------------------------------------------------------------------------------

    def update_groups(self, *, leftovers: bool | None = None) -> GroupingUpdate:
        """Place the kept faces that are in no group, going on from the existing groups as one run
        over every face would (:func:`faceid.cluster.incremental.settle`): a face joins a group
        when they are each other's best candidate above the bar, faces form new groups, and groups
        whose average link clears the bar merge (a face between two groups of one person helps
        merge them).

        On a local gallery the cost of attaching follows the new faces, not the gallery (groups'
        embedding sums are cached: :mod:`faceid.gallery.groupsums`), and the faces left over are
        grouped, by default (``leftovers=None``), while they are few
        (:data:`~faceid.gallery.sqlite_grouping.LEFTOVERS_ALWAYS`) or
        when their number grew by a quarter since it last ran, or when the step brings at least as
        many new faces as are waiting; ``True``: now; ``False``: not. A
        Milvus gallery reads every kept face at each step and groups the leftovers every time."""
        return self._grouping(full=False, leftovers=leftovers)

    def regroup(self) -> GroupingUpdate:
        """Group every kept unknown face again from scratch (deterministic: the same faces and
        constraints give the same groups; the groups get new ids, biggest first)."""
        return self._grouping(full=True, leftovers=True)

    def _grouping(self, *, full: bool, leftovers: bool | None) -> GroupingUpdate:
        with self._gallery.guard():
            return self._b.group_faces(full=full, leftovers=leftovers, params=self._settings())

    def _settings(self) -> Any:
        """The grouping settings: ``params``, else those measured for the gallery's embedding key
        (:func:`faceid.cluster.params_for`; ``None`` while the gallery has no key: nothing to group)."""
        from faceid.cluster import params_for

        if self.params is not None:
            return self.params
        if self._key is None:  # a gallery's key never changes once it has one: read it once
            self._key = self._gallery.embedding_key
        return params_for(self._key) if self._key is not None else None

    # -- naming and correcting ------------------------------------------------------------------

    def name(self, group_id: int, name: str) -> Named:
        """Make a group's faces the enrolled faces of ``name`` (new, or an existing person), in one
        change; no face is embedded again. The next identification names them.

        A face moved out of that person before, or from a photo the person already has a face
        in, stays unknown (out of the group): :attr:`Named.kept_out`. When that is every face of
        the group, the group stays as it is.

        Raises:
            GroupNotFoundError: there is no such group (named already, or grouped again).
            InvalidNameError: the name is not acceptable.
        """
        name = normalise_name(name)
        gid = int(group_id)
        b = self._b
        with self._gallery.guard():
            b.require_unknown("naming a group")
            with b.change():
                members = [f.id for f in b.unknown_faces(group=gid)] if gid else []
                if not members:
                    raise self._no_group(gid)
                pid = b.person_id(name)
                out = sorted(barred_from(b, pid, members)) if pid is not None else []
                named = sorted(set(members) - set(out))
                created = pid is None and bool(named)
                b.audit("name", name, faces=named, group=gid, new_person=created)
                if pid is None and named:
                    pid = b.add_person(name)
                if named:
                    b.set_faces(named, person=pid, group=None)
                if out and named:  # every face barred: the group stays as it is
                    b.set_faces(out, group=None)
        return Named(name, tuple(named), tuple(out), created)

    def move(self, face_ids: Sequence[int], name: str | None) -> list[int]:
        """Move faces (enrolled or kept unknown) to the person ``name`` (created if new), or with
        ``None`` back to unknown (in no group); return the ids moved.

        The move is remembered: a face moved out of a person is never named as them again by
        naming a group, and a face moved out of a group is never grouped with its faces again.
        Moving a face to a person explicitly lifts a former exclusion from them. A face leaving
        the enrolled faces leaves the search at once.

        Raises:
            FaceNotFoundError: a face id is not in the gallery.
            InvalidNameError: the name is not acceptable.
        """
        return self._move(face_ids, normalise_name(name) if name is not None else None, accepting=False)

    def accept(self, face_ids: Sequence[int], name: str) -> list[int]:
        """Say kept faces are ``name``, an enrolled person (the answer "yes" to a suggestion): they
        become that person's enrolled faces, as :meth:`move` makes them, but their group's other
        faces are not barred from them (a yes about one face says nothing against its group).

        Raises:
            PersonNotFoundError: ``name`` is nobody in the gallery.
            FaceNotFoundError: a face id is not a kept unknown face.
        """
        return self._move(face_ids, normalise_name(name), accepting=True)

    def _move(self, face_ids: Sequence[int], target: str | None, *, accepting: bool) -> list[int]:
        wanted = sorted({int(i) for i in face_ids})
        b = self._b
        with self._gallery.guard():
            b.require_unknown("moving faces")
            try:
                with b.change():
                    rows = b.face_rows(wanted)
                    missing = sorted(set(wanted) - {r[0] for r in rows if not (accepting and r[1] is not None)})
                    if missing:
                        what = "kept unknown face" if accepting else "face"
                        raise FaceNotFoundError(f"no {what} with id {missing[0]} in {self._gallery.path}")
                    pid = b.person_id(target) if target is not None else None
                    if accepting and pid is None:
                        raise self._gallery.not_found(str(target))
                    moved = [r for r in rows if not (pid is not None and r[1] == pid)]
                    if not moved:
                        raise Unchanged
                    moving = sorted(r[0] for r in moved)
                    if accepting:  # a move (the log replays it as one), said to be the answer to a suggestion
                        b.audit("move", target, faces=moving, accepted=True)
                    else:
                        b.audit("move", target, faces=moving)
                    if target is not None and pid is None:
                        pid = b.add_person(target)
                    rules: list[tuple[int, int, int]] = []
                    for face, person, group in moved:
                        if person is not None:
                            rules.append((face, 0, person))
                        elif group is not None and not accepting:
                            others = [f.id for f in b.unknown_faces(group=group)]
                            rules += [(min(face, o), max(face, o), 0) for o in others if o not in moving]
                    b.exclude(rules)
                    if pid is not None:
                        b.unexclude(moving, pid)
                    b.set_faces(moving, person=pid, group=None)
            except Unchanged:  # nothing to move: no new generation
                return []
        return moving

    def merge(self, source: str, target: str) -> int:
        """Merge person ``source`` into ``target`` (two names for one person): ``source``'s faces become
        ``target``'s and ``source`` is no more; return how many faces moved.

        Raises:
            PersonNotFoundError: either is not enrolled.
            InvalidNameError: they are the same person.
        """
        src_name, dst_name = normalise_name(source), normalise_name(target)
        b = self._b
        with self._gallery.guard(), b.change():
            src, dst = b.person_id(src_name), b.person_id(dst_name)
            for pid, who in ((src, src_name), (dst, dst_name)):
                if pid is None:
                    raise self._gallery.not_found(who)
            assert src is not None and dst is not None
            if src == dst:
                raise InvalidNameError(f"{src_name!r} and {dst_name!r} are the same person")
            faces = b.face_ids_of(src)
            b.audit("merge", dst_name, source=src_name, faces=faces)
            b.set_faces(faces, person=dst)
            b.move_exclusions(src, dst)  # who was moved out of either stays out of the merged person
            b.delete_people([src], erase=False)  # no face of theirs is left to erase
        return len(faces)

    def suggestions(self, name: str | None = None) -> list[Suggestion]:
        """Kept unknown faces whose best match among the enrolled faces is a person (``name``, or
        anyone) at or above the model's suggest bar, best first; faces barred from that person
        (moved out of them, rejected, or from a photo of theirs) are not offered.

        Raises:
            PersonNotFoundError: ``name`` is nobody in the gallery.
            UncalibratedError: the gallery's model has no measured suggest bar.
        """
        from faceid.grouping_thresholds import grouping_numbers

        key = self._gallery.embedding_key
        with self._gallery.guard():
            if name is not None and self._b.person_id(normalise_name(name)) is None:
                raise self._gallery.not_found(name)
            faces = self._b.unknown_faces() if key is not None else []
            if not faces or key is None:
                return []
            bar = grouping_numbers(key).suggest
            scores, ids = self._b.search(self._b.unknown_embeddings(key.dimension), 1)
            hit = np.flatnonzero((ids[:, 0] >= 0) & (scores[:, 0] >= bar))
            owners = self._b.face_owners([int(ids[i, 0]) for i in hit])
            wanted = normalise_name(name).casefold() if name is not None else None
            offers: dict[str, list[Suggestion]] = {}
            for i in hit.tolist():
                person = owners.get(int(ids[i, 0]))
                if person is not None and (wanted is None or person.casefold() == wanted):
                    offers.setdefault(person, []).append(Suggestion(faces[i], person, float(scores[i, 0])))
            out = []
            for person, offered in offers.items():
                pid = self._b.person_id(person)
                barred = barred_from(self._b, pid, [o.face.id for o in offered]) if pid is not None else set()
                out += [o for o in offered if o.face.id not in barred]
        return sorted(out, key=lambda o: (-o.similarity, o.face.id))

    def reject(self, face_ids: Sequence[int], name: str) -> list[int]:
        """Say kept faces are not ``name``: remembered as a move out of them is (never offered or
        named as them again). Returns the ids.

        Raises:
            PersonNotFoundError: ``name`` is nobody in the gallery.
            FaceNotFoundError: a face id is not a kept unknown face.
        """
        wanted = sorted({int(i) for i in face_ids})
        with self._gallery.guard():
            pid = self._b.person_id(normalise_name(name))
            if pid is None:
                raise self._gallery.not_found(name)
            with self._b.change():
                kept = {f.id for f in self._b.unknown_faces()}
                missing = [f for f in wanted if f not in kept]
                if missing:
                    raise FaceNotFoundError(f"no kept unknown face with id {missing[0]} in {self._gallery.path}")
                self._b.exclude([(f, 0, pid) for f in wanted])
                self._b.audit("reject", normalise_name(name), faces=wanted)
        return wanted

    def forget(self, older_than: timedelta | None = None, *, face_ids: Sequence[int] | None = None) -> int:
        """Delete kept unknown faces (all, those kept longer ago than ``older_than``, or those of
        ``face_ids``) securely, as :meth:`Gallery.remove <faceid.gallery.Gallery.remove>` does: nothing
        of them (embedding, thumbnail, path, hash) stays in the gallery's files. Return how many went.
        Enrolled faces among ``face_ids`` are left alone (remove them with ``remove_face``)."""
        cutoff = None
        if older_than is not None:
            cutoff = (datetime.now(timezone.utc) - older_than).isoformat(timespec="milliseconds")
        b = self._b
        with self._gallery.guard():
            try:
                with b.change():
                    ids = b.unknown_before(cutoff)
                    if face_ids is not None:
                        ids = sorted(set(ids) & {int(i) for i in face_ids})
                    if not ids:
                        raise Unchanged
                    b.audit("forget", None, faces=len(ids))
                    b.delete_faces(ids)
            except Unchanged:
                return 0
            b.erased(
                f"a batch of {n_faces(len(ids))} forgotten", np.zeros(0, np.int64), compact=True
            )  # never in the search
        return len(ids)


def _box(box: Sequence[int]) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in box)
    return (x, y, w, h)


def barred_from(b: GalleryBackend, person: int, faces: Sequence[int]) -> set[int]:
    """Which of ``faces`` must not become ``person``'s: moved out of them (or out of a group with one
    of their faces), or from a photo they already have a face in."""
    theirs = b.face_ids_of(person)
    mine = set(theirs)
    barred: set[int] = set()
    for face, other, who in b.exclusions(faces=[*faces, *theirs], person=person):
        if who == person or (other and other in mine):
            barred.add(face)
        if other and face in mine:
            barred.add(other)
    their_photos = set(b.photos_of(theirs).values())
    barred |= {face for face, photo in b.photos_of(faces).items() if photo in their_photos}
    return barred & {int(f) for f in faces}
