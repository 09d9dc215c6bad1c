"""Move a gallery to another embedding model without enrolling anyone again.

:func:`migrate_gallery` re-embeds every face with the new model's pipeline from the face's chip
(:mod:`faceid.gallery.chips`: the photo around the face, its box and landmarks), or, for a face
enrolled before chips were kept, from its source photo when the file is still there with the
same SHA-256 (the face found again where it was, and its chip kept this time). People, names,
face and person ids, API keys, settings other than the calibrated threshold (which belonged to
the old model), and the audit log all stay; the migration is one more audit entry.

Atomic: the new gallery is built beside the old one (``.NAME.migrating-PID``, a copy of the
database taken as one committed state), then either moved to ``--to DIR`` or exchanged with the
old folder in one ``renameat2(RENAME_EXCHANGE)`` while holding the old gallery's write lock (and
only if nothing changed it meanwhile). A process killed at any moment before leaves the old
gallery as it was and a build folder that the next migration deletes. After an exchange the old
folder's files are overwritten and deleted: no copy of old embeddings, or of anyone removed
later, stays behind.

A face that can be made again from neither its chip nor its photo is reported
(:class:`Unmigrated`); the migration then stops, changing nothing, unless ``drop_unmigrated``,
which removes those faces from the new gallery (each removal in its audit log).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.errors import MigrationError
from faceid.gallery import FaceChip, FaceRecord, Gallery
from faceid.pipeline import Pipeline

__all__ = ["MigrationError", "MigrationReport", "Unmigrated", "migrate_gallery"]

log = logging.getLogger(__name__)

_BATCH = 32


@dataclass(frozen=True)
class Unmigrated:
    """A face that could not be re-embedded: its id, its person (``""``: no one's), and why."""

    face_id: int
    person: str
    reason: str

    def to_json(self) -> dict:
        return {"face_id": self.face_id, "person": self.person, "reason": self.reason}


@dataclass(frozen=True)
class MigrationReport:
    """What :func:`migrate_gallery` did.

    ``from_chips`` and ``from_photos`` count the faces re-embedded each way; ``unmigrated`` are
    the faces that could be neither (removed from the new gallery: the migration only finishes
    with them when asked to drop them); ``threshold_dropped``: a calibrated threshold was removed.
    """

    source: str
    destination: str
    old_key: str
    new_key: str
    faces: int
    from_chips: int
    from_photos: int
    unmigrated: list[Unmigrated] = field(default_factory=list)
    threshold_dropped: bool = False

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "destination": self.destination,
            "old_key": self.old_key,
            "new_key": self.new_key,
            "faces": self.faces,
            "from_chips": self.from_chips,
            "from_photos": self.from_photos,
            "unmigrated": [u.to_json() for u in self.unmigrated],
            "threshold_dropped": self.threshold_dropped,
        }


def migrate_gallery(
    path: str | os.PathLike[str],
    pipeline: Pipeline,
    *,
    to: str | os.PathLike[str] | None = None,
    drop_unmigrated: bool = False,
    timeout: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> MigrationReport:
    """Re-embed the gallery at ``path`` with ``pipeline`` (its key is the new model's), in place or into ``to``.

    ``progress`` is called with the number of faces done after each batch.

    Raises:
        MigrationError: faces could not be re-embedded (and not ``drop_unmigrated``), the gallery
            already uses ``pipeline.key``, has no embeddings, or changed while it was migrated.
        GalleryError: no gallery at ``path``; ``to`` exists.
    """
    target = Path(to) if to is not None else None
    if target is not None and (target.exists() or target.is_symlink()):
        raise MigrationError(f"{target}: already exists; --to takes a new folder")
    if target is not None and not target.parent.is_dir():
        raise MigrationError(f"{target.parent}: no such folder")
    try:
        return _migrate(path, pipeline, target, drop_unmigrated, timeout, progress)
    except OSError as exc:  # a full disk, a read-only folder: the old gallery is as it was
        where = exc.filename or target or path
        raise MigrationError(f"{where}: {exc.strerror or exc}; the gallery was not changed") from None


def _migrate(
    path: str | os.PathLike[str],
    pipeline: Pipeline,
    target: Path | None,
    drop_unmigrated: bool,
    timeout: float,
    progress: Callable[[int], None] | None,
) -> MigrationReport:
    """Copy the gallery into a build folder as a local gallery (:meth:`Gallery.copy_to`), re-embed it
    there, then move it to ``target``, or exchange it with the gallery's own folder."""
    new_key = pipeline.key
    with Gallery(path, create=False, timeout=timeout) as old:
        source = old.folder  # None: a gallery that is not a folder (Milvus), migrated into a new one only
        if target is None and source is None:
            raise MigrationError(
                f"{old.path}: a gallery that is not a folder is migrated into a new folder: pass --to DIR"
            )
        home = target if target is not None else source
        assert home is not None
        for place in {p for p in (source, target) if p is not None}:
            _sweep(place.parent, place.name)
        old_key = _old_key(str(old.path), old.embedding_key, new_key)
        threshold = old.get_setting("threshold") is not None
        build = home.parent / f".{home.name}.migrating-{os.getpid()}"
        try:
            generation = old.copy_to(build)
            report = _rebuild(build, pipeline, old_key, new_key, drop_unmigrated, timeout, progress)
            if target is not None:
                os.rename(build, target)
                destination = target
            else:
                assert source is not None
                with old.exclusive() as now:
                    if now != generation:
                        raise MigrationError(
                            f"{source}: the gallery changed while it was being migrated; nothing was changed, "
                            "run the migration again (stop `faceid serve` and enrolments first)"
                        )
                    _exchange(build, source)
                destination = source
        except BaseException:
            if build.exists():
                _remove(build)
            raise
    if target is None:
        try:
            _remove(build)  # the old gallery, now under the build folder's name
        except OSError as exc:  # the migration stands; the old copy must not be forgotten
            log.warning("%s: the old gallery could not be deleted (%s); delete this folder", build, exc)
    return _report(str(old.path), str(destination), old_key, new_key, report, threshold)


def _old_key(where: str, old_key: EmbeddingKey | None, new_key: EmbeddingKey) -> EmbeddingKey:
    """The gallery's key, if it has faces and another key than ``new_key``; else :class:`MigrationError`."""
    if old_key is None:
        raise MigrationError(f"{where}: no faces to migrate; enrol with --model to start a gallery of another model")
    if old_key == new_key:
        raise MigrationError(f"{where}: its embeddings are already made with {new_key.describe()}")
    return old_key


def _report(
    source: str,
    destination: str,
    old_key: EmbeddingKey,
    new_key: EmbeddingKey,
    rebuilt: tuple[int, int, int, list[Unmigrated]],
    threshold_dropped: bool,
) -> MigrationReport:
    faces, from_chips, from_photos, unmigrated = rebuilt
    return MigrationReport(
        source=source,
        destination=destination,
        old_key=old_key.describe(),
        new_key=new_key.describe(),
        faces=faces,
        from_chips=from_chips,
        from_photos=from_photos,
        unmigrated=unmigrated,
        threshold_dropped=threshold_dropped,
    )


def _rebuild(
    folder: Path,
    pipeline: Pipeline,
    old_key: EmbeddingKey,
    new_key: EmbeddingKey,
    drop_unmigrated: bool,
    timeout: float,
    progress: Callable[[int], None] | None,
) -> tuple[int, int, int, list[Unmigrated]]:
    """Re-embed the copy in ``folder``: ``(faces kept, from chips, from photos, unmigrated)``."""
    with Gallery(folder, create=False, timeout=timeout) as g:
        records = g.face_sources()
        vectors: dict[int, np.ndarray] = {}
        new_chips: dict[int, FaceChip] = {}
        failed: list[Unmigrated] = []
        chipped: list[tuple[FaceRecord, FaceChip]] = []
        others: list[FaceRecord] = []
        for record in records:
            chip = g.face_chip(record.id)
            if chip is not None and chip.margin >= (new_key.crop_margin or 0.0):
                chipped.append((record, chip))
            else:
                others.append(record)
        done = 0
        redetect = old_key.detector != new_key.detector
        for start in range(0, len(chipped), _BATCH):
            batch = chipped[start : start + _BATCH]
            images, detections = [], []
            for record, chip in batch:
                images.append(chip.pixels())
                detections.append([chip.detection(record.confidence)])
            if redetect:  # the new detector's landmarks align the new embeddings: find the face again
                batch, images, detections = _redetect(pipeline, batch, images, new_chips, failed)
            for (record, _), faces in zip(batch, pipeline.embed_many(images, detections)):
                vectors[record.id] = faces[0].embedding
            done += len(batch)
            if progress is not None:
                progress(done)
        from_chips = len(chipped) - len(failed)
        from_photos = 0
        for record in others:
            vector, chip, reason = _from_photo(record, pipeline)
            if vector is None:
                failed.append(Unmigrated(record.id, record.person, reason))
            else:
                vectors[record.id] = vector
                if chip is not None:
                    new_chips[record.id] = chip
                from_photos += 1
            done += 1
            if progress is not None:
                progress(done)
        if failed and not drop_unmigrated:
            raise MigrationError(
                f"{len(failed)} of {len(records)} faces cannot be re-embedded (no chip, and the photo is gone or "
                "changed); nothing was changed. Restore the photos at their paths, or pass --drop-unmigrated "
                "to leave those faces out",
                failed,
            )
        g.replace_embeddings(
            new_key,
            vectors,
            new_chips=new_chips,
            drop=[u.face_id for u in failed],
            reason=f"not migrated from {old_key.model} to {new_key.model}",
        )
    return len(vectors), from_chips, from_photos, failed


def _redetect(
    pipeline: Pipeline,
    batch: list[tuple[FaceRecord, FaceChip]],
    images: list[np.ndarray],
    new_chips: dict[int, FaceChip],
    failed: list[Unmigrated],
) -> tuple[list[tuple[FaceRecord, FaceChip]], list[np.ndarray], list[list]]:
    """For a move to another detector: each chip's face found again by ``pipeline``'s detector (the
    detection overlapping the stored box most, at least half), its chip given the new box and
    landmarks; a chip where it finds no such face goes to ``failed``."""
    from dataclasses import replace

    kept, kept_images, kept_detections = [], [], []
    for (record, chip), image, found in zip(batch, images, pipeline.detect_many(images)):
        best = max(found, key=lambda d: _overlap(d.box, chip.box), default=None)
        if best is None or _overlap(best.box, chip.box) < 0.5:
            reason = f"the {pipeline.detector_name} detector finds no face where its chip's face is"
            failed.append(Unmigrated(record.id, record.person, reason))
            continue
        x, y, w, h = (float(v) for v in best.box)
        new_chips[record.id] = replace(chip, box=(x, y, w, h), landmarks=best.landmarks)
        kept.append((record, chip))
        kept_images.append(image)
        kept_detections.append([best])
    return kept, kept_images, kept_detections


def _from_photo(record: FaceRecord, pipeline: Pipeline) -> tuple[np.ndarray | None, FaceChip | None, str]:
    """The face re-embedded from its source photo: ``(vector, chip, "")``, or ``(None, None, why not)``."""
    from faceid.chips import make_chip
    from faceid.errors import FaceIDError
    from faceid.images import read_image

    if not record.image_path or not os.path.isabs(record.image_path):
        return None, None, "no chip, and no path to its photo (an upload)"
    try:
        image = read_image(record.image_path)
    except (FaceIDError, OSError) as exc:
        return None, None, f"no chip, and its photo cannot be read ({exc})"
    if image.sha256 != record.image_sha256:
        return None, None, f"no chip, and {record.image_path} has changed since it was enrolled"
    found = pipeline.detect_many([image.pixels])[0]
    best = max(found, key=lambda d: _overlap(d.box, record.box), default=None)
    if best is None or _overlap(best.box, record.box) < 0.5:
        return None, None, f"no chip, and the face is no longer found in {record.image_path}"
    vector = pipeline.embed(image.pixels, [best])[0]
    return vector, make_chip(image.pixels, best), ""


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - w * h
    return w * h / union if union > 0 else 0.0


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Where the system cannot, two renames with the old folder set aside in between; a kill between
    them leaves ``b`` missing and the old gallery at ``a``'s name, which the next migration moves back.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(b))
        log.info("renameat2 cannot exchange %s and %s here: two renames", a, b)
    aside = b.parent / f".{b.name}.replaced-{os.getpid()}"
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def _sweep(parent: Path, name: str) -> None:
    """Delete what a killed migration of ``name`` left in ``parent``; put a set-aside gallery back."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(f".{name}.replaced-"):
            if (parent / name).exists():  # killed after the new gallery took its place
                _remove(entry)
            else:
                os.rename(entry, parent / name)
                log.warning("%s: put back the gallery a killed migration had set aside", parent / name)
        elif entry.name.startswith(f".{name}.migrating-") and not _alive(entry.name.rsplit("-", 1)[-1]):
            _remove(entry)


def _alive(pid: str) -> bool:
    """Whether the process that made a build folder still runs (this process has not made one yet)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return int(pid) != os.getpid()


def _remove(folder: Path) -> None:
    """Overwrite and delete every file of a gallery folder, then the folder."""
    from faceid.gallery.deletion import shred

    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.is_file() and not entry.is_symlink():
            shred(entry)
        elif entry.is_dir() and not entry.is_symlink():
            _remove(entry)
        else:
            entry.unlink(missing_ok=True)
    folder.rmdir()
