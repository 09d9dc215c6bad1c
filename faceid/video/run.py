"""``identify_video``: every person in a video file, tracked and named once per track."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator

from faceid.errors import OptionError, VideoError
from faceid.gallery import AnyGallery
from faceid.pipeline import Pipeline
from faceid.thresholds import DecisionParams
from faceid.video.engine import TrackEngine
from faceid.video.reader import VideoReader
from faceid.video.results import Track, VideoResult

__all__ = ["DEFAULT_FPS", "identify_video", "identify_videos"]

log = logging.getLogger(__name__)

#: Frames sampled per second by default. ``faceid eval video --fps 1,2,3,5,10`` on the sample clip:
#: (see docs/video.md for the table and the command).
DEFAULT_FPS = 3.0


def identify_video(
    source: str | os.PathLike[str],
    gallery: AnyGallery,
    pipeline: Pipeline | None = None,
    *,
    fps: float = DEFAULT_FPS,
    threshold: float | None = None,
    margin: float | None = None,
    params: DecisionParams | None = None,
    pooling: str = "pool",
    remember: bool = False,
    annotate_dir: str | os.PathLike[str] | None = None,
    engine_hook: Callable[[TrackEngine], None] | None = None,
) -> VideoResult:
    """Identify every person in one video file: faces found on frames sampled ``fps`` times a second,
    linked into tracks, each track decided once (see :mod:`faceid.video`).

    A video that cannot be read gives a :class:`VideoResult` with ``error`` set and no tracks (a
    video with no face: no tracks and no error). ``threshold``/``margin`` (or ``params``) default
    to the gallery's, as for photos. With ``annotate_dir``, an annotated copy is written there
    (:mod:`faceid.video.annotate`); with ``remember``, each unknown track's best face is kept for grouping.
    """
    from faceid.thresholds import decision_params

    if not (isinstance(fps, (int, float)) and 0 < fps <= 120):
        raise OptionError(f"identify_video: fps must be a number in (0, 120], got {fps!r}")
    name = os.fspath(source)
    pipeline = pipeline if pipeline is not None else Pipeline.from_key(gallery.embedding_key)
    gallery.check_embedding_key(pipeline.key)
    params = params or decision_params(gallery, threshold=threshold, margin=margin)
    engine = TrackEngine(gallery, pipeline, params, pooling=pooling, remember=remember)
    if engine_hook is not None:
        engine_hook(engine)
    placements: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = {}
    if annotate_dir is not None:
        engine.on_frame = lambda frame, placed: placements.__setitem__(frame.index, placed)
    tracks: list[Track] = []
    try:
        with VideoReader(name) as reader:
            sampled = 0
            last_time = 0.0
            for frame in reader.frames(fps):
                sampled += 1
                last_time = frame.time
                tracks.extend(t for t, _ in engine.add(frame))
            tracks.extend(t for t, _ in engine.finish())
            info, frames_read = reader.info, reader.frames_read
    except VideoError as exc:
        return VideoResult(name, 0.0, 0.0, 0, (), error=str(exc))
    if frames_read == 0:
        return VideoResult(name, 0.0, info.fps, 0, (), error=f"{name}: no frame could be decoded (corrupt video)")
    if info.frame_count and frames_read < info.frame_count * 0.9:
        log.warning("%s: %d of %d frames decoded; the rest is unreadable", name, frames_read, info.frame_count)
    duration = frames_read / info.fps if info.fps > 0 else last_time
    if remember:
        gallery.unknown.update_groups()
    tracks.sort(key=lambda t: t.track)
    result = VideoResult(
        name, duration, info.fps, frames_read, tuple(tracks), sampled=sampled, failed_frames=engine.failed_frames
    )
    if annotate_dir is not None:
        from faceid.video.annotate import write_annotated

        written = write_annotated(name, result, placements, annotate_dir)
        result = VideoResult(**{**result.__dict__, "annotated": str(written)})
    return result


def identify_videos(
    sources: Iterable[str | os.PathLike[str]], gallery: AnyGallery, pipeline: Pipeline | None = None, **options
) -> Iterator[VideoResult]:
    """:func:`identify_video` of each source in turn, one pipeline for all; a bad one yields its error."""
    pipeline = pipeline if pipeline is not None else Pipeline.from_key(gallery.embedding_key)
    for source in sources:
        yield identify_video(source, gallery, pipeline, **options)
