"""Frames of a video file or stream, decoded by OpenCV's FFmpeg backend, sampled at a given rate.

One frame is held at a time: a video of any length is read in bounded memory. OpenCV rather than
PyAV: it is already a dependency (no second copy of FFmpeg's libraries), it opens files, HTTP
MJPEG, RTSP and devices through the same call, and decoding the 640x360 sample clip takes
about 1% of the time detection takes (``faceid bench --only video`` prints both), so the decoder's speed
does not matter here. Unsampled frames are only grabbed (demuxed and decoded, not converted).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceid.errors import VideoError

__all__ = ["VIDEO_SUFFIXES", "Frame", "VideoInfo", "VideoReader", "is_stream", "is_video", "split_media"]

log = logging.getLogger(__name__)

#: File endings taken as videos (lower case): in folders, and on the command line.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")

_STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` ends like a video file (see :data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_stream(source: str) -> bool:
    """Whether ``source`` is a network stream address rather than a file or a device."""
    return source.lower().startswith(_STREAM_SCHEMES)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index in the source, its time in seconds and ``(H, W, 3)`` uint8 RGB pixels."""

    index: int
    time: float
    pixels: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frames per second (0 when unknown), frame count (0 when unknown), size."""

    fps: float
    frame_count: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Seconds, from the frame count and rate (0 when either is unknown)."""
        return self.frame_count / self.fps if self.fps > 0 and self.frame_count > 0 else 0.0


class VideoReader:
    """A video file, stream address or device number, opened with OpenCV's FFmpeg backend.

    Raises :class:`~faceid.errors.VideoError` (naming the source and the reason) when the file is
    missing, empty, or nothing FFmpeg can open. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, source: str | os.PathLike[str] | int, *, open_timeout_ms: int = 10_000) -> None:
        import cv2

        self.source = source if isinstance(source, int) else os.fspath(source)
        self.name = str(self.source)
        target: str | int = self.source
        if isinstance(target, str) and target.isdigit():
            target = int(target)  # "0": the first camera
        if isinstance(target, str) and not is_stream(target):
            path = Path(target)
            if not path.exists():
                raise VideoError(f"{self.name}: no such file")
            if path.is_dir():
                raise VideoError(f"{self.name}: is a folder, not a video")
            if path.stat().st_size == 0:
                raise VideoError(f"{self.name}: empty file (0 bytes), not a video")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, open_timeout_ms]
        backend = cv2.CAP_ANY if isinstance(target, int) else cv2.CAP_FFMPEG
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # its warning on a bad file repeats ours
        try:
            self._cap = cv2.VideoCapture(target, backend, params)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoError(f"{self.name}: FFmpeg cannot open it as a video (corrupt, or not a video)")
        self.info = VideoInfo(
            fps=_positive(self._cap.get(cv2.CAP_PROP_FPS)),
            frame_count=int(_positive(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))),
            width=int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.frames_read = 0

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._cap.release()

    def frames(self, fps: float | None = None, *, clock: bool = False) -> Iterator[Frame]:
        """Decoded frames, about ``fps`` a second (every frame for ``None``), until the source ends.

        Times come from the container's frame rate (frame index / rate); with ``clock``, or when
        the rate is unknown, from the wall clock since the first frame (live streams). A frame is
        taken when its time reaches the next sampling instant, so the rate holds whatever the
        source's own. ``frames_read`` counts every frame decoded, taken or not.
        """
        import time

        import cv2

        step = 1.0 / fps if fps else 0.0
        next_time = 0.0
        start: float | None = None
        index = -1
        while True:
            if not self._cap.grab():
                return
            index += 1
            self.frames_read += 1
            if clock or self.info.fps <= 0:
                now = time.monotonic()
                start = now if start is None else start
                t = now - start
            else:
                t = index / self.info.fps
            if t + 1e-9 < next_time:
                continue
            ok, bgr = self._cap.retrieve()
            if not ok or bgr is None:
                log.warning("%s: frame %d could not be decoded; skipped", self.name, index)
                continue
            next_time = max(next_time + step, t) if step else t
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            yield Frame(index, t, np.ascontiguousarray(bgr[:, :, 2::-1]))


def _positive(value: float) -> float:
    """A container property, or 0 when OpenCV reports it as unknown (negative, NaN or infinite)."""
    return float(value) if value == value and 0 < value < 1e9 else 0.0


def split_media(inputs: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[str]]:
    """Files and folders -> ``(photos, videos)``: folders walked as :func:`faceid.batch.iter_image_files`
    walks them, taking photo and video endings; a file named directly is a video if it ends like one."""
    from faceid.batch import iter_image_files
    from faceid.images import IMAGE_SUFFIXES

    photos: list[str] = []
    videos: list[str] = []
    for path in iter_image_files(inputs, suffixes=IMAGE_SUFFIXES | frozenset(VIDEO_SUFFIXES)):
        (videos if is_video(path) else photos).append(path)
    return photos, videos
