"""How long unknown faces kept for review stay, and how many: a bound on what cameras feed in.

``identify --remember``, ``remember=true`` on the API and ``faceid serve --remember-unknown`` keep
every unknown face they see; from cameras that grows without end. A gallery's retention is two
settings, stored in the gallery: ``days`` (faces kept longer ago are forgotten) and ``max_faces``
(beyond it, the oldest are forgotten first). Forgetting is
:meth:`UnknownFaces.forget <faceid.gallery.unknown.UnknownFaces.forget>`: secure, nothing of the
face stays in the gallery's files. :func:`enforce` runs after every keep; ``faceid gallery
retention`` sets the bound and ``faceid gallery stats`` shows it with the disk the gallery uses.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from faceid.errors import OptionError
from faceid.gallery import AnyGallery

__all__ = ["GalleryStats", "Retention", "disk_use", "enforce", "retention_of", "set_retention", "stats"]

log = logging.getLogger(__name__)

_DAYS, _MAX = "unknown_retention_days", "unknown_max_kept"


@dataclass(frozen=True)
class Retention:
    """The bound on kept unknown faces; ``None``: no bound of that kind."""

    days: float | None = None
    max_faces: int | None = None

    def to_json(self) -> dict:
        return {"days": self.days, "max_faces": self.max_faces}


def retention_of(gallery: AnyGallery) -> Retention:
    days, most = gallery.get_setting(_DAYS), gallery.get_setting(_MAX)
    return Retention(
        float(days) if isinstance(days, (int, float)) else None, int(most) if isinstance(most, (int, float)) else None
    )


def set_retention(gallery: AnyGallery, retention: Retention) -> int:
    """Store ``retention`` in the gallery and apply it at once; return how many faces it forgot.

    Raises:
        OptionError: days not above 0, or max_faces below 0.
    """
    if retention.days is not None and not retention.days > 0:
        raise OptionError(f"retention days must be above 0, got {retention.days:g}")
    if retention.max_faces is not None and retention.max_faces < 0:
        raise OptionError(f"the most kept faces must be 0 or more, got {retention.max_faces}")
    gallery.set_setting(_DAYS, retention.days)
    gallery.set_setting(_MAX, retention.max_faces)
    return enforce(gallery)


def enforce(gallery: AnyGallery) -> int:
    """Forget the kept unknown faces the gallery's retention no longer allows (oldest first); return how many."""
    bound = retention_of(gallery)
    gone = 0
    if bound.days is not None:
        gone += gallery.unknown.forget(timedelta(days=bound.days))
    if bound.max_faces is not None and gallery.unknown.count() > bound.max_faces:
        faces = [f for g in gallery.unknown.groups() for f in g.faces] + list(gallery.unknown.ungrouped())
        faces.sort(key=lambda f: (f.created_at, f.id))
        extra = [f.id for f in faces[: len(faces) - bound.max_faces]]
        gone += gallery.unknown.forget(face_ids=extra)
    if gone:
        log.info("retention: forgot %d kept unknown faces of %s", gone, gallery.path)
    return gone


def disk_use(path: str | os.PathLike[str]) -> int | None:
    """Bytes the files under ``path`` take (``None`` where it is not a local folder: a Milvus gallery)."""
    root = Path(path)
    if not root.is_dir():
        return None
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # removed meanwhile
    return total


@dataclass(frozen=True)
class GalleryStats:
    """What a gallery holds and the disk it takes."""

    path: str
    people: int
    faces: int
    kept_unknown: int
    groups: int
    disk_bytes: int | None
    retention: Retention

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "people": self.people,
            "faces": self.faces,
            "kept_unknown": self.kept_unknown,
            "groups": self.groups,
            "disk_bytes": self.disk_bytes,
            "retention": self.retention.to_json(),
        }


def stats(gallery: AnyGallery) -> GalleryStats:
    return GalleryStats(
        path=str(gallery.path),
        people=len(gallery),
        faces=gallery.face_count,
        kept_unknown=gallery.unknown.count(),
        groups=len(gallery.unknown.groups()),
        disk_bytes=disk_use(gallery.path),
        retention=retention_of(gallery),
    )
