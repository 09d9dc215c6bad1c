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
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import FaceNotFoundError, GroupNotFoundError, InvalidNameError, PersonNotFoundError
from faceid.gallery.backend import GalleryBackend, Unchanged
from faceid.gallery.people import unit_vectors
from faceid.gallery.records import Group, GroupingUpdate, Kept, Named, NewFace, UnknownFace, n_faces, normalise_name

__all__ = [
    "Group",
    "GroupingUpdate",
    "Kept",
    "Named",
    "UnknownFace",
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

    def not_found(self, name: str) -> PersonNotFoundError: ...


class UnknownFaces:
    """The kept unknown faces of a :class:`~faceid.gallery.Gallery` (its ``unknown`` attribute).

    Every method is one change (reads: one snapshot where the backend has them); errors as the
    gallery's own. The grouping settings are :class:`faceid.cluster.GroupingParams`' defaults
    unless ``params``.
    """

    def __init__(self, gallery: Rules, backend: GalleryBackend, params: Any = None) -> None:
        self._gallery = gallery
        self._b = backend
        self.params = params  # a faceid.cluster.GroupingParams, or None for the defaults

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
        is under ``min_confidence`` are not kept (default :data:`faceid.cluster.MIN_FACE_SIZE`,
        :data:`faceid.cluster.MIN_CONFIDENCE`: small, unsure faces make junk groups). A face
        already in the gallery (same photo SHA-256 and box) is not kept twice. An empty gallery
        takes ``embedding_key`` as its own.

        Raises:
            ModelMismatchError: the gallery's embeddings come from another model or preprocessing.
            ValueError: an embedding has the wrong shape or is not finite and unit-length.
        """
        from faceid.cluster import MIN_CONFIDENCE, MIN_FACE_SIZE, keep_for_grouping

        if not isinstance(embedding_key, EmbeddingKey):
            raise TypeError(f"embedding_key must be an EmbeddingKey, not {type(embedding_key).__name__}")
        b = self._b
        with self._gallery.guard():
            b.require_unknown("keeping unknown faces")
        vectors = unit_vectors(faces, embedding_key.dimension)
        boxes = np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
        keep = keep_for_grouping(
            boxes,
            np.array([f.confidence for f in faces], dtype=np.float64),
            min_size=MIN_FACE_SIZE if min_size is None else min_size,
            min_confidence=MIN_CONFIDENCE if min_confidence is None else min_confidence,
        )
        ids: list[int | None] = [None] * len(faces)
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
                b.audit("keep", None, faces=new)
                b.insert_faces(None, new, [vectors[i] for i in todo], [faces[i] for i in todo], embedding_key.model)
        except Unchanged:
            todo = []
        if group and todo:
            self.update_groups()
        return Kept(tuple(ids), len(todo), int(len(faces) - keep.sum()), duplicates)

    # -- grouping -------------------------------------------------------------------------------

    def update_groups(self, *, leftovers: bool | None = None) -> GroupingUpdate:
        """Place the kept faces that are in no group: each face kept since the last grouping joins an
        existing group when it clearly belongs (:func:`faceid.cluster.attach`); then the faces in no
        group form new groups when enough of them agree (:func:`faceid.cluster.group_faces` over the
        ungrouped faces only). Existing groups stay.

        On a local gallery the cost of attaching follows the new faces, not the gallery (groups'
        embedding sums are cached: :mod:`faceid.gallery.groupsums`), and the faces left over are
        grouped, by default (``leftovers=None``), while they are few
        (:data:`~faceid.gallery.sqlite_grouping.LEFTOVERS_ALWAYS`) or
        when their number grew by a quarter since it last ran; ``True``: now; ``False``: not. A
        Milvus gallery reads every kept face at each step and groups the leftovers every time."""
        return self._grouping(full=False, leftovers=leftovers)

    def regroup(self) -> GroupingUpdate:
        """Group every kept unknown face again from scratch (deterministic: the same faces and
        constraints give the same groups; the groups get new ids, biggest first)."""
        return self._grouping(full=True, leftovers=True)

    def _grouping(self, *, full: bool, leftovers: bool | None) -> GroupingUpdate:
        with self._gallery.guard():
            return self._b.group_faces(full=full, leftovers=leftovers, params=self.params)

    # -- naming and correcting ------------------------------------------------------------------

    def name(self, group_id: int, name: str) -> Named:
        """Make a group's faces the enrolled faces of ``name`` (new, or an existing person), in one
        change; no face is embedded again. The next identification names them.

        A face moved out of that person before, or from a photo the person already has a face
        in, stays unknown (out of the group): :attr:`Named.kept_out`.

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
                if out:
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
        wanted = sorted({int(i) for i in face_ids})
        target = normalise_name(name) if name is not None else None
        b = self._b
        with self._gallery.guard():
            b.require_unknown("moving faces")
            try:
                with b.change():
                    rows = b.face_rows(wanted)
                    missing = sorted(set(wanted) - {r[0] for r in rows})
                    if missing:
                        raise FaceNotFoundError(f"no face with id {missing[0]} in {self._gallery.path}")
                    pid = b.person_id(target) if target is not None else None
                    moved = [r for r in rows if not (pid is not None and r[1] == pid)]
                    if not moved:
                        raise Unchanged
                    moving = sorted(r[0] for r in moved)
                    b.audit("move", target, faces=moving)
                    if target is not None and pid is None:
                        pid = b.add_person(target)
                    rules: list[tuple[int, int, int]] = []
                    for face, person, group in moved:
                        if person is not None:
                            rules.append((face, 0, person))
                        elif group is not None:
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
