"""Link the faces of sampled frames into tracks: one track per person per appearance.

Faces are linked by appearance first, then place: a face joins the track whose recent embedding
it resembles (cosine similarity at least ``link``) and whose last box is near enough
(centre moved at most ``max_shift`` box widths per second); among the allowed pairs, one
assignment maximising similarity plus box overlap (Hungarian, scipy's ``linear_sum_assignment``).
A track not seen for ``max_gap`` seconds ends.

Why not ByteTrack: measured against it on the same faces (``faceid eval trackers``,
:mod:`faceid.eval.trackers`; docs/video.md), it split and swapped people far more often. Its
association is by box overlap alone with a Kalman motion model, made for every frame at 25-30 fps;
here frames are sampled a few times a second, so a face moves by up to its own width between
samples, and overlap alone breaks or swaps tracks, while the face embedding, computed anyway,
tells people apart across any gap. (Its package, ``trackers``, also requires ``opencv-python``: a
second OpenCV beside the pinned ``opencv-python-headless``, both writing the same ``cv2`` module.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faceid.detect import Detection

__all__ = ["Observation", "Tracker", "TrackState", "box_iou", "quality"]


@dataclass(frozen=True)
class Observation:
    """One face on one sampled frame: where, when, its ``(D,)`` unit embedding and its quality."""

    frame: int
    time: float
    detection: Detection
    embedding: np.ndarray = field(repr=False)
    quality: float


def quality(detection: Detection) -> float:
    """How much a face is worth as a witness of who it is, in [0, 1]: the detector's confidence,
    times its size (full at 80 px, the size of SFace's and FaceNet's inputs, reached by zooming in),
    times how frontal it is (distance between the eyes over 0.4 of the box width; a profile has them close)."""
    x, y, w, h = detection.box
    side = min(1.0, min(w, h) / 80.0)
    frontal = 1.0
    if len(detection.landmarks) >= 2 and w > 0:
        (lx, ly), (rx, ry) = detection.landmarks[0], detection.landmarks[1]
        frontal = min(1.0, float(np.hypot(rx - lx, ry - ly)) / (0.4 * w))
    return float(max(0.0, detection.confidence) * side * frontal)


@dataclass
class TrackState:
    """A track being built: its id, observations' summary and the best observation so far.

    Only a bounded summary is held per track: the quality-weighted sum of its unit embeddings and
    up to ``keep`` observations' embeddings (the best ones), not every frame.
    """

    id: int
    first: float
    last: float
    last_box: tuple[int, int, int, int]
    recent: np.ndarray = field(repr=False)
    weighted: np.ndarray = field(repr=False)
    best: Observation
    weight: float = 0.0
    frames: int = 1
    observations: list[Observation] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, id: int, obs: Observation) -> TrackState:
        """A new track holding one observation."""
        weight = max(obs.quality, 1e-3)
        return cls(
            id=id,
            first=obs.time,
            last=obs.time,
            last_box=obs.detection.box,
            recent=obs.embedding,
            weighted=weight * obs.embedding,
            weight=weight,
            best=obs,
            observations=[obs],
        )

    def add(self, obs: Observation, keep: int) -> None:
        self.last, self.last_box, self.frames = obs.time, obs.detection.box, self.frames + 1
        self.recent = obs.embedding
        self.weighted = self.weighted + max(obs.quality, 1e-3) * obs.embedding
        self.weight += max(obs.quality, 1e-3)
        if obs.quality > self.best.quality:
            self.best = obs
        self.observations.append(obs)
        if len(self.observations) > keep:  # drop the least useful witness
            self.observations.remove(min(self.observations, key=lambda o: o.quality))

    def mean(self) -> np.ndarray:
        """The quality-weighted mean of the track's unit embeddings (length at most 1: shorter the more they differ)."""
        return (self.weighted / max(self.weight, 1e-12)).astype(np.float32)

    def pooled(self) -> np.ndarray:
        """The quality-weighted mean of the track's unit embeddings, made unit again (for linking faces)."""
        n = float(np.linalg.norm(self.weighted))
        return (self.weighted / n if n > 0 else self.weighted).astype(np.float32)


class Tracker:
    """Assigns each sampled frame's faces to tracks (see the module docstring).

    Args:
        link: the cosine similarity above which a face may continue a track; for the pipeline's
            model, :func:`link_threshold` (the similarity that names a person among one).
        max_gap: seconds a track may go unseen before it ends.
        max_shift: how far a face may move, in widths of its box per second since last seen (plus one width).
        keep: observations kept per track (the best by quality; for votes and for keeping faces).
    """

    def __init__(self, link: float, *, max_gap: float = 1.0, max_shift: float = 3.0, keep: int = 32) -> None:
        self.link, self.max_gap, self.max_shift, self.keep = link, max_gap, max_shift, keep
        self.active: list[TrackState] = []
        self._next = 1

    def update(self, time: float, observations: Sequence[Observation], *, start: bool = True) -> list[TrackState]:
        """Add one frame's faces; return the tracks that ended (unseen for ``max_gap`` before ``time``).

        With ``start`` false, a face that continues no track is dropped instead of starting one (the
        faces of a frame searched only around the tracked ones: a new face is left to the next
        whole search)."""
        ended = [t for t in self.active if time - t.last > self.max_gap]
        self.active = [t for t in self.active if time - t.last <= self.max_gap]
        pairs = self._assign(time, observations)
        for i, obs in enumerate(observations):
            if i in pairs:
                pairs[i].add(obs, self.keep)
            elif start:
                self.active.append(TrackState.start(self._next, obs))
                self._next += 1
        return ended

    def finish(self) -> list[TrackState]:
        """End every track still open (the video ended); return them."""
        ended, self.active = self.active, []
        return ended

    def _assign(self, time: float, observations: Sequence[Observation]) -> dict[int, TrackState]:
        if not self.active or not observations:
            return {}
        from scipy.optimize import linear_sum_assignment

        recent = np.stack([t.recent for t in self.active])
        pooled = np.stack([t.pooled() for t in self.active])
        faces = np.stack([o.embedding for o in observations])
        sim = np.maximum(recent @ faces.T, pooled @ faces.T)
        gain = np.full(sim.shape, -1e6)
        for a, track in enumerate(self.active):
            for b, obs in enumerate(observations):
                if sim[a, b] < self.link or not self._near(track, obs, time):
                    continue
                gain[a, b] = sim[a, b] + box_iou(track.last_box, obs.detection.box)
        rows, cols = linear_sum_assignment(-gain)
        return {int(b): self.active[a] for a, b in zip(rows, cols) if gain[a, b] > -1e5}

    def _near(self, track: TrackState, obs: Observation, time: float) -> bool:
        tx, ty, tw, th = track.last_box
        x, y, w, h = obs.detection.box
        shift = float(np.hypot((x + w / 2) - (tx + tw / 2), (y + h / 2) - (ty + th / 2)))
        allowed = max(tw, w, 1) * (1.0 + self.max_shift * max(0.0, time - track.last))
        return shift <= allowed


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
