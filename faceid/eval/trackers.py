"""Our tracker against ByteTrack on the same faces: ``faceid eval trackers``.

Two measurements, one JSON line per tracker and condition:

- ``tracker_synthetic``: LFW people walking across a 640x360 frame as synthetic tracks. Each scene
  has ``people`` people (seeded) entering from either side at the same height band, so their paths
  cross, at ``speed`` box widths a second, sampled at ``fps``; a face is missed on a sample with
  probability ``miss``; each observation's embedding is one of the person's LFW photos in turn (so
  the face changes from sample to sample as a real one does), its box jittered by 5%. The truth
  is known, so it counts **ID switches** (along a track, the person changes), **mixed tracks**
  (tracks holding more than one person) and **fragments** (per appearance of a person, tracks
  beyond the first it is split into).
- ``tracker_clip``: the sample clips through ``identify_video`` with each tracker: tracks, tracks
  named per person, wrong names (a name outside that person's scenes in the 3-person clip; any
  name in the pedestrian clip, where nobody is enrolled), and the tracking's own CPU time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceid.pipeline import Pipeline
from faceid.results import Detection
from faceid.video.tracker import Observation, Tracker, TrackState

__all__ = ["TRACKERS", "clip_figures", "make_tracker", "synthetic_figures", "synthetic_scene"]

#: The trackers compared: ours (:mod:`faceid.video.tracker`) and ByteTrack (:mod:`faceid.video.bytetrack`),
#: its Kalman filter stepped by the time between samples (``bytetrack``) or once per sample
#: (``bytetrack-per-sample``, as if the samples were consecutive frames).
TRACKERS = ("faceid", "bytetrack", "bytetrack-per-sample")

FRAME = (640, 360)


def make_tracker(name: str, link: float, fps: float, max_gap: float = 1.0) -> Any:
    """A fresh tracker by name (see :data:`TRACKERS`) for samples taken ``fps`` times a second."""
    if name == "faceid":
        return Tracker(link, max_gap=max_gap)
    from faceid.video.bytetrack import ByteTrackTracker

    return ByteTrackTracker(max_gap=max_gap, steps=fps if name == "bytetrack-per-sample" else None)


def synthetic_scene(
    faces: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    speed: float,
    fps: float,
    miss: float,
    seconds: float = 6.0,
) -> list[tuple[float, list[tuple[int, Observation]]]]:
    """One scene: per sample, its time and the ``(person, observation)`` pairs seen on it.

    ``faces[p]`` is person ``p``'s ``(n, D)`` unit embeddings (their photos, used in turn)."""
    width, height = FRAME
    walkers = []
    for p in range(len(faces)):
        size = float(rng.uniform(50, 90))
        leftward = bool(rng.integers(2))
        x0 = width - size if leftward else 0.0
        walkers.append((p, size, x0, float(rng.uniform(120, 200)), -1.0 if leftward else 1.0, rng.uniform(0, 2)))
    samples = []
    for k in range(int(seconds * fps)):
        t = k / fps
        seen = []
        for p, size, x0, y0, direction, enter in walkers:
            if t < enter:
                continue
            x = x0 + direction * speed * size * (t - enter)
            if x < -size / 2 or x > width - size / 2 or rng.random() < miss:
                continue
            jx, jy, js = rng.normal(0, 0.05 * size, 3)
            box = (int(x + jx), int(y0 + jy), max(10, int(size + js)), max(10, int(size * 1.2 + js)))
            eye = 0.4 * box[2]
            marks = (
                (box[0] + 0.3 * box[2], box[1] + 0.4 * box[3]),
                (box[0] + 0.3 * box[2] + eye, box[1] + 0.4 * box[3]),
            )
            detection = Detection(box, float(rng.uniform(0.9, 1.0)), marks)
            photos = faces[p]
            vector = photos[k % len(photos)]
            seen.append((p, Observation(k, t, detection, vector, 1.0)))
        samples.append((t, seen))
    return samples


def _score(tracks: Sequence[TrackState], person_of: dict[int, int]) -> dict[str, int]:
    switches = mixed = 0
    per_person: dict[int, set[int]] = {}
    for track in tracks:
        people = [person_of[id(o)] for o in sorted(track.observations, key=lambda o: o.time)]
        switches += sum(a != b for a, b in zip(people, people[1:]))
        mixed += len(set(people)) > 1
        for p in people:
            per_person.setdefault(p, set()).add(track.id)
    fragments = sum(len(ids) - 1 for ids in per_person.values())
    return {"tracks": len(tracks), "id_switches": switches, "mixed_tracks": mixed, "fragments": fragments}


def synthetic_figures(
    faces_of: Sequence[np.ndarray],
    link: float,
    *,
    trackers: Sequence[str] = TRACKERS,
    speeds: Sequence[float] = (0.5, 1.5, 3.0),
    fps: float = 3.0,
    people: int = 4,
    scenes: int = 100,
    miss: float = 0.15,
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """One figure per tracker and speed (see the module docstring); ``faces_of`` is each LFW person's embeddings."""
    for speed in speeds:
        rng = np.random.default_rng(seed)
        plans = []
        for _ in range(scenes):
            chosen = rng.choice(len(faces_of), size=people, replace=False)
            plans.append(synthetic_scene([faces_of[i] for i in chosen], rng, speed=speed, fps=fps, miss=miss))
        for name in trackers:
            totals = {"tracks": 0, "id_switches": 0, "mixed_tracks": 0, "fragments": 0}
            appearances = 0
            for samples in plans:
                tracker = make_tracker(name, link, fps)
                person_of = {id(o): p for _, seen in samples for p, o in seen}
                appearances += len({p for _, seen in samples for p, _ in seen})
                done: list[TrackState] = []
                for t, seen in samples:
                    done += tracker.update(t, [o for _, o in seen])
                done += tracker.finish()
                for key, value in _score(done, person_of).items():
                    totals[key] += value
            yield {
                "figure": "tracker_synthetic",
                "tracker": name,
                "speed_widths_per_s": speed,
                "sample_fps": fps,
                "scenes": scenes,
                "people_per_scene": people,
                "miss": miss,
                "appearances": appearances,
                **totals,
            }


def clip_figures(
    data: Path,
    work: Path,
    pipeline: Pipeline,
    *,
    trackers: Sequence[str] = TRACKERS,
    fps: float = 3.0,
    load: Callable[[], Any] = lambda: None,
) -> Iterator[dict[str, Any]]:
    """One figure per tracker and sample clip (see the module docstring); ``data`` is ../shared/data."""
    from faceid.bench.video import CLIP_WINDOWS, clip_gallery, named_tracks
    from faceid.video import identify_video
    from faceid.video.decision import link_threshold

    gallery = clip_gallery(work, data, pipeline)
    clips = {"short_hamilton_clip.mp4": CLIP_WINDOWS, "pedestrians.mp4": {}}
    for clip, windows in clips.items():
        for name in trackers:
            engines: list[Any] = []

            def swap(engine: Any, name: str = name, engines: list[Any] = engines) -> None:
                engine.tracker = make_tracker(name, link_threshold(pipeline.key), fps)
                engines.append(engine)

            start = time.process_time()
            result = identify_video(data / "video" / clip, gallery, pipeline, fps=fps, engine_hook=swap)
            cpu = time.process_time() - start
            named, wrong = named_tracks(result.tracks, windows)
            yield {
                "figure": "tracker_clip",
                "tracker": name,
                "clip": clip,
                "sample_fps": fps,
                "tracks": len(result.tracks),
                "named_tracks": named,
                "wrong_names": wrong,
                "error": result.error,
                "track_cpu_s": round(engines[0].timings.track, 3) if engines else None,
                "cpu_s": round(cpu, 2),
                "load": load(),
            }


def lfw_faces(
    root: Path, pipeline: Pipeline, *, people: int = 150, photos: int = 6, cache: object | None = None, seed: int = 0
) -> list[np.ndarray]:
    """Up to ``people`` LFW people (seeded choice among those with at least 4 photos), each as the
    ``(n, D)`` embeddings of their first ``photos`` photos (``root`` holds ``lfw-deepfunneled``)."""
    from faceid.eval.lfw import embed_lfw_images, lfw_people

    everyone = {n: ps[:photos] for n, ps in lfw_people(root).items() if len(ps) >= 4}
    names = sorted(everyone)
    rng = np.random.default_rng(seed)
    chosen = [names[i] for i in sorted(rng.choice(len(names), size=min(people, len(names)), replace=False))]
    paths = [p for n in chosen for p in everyone[n]]
    embedded = embed_lfw_images(paths, pipeline, cache=cache)  # type: ignore[arg-type]
    row = {p: i for i, p in enumerate(embedded.paths)}
    faces = []
    for n in chosen:
        vectors = [embedded.embeddings[row[p]] for p in everyone[n] if p not in embedded.missing]
        if len(vectors) >= 2:
            faces.append(np.stack(vectors).astype(np.float32))
    return faces
