"""What video identification hands out: a :class:`VideoResult` per video, a :class:`Track` per
person per appearance. Plain frozen data; similarities are cosine similarities of unit vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Track", "VideoResult"]


@dataclass(frozen=True)
class Track:
    """One face followed across sampled frames, decided once.

    Attributes:
        track: the track's number in its video (1, 2, ... in order of first appearance).
        status: ``"known"``, ``"unknown"`` or ``"ambiguous"``.
        name: the person, for ``"known"`` only.
        similarity: the decided person's similarity (for other tracks the best any person had).
        first, last: seconds from the start of the video of its first and last sampled frame.
        frames: sampled frames it was seen on.
        box: ``(x, y, w, h)`` of the face on its best frame (see :func:`faceid.video.tracker.quality`).
        best_frame: seconds from the start of that frame.
        kept_as: with ``remember``, the id of the kept face; ``kept`` says why not when ``None``.
    """

    track: int
    status: str
    name: str | None
    similarity: float
    first: float
    last: float
    frames: int
    box: tuple[int, int, int, int]
    best_frame: float
    kept_as: int | None = None
    kept: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "track": self.track,
            "name": self.name,
            "status": self.status,
            "similarity": round(self.similarity, 4),
            "first": round(self.first, 3),
            "last": round(self.last, 3),
            "frames": self.frames,
            "box": list(self.box),
            "best_frame": round(self.best_frame, 3),
        }
        if self.kept is not None:
            out["kept"] = self.kept
            out["kept_as"] = self.kept_as
        return out


@dataclass(frozen=True)
class VideoResult:
    """Every track of one video, or why it could not be read (``error``, with no tracks).

    ``duration`` in seconds (of the frames read), ``fps`` the video's own frame rate,
    ``frames_read`` every frame decoded, ``sampled`` those the faces were looked for on,
    ``failed_frames`` sampled frames the face pipeline failed on (logged, not silently skipped),
    ``annotated`` the annotated video's path with ``annotate_dir``.
    """

    video: str
    duration: float
    fps: float
    frames_read: int
    tracks: tuple[Track, ...]
    error: str | None = None
    sampled: int = 0
    failed_frames: int = 0
    annotated: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The documented JSON object (docs/video.md): exactly these keys."""
        return {
            "video": self.video,
            "duration": round(self.duration, 3),
            "fps": round(self.fps, 3),
            "frames_read": self.frames_read,
            "tracks": [t.to_json() for t in self.tracks],
            "error": self.error,
        }
