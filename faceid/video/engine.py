"""Faces of sampled frames -> tracks -> one decision per track: the part shared by video files
(:func:`faceid.video.identify_video`) and live sources (:mod:`faceid.video.watch`).

Per frame: detect with the pipeline's detector, embed with its embedder, link into tracks
(:mod:`faceid.video.tracker`); a track is decided when it ends (:mod:`faceid.video.decision`).
Memory is bounded: one frame at a time, and per open track a fixed-size summary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from faceid.gallery import AnyGallery
from faceid.pipeline import Pipeline
from faceid.results import UNKNOWN
from faceid.thresholds import DecisionParams
from faceid.video.decision import decide_track, link_threshold
from faceid.video.reader import Frame
from faceid.video.results import Track
from faceid.video.shots import ShotDetector
from faceid.video.tracker import Observation, Tracker, TrackState, quality

__all__ = ["DETECT_SHORT_SIDE", "FULL_DETECT_EVERY", "Best", "TrackEngine", "Timings"]

#: Frames whose shorter side is longer are shrunk to it for detection (boxes mapped back; faces are
#: embedded from the full frame): the smallest face found is then a fixed share of the frame
#: (20 px of 480 with MTCNN: 30 px in 720p, 45 px in 1080p) whatever the resolution, and a 720p
#: frame costs about what a 480p one does. Faces below that share score under 0.4 in quality
#: (:func:`faceid.video.tracker.quality`) and name no one reliably. ``None``: detect at full size.
DETECT_SHORT_SIDE = 480

#: One sampled frame in this many is searched whole for faces; on the others, only the regions around
#: the faces being tracked (:mod:`faceid.video.regions`), a fraction of the cost. A face new to the
#: picture is found up to ``FULL_DETECT_EVERY - 1`` samples late. 1: every frame searched whole.
FULL_DETECT_EVERY = 2

log = logging.getLogger(__name__)


@dataclass
class Timings:
    """Seconds spent in each part, summed over frames (for ``faceid bench --only video``)."""

    detect: float = 0.0
    embed: float = 0.0
    track: float = 0.0
    decide: float = 0.0


@dataclass(frozen=True)
class Best:
    """A track's best frame, kept only when faces are remembered or snapshots written: the face's
    thumbnail and chip and the frame's SHA-256 (what a kept face records)."""

    sha256: str
    thumbnail: bytes = field(repr=False)
    chip: object = field(repr=False)


class TrackEngine:
    """Feed it frames with :meth:`add`; it returns finished tracks, decided.

    Args:
        gallery, pipeline, params: where to search, how faces are found and embedded, the decision's numbers.
        pooling: ``"pool"`` or ``"vote"`` (:mod:`faceid.video.decision`).
        remember: keep each unknown track's best face in the gallery (``Track.kept_as``/``kept``).
        keep_best: hold each track's best face thumbnail (for remembering or snapshots).
        max_gap: seconds a track may go unseen before it ends.
        detect_short_side: see :data:`DETECT_SHORT_SIDE`.
        full_every: see :data:`FULL_DETECT_EVERY`.
    """

    def __init__(
        self,
        gallery: AnyGallery,
        pipeline: Pipeline,
        params: DecisionParams,
        *,
        pooling: str = "pool",
        remember: bool = False,
        keep_best: bool = False,
        max_gap: float = 1.0,
        detect_short_side: int | None = DETECT_SHORT_SIDE,
        full_every: int = FULL_DETECT_EVERY,
    ) -> None:
        self.detect_short_side, self.full_every = detect_short_side, full_every
        self._since_full = 0
        self.gallery, self.pipeline, self.params, self.pooling = gallery, pipeline, params, pooling
        self.remember = remember
        self.keep_best = keep_best or remember
        self.tracker = Tracker(link_threshold(pipeline.key), max_gap=max_gap)
        self.shots = ShotDetector()
        self.timings = Timings()
        self.best: dict[int, Best] = {}
        self.failed_frames = 0
        self.on_frame: Callable[[Frame, list[tuple[int, tuple[int, int, int, int]]]], None] | None = None
        #: called with each new track (decided from its first frame) and that frame
        self.on_start: Callable[[Track, Frame], None] | None = None

    def add(self, frame: Frame) -> list[tuple[Track, Best | None]]:
        """Find, embed and track the faces of one frame; the tracks that ended before it, decided.

        A frame the face pipeline fails on is logged and counted (``failed_frames``), not taken as faceless.
        """
        from faceid.batch import image_failures

        t0 = time.perf_counter()
        cut = self.shots.is_cut(frame.pixels)
        try:
            detections, whole = self._find(frame.pixels, cut)
            t1 = time.perf_counter()
            vectors = self.pipeline.embed(frame.pixels, detections) if detections else np.zeros((0, 1), np.float32)
        except image_failures():
            log.warning("the face pipeline failed on frame %d (%.2f s); counted as failed", frame.index, frame.time)
            self.failed_frames += 1
            return []
        t2 = time.perf_counter()
        obs = [Observation(frame.index, frame.time, d, v, quality(d)) for d, v in zip(detections, vectors)]
        ended = self.tracker.finish() if cut else []
        ended += self.tracker.update(frame.time, obs, start=whole)
        if self.keep_best or self.on_frame is not None or self.on_start is not None:
            self._after_update(frame, obs)
        t3 = time.perf_counter()
        out = [self._finish(t) for t in ended]
        timings = self.timings
        timings.detect += t1 - t0
        timings.embed += t2 - t1
        timings.track += t3 - t2
        timings.decide += time.perf_counter() - t3
        return out

    def _find(self, pixels: np.ndarray, cut: bool) -> tuple[list, bool]:
        """``(faces, whole)``: the whole frame searched (every ``full_every`` samples, after a cut,
        or with no track open), else only the regions around the tracked faces, whose faces may
        only continue tracks (a region's face too unlike its track is left to the next whole search)."""
        boxes = [t.last_box for t in self.tracker.active]
        if cut or not boxes or self._since_full + 1 >= self.full_every:
            self._since_full = 0
            return self._detect(pixels), True
        from faceid.video.regions import detect_near

        self._since_full += 1
        return detect_near(self.pipeline.detector, pixels, boxes), False

    def _detect(self, pixels: np.ndarray) -> list:
        """The pipeline's detector on the frame, shrunk first if larger than ``detect_short_side``."""
        height, width = pixels.shape[:2]
        limit = self.detect_short_side
        if limit is None or min(height, width) <= limit:
            return self.pipeline.detector.detect_many([pixels])[0]
        import cv2

        from faceid.tight import map_back

        scale = limit / min(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        found = (map_back(d, scale, 0, 0, width, height) for d in self.pipeline.detector.detect_many([small])[0])
        return [d for d in found if d is not None]

    def finish(self) -> list[tuple[Track, Best | None]]:
        """Decide every track still open (the source ended)."""
        return [self._finish(t) for t in self.tracker.finish()]

    def _after_update(self, frame: Frame, obs: list[Observation]) -> None:
        placed = []
        for track in self.tracker.active:
            if track.last != frame.time:
                continue
            placed.append((track.id, track.last_box))
            if self.keep_best and track.best.frame == frame.index and track.best.time == frame.time:
                self.best[track.id] = _best_of(frame, track)
            if self.on_start is not None and track.frames == 1:
                self.on_start(self._decided(track), frame)
        if self.on_frame is not None:
            self.on_frame(frame, placed)

    def _finish(self, state: TrackState) -> tuple[Track, Best | None]:
        track = self._decided(state)
        best = self.best.pop(state.id, None)
        if self.remember:
            track = self._keep(track, state, best)
        return track, best

    def _decided(self, state: TrackState) -> Track:
        decision = decide_track(self.gallery, state, self.params, self.pooling)
        return Track(
            track=state.id,
            status=decision.status,
            name=decision.name,
            similarity=decision.similarity,
            first=state.first,
            last=state.last,
            frames=state.frames,
            box=state.best.detection.box,
            best_frame=state.best.time,
        )

    def _keep(self, track: Track, state: TrackState, best: Best | None) -> Track:
        """Keep an unknown track's best face; say why not otherwise (the grouping's own rule)."""
        from faceid.gallery import NewFace

        if track.status != UNKNOWN:
            return dataclasses.replace(track, kept=f"not kept: {track.status}")
        if best is None:
            return dataclasses.replace(track, kept="not kept: no frame held")
        face = NewFace(
            embedding=state.best.embedding,  # the face its chip and thumbnail show
            image_sha256=best.sha256,
            box=state.best.detection.box,
            confidence=state.best.detection.confidence,
            thumbnail=best.thumbnail,
            chip=best.chip,  # type: ignore[arg-type]
        )
        kept = self.gallery.unknown.keep([face], embedding_key=self.pipeline.key, group=False)
        face_id = kept.ids[0]
        if face_id is None:
            from faceid.cluster import MIN_CONFIDENCE, MIN_FACE_SIZE

            reason = (
                f"not kept: face smaller than {MIN_FACE_SIZE:g} px or detected with confidence under "
                f"{MIN_CONFIDENCE:g} on its best frame"
            )
            return dataclasses.replace(track, kept=reason)
        return dataclasses.replace(track, kept_as=face_id, kept="kept" if kept.added else "kept before")


def _best_of(frame: Frame, track: TrackState) -> Best:
    from faceid.chips import make_chip
    from faceid.draw import face_thumbnail

    pixels, detection = frame.pixels, track.best.detection
    sha = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    return Best(sha, face_thumbnail(pixels, detection.box), make_chip(pixels, detection))
