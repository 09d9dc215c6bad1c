"""Annotated videos: every frame with its faces boxed, labelled with the track's number and decision.

The codec is the first one the installed OpenCV really encodes, probed by writing a few frames:
H.264 in MP4 (``avc1``) where the FFmpeg build has an H.264 encoder, else VP8 in WebM (``VP80``),
else VP9 (``VP90``); browsers play all three. The wheels of ``opencv-python-headless`` carry no
H.264 encoder (a licensing choice of their build), so WebM is what a pip install writes.
The file is written beside its target and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from faceid.errors import VideoError
from faceid.video.reader import VideoReader
from faceid.video.results import VideoResult

__all__ = ["CODECS", "pick_codec", "write_annotated"]

log = logging.getLogger(__name__)

#: (fourcc, file ending), in order of preference.
CODECS = (("avc1", ".mp4"), ("VP80", ".webm"), ("VP90", ".webm"))

_COLOURS = {"known": (40, 200, 80), "ambiguous": (255, 170, 0), "unknown": (230, 40, 40)}  # RGB, as faceid.draw


@functools.lru_cache(maxsize=1)
def pick_codec() -> tuple[str, str]:
    """The first of :data:`CODECS` that this OpenCV writes a non-empty file with.

    Raises:
        VideoError: none works.
    """
    import cv2

    with tempfile.TemporaryDirectory() as tmp, _quiet_stderr():
        for fourcc, ending in CODECS:
            path = os.path.join(tmp, "probe" + ending)
            writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*fourcc), 10, (64, 48))
            try:
                if not writer.isOpened():
                    continue
                for i in range(3):
                    writer.write(np.full((48, 64, 3), 60 * i, np.uint8))
            finally:
                writer.release()
            if os.path.exists(path) and os.path.getsize(path) > 0:
                return fourcc, ending
    raise VideoError("no video encoder found in this OpenCV (tried H.264/MP4, VP8/WebM, VP9/WebM)")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hide what FFmpeg and OpenCV print on the process's stderr while encoders are tried (a missing
    H.264 encoder prints several lines of errors there, from C code that Python's logging cannot reach)."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        cv2.utils.logging.setLogLevel(level)


def write_annotated(
    source: str,
    result: VideoResult,
    placements: dict[int, list[tuple[int, tuple[int, int, int, int]]]],
    out_dir: str | os.PathLike[str],
) -> Path:
    """Write ``source`` again into ``out_dir`` with the boxes of ``placements`` (frame index -> the
    ``(track, box)`` pairs placed on that sampled frame) labelled with ``result``'s decisions; a
    frame between samples shows the last sample's boxes. Returns the written path.
    """
    import cv2

    fourcc, ending = pick_codec()
    quiet = _quiet_stderr() if fourcc != "avc1" else contextlib.nullcontext()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (Path(source).stem + ending)
    labels = {t.track: _label(t.track, t.status, t.name, t.similarity) for t in result.tracks}
    colours = {t.track: _COLOURS.get(t.status, _COLOURS["unknown"])[::-1] for t in result.tracks}  # BGR
    fd, tmp = tempfile.mkstemp(suffix=ending, dir=out_dir, prefix=".annotating-")
    os.close(fd)
    try:
        with VideoReader(source) as reader:
            fps = reader.info.fps or 25.0
            with quiet:  # FFmpeg warns that WebM stores the VP8 tag its own way
                size = (reader.info.width, reader.info.height)
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter.fourcc(*fourcc), fps, size)
            try:
                current: list[tuple[int, tuple[int, int, int, int]]] = []
                for frame in reader.frames(None):
                    current = placements.get(frame.index, current)
                    bgr = np.ascontiguousarray(frame.pixels[:, :, ::-1])
                    for track, box in current:
                        _draw(bgr, box, labels.get(track, f"#{track}"), colours.get(track, (40, 40, 230)))
                    writer.write(bgr)
            finally:
                writer.release()
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _label(track: int, status: str, name: str | None, similarity: float) -> str:
    who = name if status == "known" else status
    return f"#{track} {who} ({similarity:.2f})"


def _draw(bgr: np.ndarray, box: tuple[int, int, int, int], text: str, colour: tuple[int, int, int]) -> None:
    import cv2

    x, y, w, h = box
    line = max(1, round(min(bgr.shape[:2]) / 300))
    cv2.rectangle(bgr, (x, y), (x + w, y + h), colour, line)
    scale = max(0.4, min(bgr.shape[:2]) / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    top = y - th - base - 2 if y - th - base - 2 >= 0 else y + h
    left = min(max(0, x), max(0, bgr.shape[1] - tw - 2))
    cv2.rectangle(bgr, (left, top), (left + tw + 2, top + th + base + 2), colour, -1)
    cv2.putText(bgr, text, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
