"""Short videos on ``POST /v1/identify``: told from photos by their first bytes, held to the
server's video size and duration limits, written to a temporary file (always removed) and
identified in a worker thread as ``faceid identify VIDEO --json`` does (:func:`faceid.video.identify_video`).

The video is read through its own connection to the gallery (opened in the worker thread), so a
clip that takes seconds does not hold the gallery's lock from the photo requests around it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Optional

from faceid.server.errors import ApiError
from faceid.server.state import Caller, State

__all__ = ["identify_video_route", "is_video_upload", "video_suffix"]

log = logging.getLogger(__name__)

#: ISO-BMFF brands that are still images (HEIF, AVIF), not videos, though they start like an MP4.
_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}


def video_suffix(data: bytes) -> Optional[str]:
    """The file ending of the video container ``data`` starts like (``.mp4``, ``.mkv``, ``.avi``), else ``None``."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return None if data[8:12] in _IMAGE_BRANDS else ".mp4"  # MP4, MOV, M4V, 3GP: one family
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return ".mkv"  # Matroska and WebM (EBML)
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return ".avi"
    return None


def is_video_upload(data: bytes, content_type: Optional[str]) -> bool:
    """Whether an upload is a video: its first bytes are a video container's, or (for a damaged or
    empty one) the client says ``video/...``."""
    return video_suffix(data) is not None or (content_type or "").lower().startswith("video/")


def _hint(setting: str, option: str) -> str:
    return f"the server's {setting} setting; `faceid serve {option}` raises it"


def check_size(data: bytes, state: State, name: str) -> None:
    """413 for a video larger than ``max_video_bytes``."""
    limit = state.settings.max_video_bytes
    if len(data) > limit:
        raise ApiError(
            413,
            f"{name}: video is {len(data)} bytes, more than the {limit} allowed "
            f"({_hint('max_video_bytes', '--max-video-mb')})",
        )


async def identify_video_route(
    state: State,
    data: bytes,
    name: str,
    caller: Optional[Caller],
    fps: Optional[float],
    threshold: Optional[float],
    margin: Optional[float],
    remember: bool,
) -> dict:
    """The JSON object ``faceid identify VIDEO --json`` prints, for an uploaded video.

    The upload is written to a temporary file and opened in a worker thread (the container's
    duration checked), then identified in a worker thread, holding the server's memory budget
    for one decoded frame where the server has one; the file is removed whatever happens.

    Raises:
        ApiError: 413 larger than ``max_video_bytes``; 422 longer than ``max_video_seconds``, or
            unreadable (corrupt, empty, not a video), in words that name the upload, never the temporary file.
    """
    import time

    from starlette.concurrency import run_in_threadpool

    from faceid.video import DEFAULT_FPS

    check_size(data, state, name)
    deadline = time.monotonic() + state.settings.request_timeout
    path = await run_in_threadpool(_write, data)
    try:
        width, height = await run_in_threadpool(_probe, state, path, name)
        budget = getattr(state, "budget", None)  # the server's memory budget for decoded images, if it has one
        if budget is None:
            return await run_in_threadpool(
                _identify_file, state, path, name, caller, fps or DEFAULT_FPS, threshold, margin, remember, deadline
            )
        from faceid.server.budget import BYTES_PER_PIXEL

        async with budget.hold(width * height * BYTES_PER_PIXEL, deadline):
            return await run_in_threadpool(
                _identify_file, state, path, name, caller, fps or DEFAULT_FPS, threshold, margin, remember, deadline
            )
    finally:
        _remove(path)


def _write(data: bytes) -> str:
    handle, path = tempfile.mkstemp(prefix="faceid-upload-", suffix=video_suffix(data) or ".mp4")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
    except BaseException:
        _remove(path)
        raise
    return path


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _too_long(state: State) -> str:
    limit = state.settings.max_video_seconds
    return f"more than the {limit:g} s allowed ({_hint('max_video_seconds', '--max-video-seconds')})"


def _probe(state: State, path: str, name: str) -> tuple[int, int]:
    """The video's frame size; 422 for one FFmpeg cannot open, or one its container says is too long."""
    from faceid.errors import VideoError
    from faceid.video.reader import VideoReader

    try:
        with VideoReader(path) as reader:
            info = reader.info
    except VideoError as exc:
        raise ApiError(422, str(exc).replace(path, name)) from None
    if info.duration > state.settings.max_video_seconds:
        raise ApiError(422, f"{name}: video is {info.duration:.1f} s long, {_too_long(state)}")
    return info.width, info.height


def _stop_after(engine, state: State, name: str, deadline: float) -> None:
    """Refuse (422) at the first sampled frame past ``max_video_seconds``: for a container that
    did not say how long it is, or said less than it holds, the work stops there. Past the
    request's ``deadline`` (when the client has had its 503), the work stops too."""
    import time

    add, limit = engine.add, state.settings.max_video_seconds

    def guarded(frame):
        if time.monotonic() > deadline:
            took = f"took longer than the {state.settings.request_timeout:g} s a request may take"
            raise ApiError(503, f"{name}: identifying the video {took}")
        if frame.time > limit:
            raise ApiError(422, f"{name}: video is longer than its container said, {_too_long(state)}")
        return add(frame)

    engine.add = guarded


def _identify_file(state, path, name, caller, fps, threshold, margin, remember, deadline) -> dict:
    from faceid.gallery import Gallery
    from faceid.video import identify_video

    def run(gallery):
        return identify_video(
            path,
            gallery,
            state.pipeline,
            fps=fps,
            threshold=threshold,
            margin=margin,
            remember=remember,
            engine_hook=lambda engine: _stop_after(engine, state, name, deadline),
        )

    if remember and state.gallery.folder is None:
        # a Milvus gallery has one writer per process (its id counters and the rows it wrote are
        # kept in memory: faceid.gallery.milvus_rows): a video that keeps faces writes through the
        # server's own gallery, holding it, as every other writing request does
        with state.use(caller) as gallery:
            result = run(gallery)
    else:  # SQLite takes writers from many connections; a reader needs no lock
        gallery = Gallery(state.gallery.path, create=False, timeout=state.gallery.timeout)
        try:
            gallery.actor = f"key:{caller.key}" if caller is not None and caller.key else None
            result = run(gallery)
        finally:
            gallery.close()
    if result.error is not None:
        raise ApiError(422, result.error.replace(path, name))
    if result.failed_frames:
        log.warning("%s: the face pipeline failed on %d sampled frames", name, result.failed_frames)
    return {**result.to_json(), "video": name}
