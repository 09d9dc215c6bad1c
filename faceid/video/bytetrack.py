"""ByteTrack (Roboflow's ``trackers`` package) behind :class:`faceid.video.tracker.Tracker`'s
interface, so the two can be measured on the same faces (``faceid eval trackers``).

Not the default and not a dependency: ``trackers`` requires ``opencv-python``, a second OpenCV
beside the pinned ``opencv-python-headless`` (both write the same ``cv2`` module), and it measured
worse here (docs/video.md, "Our tracker against ByteTrack"). To measure it, install it beside faceid
without its dependencies::

    pip install --target .bytetrack --no-deps trackers==2.6.1 supervision==0.31.2 tqdm pydeprecate defusedxml
    PYTHONPATH=.bytetrack:$PYTHONPATH faceid eval trackers --data ../shared/data

ByteTrack links boxes by overlap with a Kalman prediction (two stages: confident detections, then
the rest); it never looks at the embedding. Each of its track ids becomes a
:class:`~faceid.video.tracker.TrackState` (pooled embedding, best frame), ended as ours are: unseen
for ``max_gap`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceid.errors import FaceIDError
from faceid.video.tracker import Observation, TrackState

__all__ = ["ByteTrackTracker", "bytetrack_available"]


def bytetrack_available() -> bool:
    """Whether ``trackers`` (with ``supervision``) can be imported."""
    try:
        import supervision  # noqa: F401
        from trackers import ByteTrackTracker as _  # noqa: F401
    except ImportError:
        return False
    return True


class ByteTrackTracker:
    """``trackers.ByteTrackTracker`` with the interface of :class:`faceid.video.tracker.Tracker`.

    Args:
        max_gap: seconds a track may go unseen before it ends (also ByteTrack's lost-track buffer).
        keep: observations kept per track.
        min_confidence: detections under it do not start tracks (ByteTrack's activation threshold).
    """

    def __init__(
        self, *, max_gap: float = 1.0, keep: int = 32, min_confidence: float = 0.5, steps: float | None = None
    ) -> None:
        try:
            from trackers import ByteTrackTracker as _ByteTrack
        except ImportError as exc:
            raise FaceIDError(
                f"ByteTrack needs the 'trackers' package ({exc}); see faceid/video/bytetrack.py"
            ) from None
        self.max_gap, self.keep = max_gap, keep
        # the buffer counts 30 fps frames: max_gap seconds of them. With ``steps`` (samples a second)
        # the Kalman filter steps once per sample instead of by the time between them
        self._steps = steps
        self._inner = _ByteTrack(
            lost_track_buffer=max(1, round(30 * max_gap)),
            frame_rate=30.0 if steps is None else steps,
            track_activation_threshold=min_confidence,
            minimum_consecutive_frames=1,
        )
        self.active: list[TrackState] = []
        self.dropped = 0  # detections ByteTrack left unassigned (low confidence, no track to continue)
        self._by_id: dict[int, TrackState] = {}
        self._pending: dict[int, tuple[object, list[Observation]]] = {}
        self._next = 1

    def update(self, time: float, observations: Sequence[Observation], *, start: bool = True) -> list[TrackState]:
        """Add one frame's faces; return the tracks that ended (unseen for ``max_gap`` before ``time``).
        ``start`` is ignored: ByteTrack decides itself which detections start tracks."""
        import supervision as sv

        ended = [t for t in self.active if time - t.last > self.max_gap]
        self.active = [t for t in self.active if time - t.last <= self.max_gap]
        for t in ended:
            self._by_id = {k: v for k, v in self._by_id.items() if v is not t}
        if observations:
            xyxy = np.stack([_xyxy(o) for o in observations])
            conf = np.array([o.detection.confidence for o in observations], float)
            found = sv.Detections(xyxy=xyxy, confidence=conf, data={"i": np.arange(len(observations))})
        else:
            found = sv.Detections.empty()
        held_before = list(self._inner.tracks)  # held, so no new tracklet can reuse one's id()
        before = {id(t) for t in held_before}
        out = self._inner.update(found, timestamp=None if self._steps else time)
        indices = out.data.get("i", np.zeros(0, int)) if len(out) else np.zeros(0, int)
        ids = out.tracker_id if out.tracker_id is not None else np.zeros(0, int)
        by_tid = {t.tracker_id: t for t in self._inner.tracks if t.tracker_id >= 0}
        unplaced = []
        for i, tid in zip(indices, ids):
            obs = observations[int(i)]
            if tid < 0:
                unplaced.append(obs)
                continue
            track = self._by_id.get(int(tid))
            if track is None or track not in self.active:
                # a tracklet confirmed now: its first observation(s) waited in _pending
                inner = by_tid.get(int(tid))
                held = self._pending.pop(id(inner), (None, []))[1] if inner is not None else []
                track = TrackState.start(self._next, held[0] if held else obs)
                for o in held[1:] + ([obs] if held else []):
                    track.add(o, self.keep)
                self._next += 1
                self._by_id[int(tid)] = track
                self.active.append(track)
            else:
                track.add(obs, self.keep)
        # detections that spawned a tracklet (ByteTrack names it on its second match): hold them
        for inner in (t for t in self._inner.tracks if id(t) not in before and t.tracker_id < 0):
            box = np.asarray(inner.get_state_bbox(), float)
            if not unplaced:
                break
            k = int(np.argmin([np.abs(box - _xyxy(o)).sum() for o in unplaced]))
            self._pending[id(inner)] = (inner, [unplaced.pop(k)])
        self.dropped += len(unplaced)
        # a held detection whose tracklet died unconfirmed is a one-frame track (as ours would make)
        alive = {id(t) for t in self._inner.tracks}
        for key in [k for k in self._pending if k not in alive]:
            for o in self._pending.pop(key)[1]:
                ended.append(TrackState.start(self._next, o))
                self._next += 1
        return ended

    def finish(self) -> list[TrackState]:
        """End every track still open; ByteTrack starts afresh (a shot cut, or the end of the source)."""
        ended, self.active, self._by_id = self.active, [], {}
        for _, held in self._pending.values():
            for o in held:
                ended.append(TrackState.start(self._next, o))
                self._next += 1
        self._pending = {}
        self._inner.reset()
        return ended


def _xyxy(obs: Observation) -> np.ndarray:
    x, y, w, h = obs.detection.box
    return np.array([x, y, x + w, y + h], float)
