"""Watch a camera or stream: an event when a track starts and when it ends, until told to stop.

A source is a file, an ``http(s)://`` MJPEG or other FFmpeg-readable stream, an ``rtsp://``
address, or a device number. When a stream drops (or cannot be opened), the open tracks end
(their ``end`` events are sent) and it is opened again after a back-off that doubles from
``backoff`` seconds up to ``max_backoff``, reset once frames flow again. A file is read once
(``loop`` reads it again and again: for soak tests). Memory is bounded: one frame at a time and
a fixed summary per open track.

Events (:class:`Event`) go to ``on_event``; :class:`WebhookSink` POSTs each as JSON and
:class:`MqttSink` publishes it; a sink that fails logs the failure, counts it and the watch goes on.
The ``start`` event names the person from the track's first frame; the ``end`` event gives the
track's decision from all its frames (the one to trust), its best similarity and a snapshot.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceid._files import atomic_write_bytes
from faceid.errors import VideoError
from faceid.gallery import AnyGallery
from faceid.pipeline import Pipeline
from faceid.thresholds import DecisionParams
from faceid.video.engine import Best, TrackEngine
from faceid.video.reader import Frame, VideoReader, is_stream
from faceid.video.results import Track

__all__ = ["Event", "WatchStats", "watch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One event: a track ``"start"``\\ed or ``"end"``\\ed.

    ``at`` is the wall-clock time (UTC, ISO 8601); ``time`` seconds into the source (for a stream,
    since it was opened). ``snapshot`` the path of the face's JPEG (the first frame for ``start``,
    the best for ``end``) when a snapshot folder is given.
    """

    event: str
    source: str
    track: Track
    at: str
    time: float
    snapshot: str | None = None

    def to_json(self) -> dict[str, Any]:
        t = self.track
        out: dict[str, Any] = {
            "event": self.event,
            "source": self.source,
            "at": self.at,
            "time": round(self.time, 3),
            "track": t.track,
            "name": t.name,
            "status": t.status,
            "similarity": round(t.similarity, 4),
            "snapshot": self.snapshot,
        }
        if self.event == "end":
            out |= {"first": round(t.first, 3), "last": round(t.last, 3), "frames": t.frames, "box": list(t.box)}
            if t.kept is not None:
                out |= {"kept": t.kept, "kept_as": t.kept_as}
        return out


@dataclass
class WatchStats:
    """What a watch did: frames sampled, events sent, times it (re)connected, frames failed."""

    sampled: int = 0
    events: int = 0
    connects: int = 0
    failed_frames: int = 0


def watch(
    source: str,
    gallery: AnyGallery,
    pipeline: Pipeline | None = None,
    *,
    on_event: Callable[[Event], None],
    stop: threading.Event | None = None,
    fps: float = 3.0,
    params: DecisionParams | None = None,
    remember: bool = False,
    snapshots: str | os.PathLike[str] | None = None,
    loop: bool = False,
    backoff: float = 1.0,
    max_backoff: float = 30.0,
    max_gap: float = 2.0,
) -> WatchStats:
    """Watch ``source`` until ``stop`` is set (or a file ends); call ``on_event`` for each event.

    Raises:
        VideoError: a file source cannot be read at all (streams are retried instead).
    """
    from faceid.thresholds import decision_params

    stop = stop or threading.Event()
    pipeline = pipeline if pipeline is not None else Pipeline.from_key(gallery.embedding_key)
    gallery.check_embedding_key(pipeline.key)
    params = params or decision_params(gallery)
    engine = TrackEngine(gallery, pipeline, params, remember=remember, keep_best=snapshots is not None, max_gap=max_gap)
    stats = WatchStats()
    snap_dir = Path(snapshots) if snapshots is not None else None
    if snap_dir is not None:
        snap_dir.mkdir(parents=True, exist_ok=True)
    live = is_stream(source) or source.isdigit()
    offset = 0.0  # a looped file's or reopened stream's time goes on from where the last one stopped
    last_time = 0.0

    def send(kind: str, track: Track, time: float, thumbnail: bytes | None) -> None:
        path = None
        if snap_dir is not None and thumbnail is not None:
            path = str(snap_dir / f"track-{track.track}-{kind}.jpg")
            atomic_write_bytes(Path(path), thumbnail)
        stats.events += 1
        on_event(Event(kind, source, track, _now(), time, path))

    def started(track: Track, frame: Frame) -> None:
        thumb = _thumbnail(frame, track) if snap_dir is not None else None
        send("start", _shifted(track, offset), frame.time + offset, thumb)

    def ended(pairs: list[tuple[Track, Best | None]]) -> None:
        for track, best in pairs:
            moved = _shifted(track, offset)
            send("end", moved, moved.last, best.thumbnail if best is not None else None)

    engine.on_start = started
    wait = backoff
    while not stop.is_set():
        try:
            reader = VideoReader(source, open_timeout_ms=5000)
        except VideoError:
            if not live:
                raise
            log.warning("%s: cannot open it; trying again in %.0f s", source, wait)
            stop.wait(wait)
            wait = min(wait * 2, max_backoff)
            continue
        stats.connects += 1
        with reader:
            for frame in reader.frames(fps, clock=live):
                stats.sampled += 1
                wait = backoff  # frames flow: the next drop starts the back-off afresh
                last_time = frame.time
                ended(engine.add(frame))
                if stop.is_set():
                    break
        ended(engine.finish())
        stats.failed_frames = engine.failed_frames
        offset += last_time + (1.0 / fps)
        if stop.is_set() or not (live or loop):
            break
        if live:
            log.warning("%s: the stream stopped; reconnecting in %.0f s", source, wait)
            stop.wait(wait)
            wait = min(wait * 2, max_backoff)
    if remember:
        gallery.unknown.update_groups()
    return stats


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _shifted(track: Track, offset: float) -> Track:
    if not offset:
        return track
    import dataclasses

    return dataclasses.replace(
        track, first=track.first + offset, last=track.last + offset, best_frame=track.best_frame + offset
    )


def _thumbnail(frame: Frame, track: Track) -> bytes:
    from faceid.draw import face_thumbnail

    return face_thumbnail(frame.pixels, track.box)
