"""Enrolment: add a person's faces to the gallery from their photos.

Each photo must show exactly one face, or the caller asks for the largest one. A photo already
enrolled (same SHA-256) is not added again. Every photo gets an :class:`EnrollResult`; the good
ones of a person are added in one transaction, so a crash adds all of them or none.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from faceid.batch import Processed, iter_image_files, process
from faceid.embedding_key import EmbeddingKey
from faceid.errors import InvalidNameError
from faceid.gallery import AnyGallery, NewFace, normalise_name
from faceid.pipeline import Pipeline

__all__ = [
    "ADDED",
    "DUPLICATE",
    "FAILED",
    "EnrollResult",
    "enroll",
    "enroll_folders",
    "enroll_processed",
    "enrolment_key",
    "people_folders",
    "stored_name",
]

log = logging.getLogger(__name__)

ADDED, DUPLICATE, FAILED = "added", "duplicate", "failed"


@dataclass(frozen=True)
class EnrollResult:
    """What happened to one photo: ``status`` is ``"added"``, ``"duplicate"`` or ``"failed"``."""

    image: str
    person: str
    status: str
    message: str
    face_id: int | None = None
    box: tuple[int, int, int, int] | None = None
    #: the person did not exist before this enrolment (``person`` is then the name as given;
    #: otherwise it is the stored name, which may differ in case from the one given)
    new_person: bool = False

    @property
    def ok(self) -> bool:
        return self.status != FAILED

    def to_json(self) -> dict:
        return {
            "image": self.image,
            "person": self.person,
            "status": self.status,
            "message": self.message,
            "face_id": self.face_id,
            "box": list(self.box) if self.box else None,
            "new_person": self.new_person,
        }


def enrolment_key(
    gallery: AnyGallery, *, model: str | None = None, mirror: bool | None = None, detector: str | None = None
) -> EmbeddingKey:
    """The embedding key to enrol into ``gallery`` with: the gallery's own, or for a new gallery faceid's
    defaults with ``model``, ``mirror`` and ``detector`` where given.

    Raises:
        ModelMismatchError: ``model``, ``mirror`` or ``detector`` disagree with the gallery's embeddings.
    """
    mine = gallery.embedding_key
    if mine is None:
        return EmbeddingKey.for_model(model, mirror=bool(mirror), detector=detector)
    wanted = EmbeddingKey.for_model(
        model or mine.model,
        align=mine.align,
        crop_margin=mine.crop_margin,
        mirror=mine.mirror if mirror is None else mirror,
        detector=detector or mine.detector,
    )
    gallery.check_embedding_key(wanted)
    return mine


def enroll(
    gallery: AnyGallery,
    name: str,
    images: Sequence[str | os.PathLike],
    pipeline: Pipeline | None = None,
    *,
    largest: bool = False,
    progress: Callable[[Processed], None] | None = None,
    runner: Callable[..., Iterator[Processed]] | None = None,
) -> list[EnrollResult]:
    """Enrol ``name`` from ``images`` (files or folders of photos); return one result per photo.

    ``progress`` is called after each photo is read and its faces found. ``runner`` replaces
    :func:`faceid.batch.process` (:class:`faceid.distributed.RayRunner`: on a Ray cluster).

    Raises:
        InvalidNameError: the name is not acceptable.
        ModelMismatchError: the gallery was built with another model or preprocessing.
    """
    name = normalise_name(name)
    pipeline = pipeline if pipeline is not None else Pipeline.from_key(gallery.embedding_key)
    gallery.check_embedding_key(pipeline.key)
    items = (runner or process)(list(iter_image_files(images)), pipeline, on_done=progress)
    return enroll_processed(gallery, name, items, pipeline.key, largest=largest)


def enroll_processed(
    gallery: AnyGallery,
    name: str,
    items: Iterable[Processed],
    embedding_key: EmbeddingKey,
    *,
    largest: bool = False,
    paths: bool = True,
) -> list[EnrollResult]:
    """Enrol ``name`` from photos already read and their faces found (the server's uploads).

    The same rules, statuses and messages as :func:`enroll`. With ``paths=False`` the sources
    are names of uploaded files, kept as they are rather than as absolute paths.
    """
    name, new = stored_name(gallery, name)
    gallery.check_embedding_key(embedding_key)
    results: list[EnrollResult] = []
    staged: list[tuple[int, NewFace]] = []
    seen: dict[str, str] = {}
    for item in items:
        result, face = _judge(item, name, gallery, seen, largest, paths)
        results.append(result)
        if face is not None:
            staged.append((len(results) - 1, face))
    if staged:
        # The duplicate test above is repeated inside the transaction: another process may have
        # enrolled the same photo meanwhile, and a photo must land exactly once.
        ids = gallery.add_faces(name, [face for _, face in staged], embedding_key=embedding_key, skip_known_images=True)
        for (position, face), face_id in zip(staged, ids):
            before = results[position]
            if face_id is None:
                owners = ", ".join(gallery.find_image(face.image_sha256)) or "someone else"
                message = f"{before.image}: already enrolled for {owners}; not added again"
                results[position] = EnrollResult(before.image, name, DUPLICATE, message)
            else:
                results[position] = EnrollResult(before.image, name, ADDED, before.message, face_id, before.box)
    return [dataclasses.replace(r, new_person=new) for r in results]


def stored_name(gallery: AnyGallery, name: str) -> tuple[str, bool]:
    """``(the enrolled person name refers to, False)``, or ``(name, True)`` for a new person. The
    gallery's own rule decides (names that differ only in case are one person), so ``sheldon``
    enrolled when ``Sheldon`` exists goes to, and is reported as, ``Sheldon``."""
    from faceid.errors import PersonNotFoundError

    name = normalise_name(name)
    try:
        return gallery.person(name).name, False
    except PersonNotFoundError:
        return name, True


def _judge(
    item: Processed, name: str, gallery: AnyGallery, seen: dict[str, str], largest: bool, paths: bool = True
) -> tuple[EnrollResult, NewFace | None]:
    from faceid.chips import make_chip
    from faceid.draw import face_thumbnail

    if item.error is not None or item.image is None:
        return EnrollResult(item.source, name, FAILED, item.error or "unreadable"), None
    sha = item.image.sha256
    owners = gallery.find_image(sha)
    if owners or sha in seen:
        who = ", ".join(owners) if owners else name
        where = f"already enrolled for {who}" if owners else f"same photo as {seen[sha]}"
        return EnrollResult(item.source, name, DUPLICATE, f"{item.source}: {where}; not added again"), None
    faces = item.faces
    if not faces:
        return EnrollResult(item.source, name, FAILED, f"{item.source}: no face found"), None
    if len(faces) > 1 and not largest:
        return (
            EnrollResult(
                item.source,
                name,
                FAILED,
                f"{item.source}: {len(faces)} faces found; crop the photo to one face, "
                "or pass --largest to take the largest",
            ),
            None,
        )
    face = max(faces, key=lambda f: f.detection.area)
    seen[sha] = item.source
    detection = face.detection
    note = f"{item.source}: face at {list(detection.box)}" + (f" (largest of {len(faces)})" if len(faces) > 1 else "")
    new = NewFace(
        embedding=face.embedding,
        image_sha256=sha,
        box=detection.box,
        confidence=detection.confidence,
        image_path=os.path.abspath(item.source) if paths else item.source,
        thumbnail=face_thumbnail(item.image.pixels, detection.box),
        chip=make_chip(item.image.pixels, detection),
    )
    return EnrollResult(item.source, name, "pending", note, None, detection.box), new


def people_folders(root: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(name, folder)`` for each subfolder of ``root`` (one per person, named after them), sorted."""
    from faceid.errors import FaceIDError

    root = Path(root)
    try:
        if not root.is_dir():
            raise FaceIDError(f"{root}: not a folder")
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise FaceIDError(f"{root}: cannot list ({exc.strerror or exc})") from None
    return [(entry.name, entry) for entry in entries if entry.is_dir() and not entry.name.startswith(".")]


def enroll_folders(
    gallery: AnyGallery,
    root: str | os.PathLike,
    pipeline: Pipeline | None = None,
    *,
    largest: bool = False,
    progress: Callable[[Processed], None] | None = None,
    runner: Callable[..., Iterator[Processed]] | None = None,
) -> list[EnrollResult]:
    """Enrol everyone in ``root``: one subfolder per person, named after them.

    A folder whose name is not an acceptable person name is reported as failed and skipped. The
    photos of all the people go through the pipeline as one run (``runner``: see :func:`enroll`),
    and each person is added to the gallery as soon as their photos are done.
    """
    pipeline = pipeline if pipeline is not None else Pipeline.from_key(gallery.embedding_key)
    gallery.check_embedding_key(pipeline.key)
    people: list[tuple[str, Path, list[str] | str]] = []  # photos, or why the folder's name was refused
    for name, folder in people_folders(root):
        try:
            normalise_name(name)
        except InvalidNameError as exc:
            people.append((name, folder, f"{folder}: {exc}"))
            continue
        people.append((name, folder, list(iter_image_files([folder]))))
    everyone = [photo for _, _, photos in people if isinstance(photos, list) for photo in photos]
    items = iter((runner or process)(everyone, pipeline, on_done=progress))
    results = []
    for name, folder, photos in people:
        if isinstance(photos, str):
            results.append(EnrollResult(str(folder), name, FAILED, photos))
            continue
        mine = list(itertools.islice(items, len(photos)))
        results.extend(enroll_processed(gallery, name, mine, pipeline.key, largest=largest))
    return results
