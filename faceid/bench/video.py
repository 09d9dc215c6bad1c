"""``faceid bench --only video``: video speed, sampling rates and watch's memory.

- ``video_realtime``: seconds of video per second of work (the real-time factor; above 1 is faster
  than real time) for the 640x360 sample clip and a 1280x720 copy of it, at the default sampling,
  with each detector given (MTCNN and YuNet), and the seconds spent in each part (decoding is the
  rest of the wall time); each row beside the same run with every sample searched whole
  (``vs_whole_frames``: its real-time factor, CPU seconds and the ratios), what the region search
  between whole-frame searches (:data:`faceid.video.engine.FULL_DETECT_EVERY`) saves;
- ``video_watch_memory``: ``watch`` on the clip looped for ``soak`` seconds, resident memory
  sampled every few seconds, its slope after the first sample (MiB per minute; flat is ~0).

Models are loaded (one warm-up run) before anything is timed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceid.bench import _common as common

if TYPE_CHECKING:
    from faceid.pipeline import Pipeline

__all__ = ["CLIP_WINDOWS", "clip_gallery", "figures", "scaled_copy"]


def scaled_copy(source: Path, target: Path, size: tuple[int, int]) -> Path:
    """``source`` resized to ``size`` (width, height), written as MPEG-4 (``mp4v``, which every
    OpenCV build encodes) at the same frame rate."""
    import cv2

    from faceid.video.reader import VideoReader

    with VideoReader(source) as reader:
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter.fourcc(*"mp4v"), reader.info.fps or 25.0, size)
        try:
            for frame in reader.frames(None):
                writer.write(cv2.resize(frame.pixels[:, :, ::-1], size, interpolation=cv2.INTER_LINEAR))
        finally:
            writer.release()
    return target


def clip_gallery(work: Path, data: Path, pipeline: Pipeline) -> Any:
    from faceid.enroll import enroll
    from faceid.gallery import Gallery

    g = Gallery(work / f"video-gallery-{pipeline.key.model}-{pipeline.detector_name}")
    if len(g) == 0:
        enroll(g, "Lin-Manuel Miranda", [data / "video" / "lin-manuel-miranda.png"], pipeline)
        enroll(g, "Alex Lacamoire", [data / "video" / "alex-lacamoire.png"], pipeline)
        obama = data / "face_recognition_examples" / "examples" / "knn_examples" / "train" / "obama"
        enroll(g, "Barack Obama", [obama], pipeline)
    return g


#: Who is on screen when in the sample clip (seconds; checked by eye, ../shared/data/video/SOURCE.md).
CLIP_WINDOWS = {"Lin-Manuel Miranda": (0.0, 7.2), "Alex Lacamoire": (0.0, 2.9), "Barack Obama": (7.2, 9.2)}


def named_tracks(tracks: Any, windows: dict[str, tuple[float, float]]) -> tuple[dict[str, int], int]:
    """``(tracks named per person, tracks named outside that person's time window)`` of a clip's
    tracks; a person without a window is never in the clip, so every track named them is wrong."""
    named: dict[str, int] = {}
    wrong = 0
    for t in tracks:
        if t.name is None:
            continue
        named[t.name] = named.get(t.name, 0) + 1
        low, high = windows.get(t.name, (0.0, -1.0))
        wrong += not (low <= t.first and t.last <= high)
    return named, wrong


def _sampling(
    clip: Path, work: Path, data: Path, pipeline: Pipeline, rates: Sequence[float] = (1, 2, 3, 5)
) -> Iterator[dict]:
    """The sample clip at several sampling rates: tracks named per person, names outside that person's
    scenes (wrong), and the time: what the default rate was chosen from."""
    from faceid.video import identify_video

    gallery = clip_gallery(work, data, pipeline)
    for rate in rates:
        start = time.perf_counter()
        result = identify_video(clip, gallery, pipeline, fps=rate)
        wall = time.perf_counter() - start
        named, wrong = named_tracks(result.tracks, CLIP_WINDOWS)
        yield {
            "figure": "video_sampling",
            "sample_fps": rate,
            "tracks": len(result.tracks),
            "named_tracks": named,
            "wrong_names": wrong,
            "wall_s": round(wall, 2),
            "realtime_factor": round(result.duration / wall, 2),
            "load": common.load(),
        }


def _realtime(path: Path, gallery: Any, pipeline: Pipeline, fps: float, full_every: int) -> dict:
    """One timed run of ``identify_video`` with whole-frame searches every ``full_every`` samples."""
    from faceid.video import identify_video

    timings: list = []

    def hook(engine: Any) -> None:
        engine.full_every = full_every
        timings.append(engine)

    cpu, start = time.process_time(), time.perf_counter()
    result = identify_video(path, gallery, pipeline, fps=fps, engine_hook=hook)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    parts = timings[0].timings
    work_s = parts.detect + parts.embed + parts.track + parts.decide
    return {
        "figure": "video_realtime",
        "model": pipeline.key.model,
        "sample_fps": fps,
        "full_every": full_every,
        "video_s": round(result.duration, 2),
        "frames_sampled": result.sampled,
        "tracks": len(result.tracks),
        "named_tracks": sorted(t.name for t in result.tracks if t.name is not None),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "realtime_factor": round(result.duration / wall, 2) if wall > 0 else None,
        "parts_s": {
            "decode_and_rest": round(wall - work_s, 2),
            "detect": round(parts.detect, 2),
            "embed": round(parts.embed, 2),
            "track": round(parts.track, 3),
            "decide": round(parts.decide, 3),
        },
        "load": common.load(),
    }


def figures(
    work: Path,
    data: Path | None,
    *,
    pipelines: Sequence[tuple[str, Callable[[], Pipeline]]] = (),
    fps: float | None = None,
    soak: float = 600.0,
    tiny: bool = False,
) -> Iterator[dict]:
    """The figures (see the module docstring). ``pipelines``: (detector name, pipeline maker) pairs
    [default: the default pipeline, MTCNN]. Needs the sample clip in ``data/video``. ``tiny``: the
    640x360 clip only, one sampling rate, a 10 s soak (checks every figure is made)."""
    from faceid.errors import FaceIDError
    from faceid.pipeline import Pipeline
    from faceid.video import DEFAULT_FPS, identify_video
    from faceid.video.engine import FULL_DETECT_EVERY
    from faceid.video.watch import watch

    clip = data / "video" / "short_hamilton_clip.mp4" if data is not None else None
    if data is None or clip is None or not clip.is_file():
        yield {"figure": "video_realtime", "skipped": "the sample clip (../shared/data/video) is not here"}
        return
    fps = fps or DEFAULT_FPS
    work.mkdir(parents=True, exist_ok=True)
    hd = work / "clip-1280x720.mp4"
    if not tiny and not hd.exists():
        scaled_copy(clip, hd, (1280, 720))
    pipelines = pipelines or (("mtcnn", Pipeline),)
    for detector, make in pipelines:
        try:
            pipeline = make()
            gallery = clip_gallery(work, data, pipeline)
        except FaceIDError as exc:
            yield {"figure": "video_realtime", "detector": detector, "skipped": str(exc)}
            continue
        identify_video(clip, gallery, pipeline, fps=fps)  # warm-up: models loaded
        for size, path in (("640x360", clip),) if tiny else (("640x360", clip), ("1280x720", hd)):
            whole = None
            for full_every in (1, FULL_DETECT_EVERY):  # whole frames every sample, then the default
                row = _realtime(path, gallery, pipeline, fps, full_every)
                row.update(size=size, detector=detector)
                if whole is None:
                    whole = row
                    continue
                row["vs_whole_frames"] = {
                    "full_every": 1,
                    "realtime_factor": whole["realtime_factor"],
                    "cpu_s": whole["cpu_s"],
                    "cpu_ratio": round(row["cpu_s"] / whole["cpu_s"], 2) if whole["cpu_s"] else None,
                    "wall_ratio": round(row["wall_s"] / whole["wall_s"], 2) if whole["wall_s"] else None,
                    "tracks": whole["tracks"],
                }
                yield row
    yield from _sampling(clip, work, data, pipelines[0][1](), rates=(3,) if tiny else (1, 2, 3, 5))
    soak = min(soak, 10.0) if tiny else soak
    if soak <= 0:
        return
    pipeline = pipelines[0][1]()
    gallery = clip_gallery(work, data, pipeline)
    stop = threading.Event()
    samples: list[tuple[float, int]] = []
    events = [0]

    def sample() -> None:
        begin = time.monotonic()
        while not stop.wait(5.0):
            samples.append((time.monotonic() - begin, common.rss()))
            if time.monotonic() - begin >= soak:
                stop.set()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stats = watch(
        str(clip),
        gallery,
        pipeline,
        on_event=lambda e: events.__setitem__(0, events[0] + 1),
        stop=stop,
        fps=fps,
        loop=True,
    )
    sampler.join()
    t = np.array([s for s, _ in samples[1:]], dtype=np.float64)
    mib = np.array([r / 2**20 for _, r in samples[1:]], dtype=np.float64)
    slope = float(np.polyfit(t / 60.0, mib, 1)[0]) if len(t) >= 3 else None
    yield {
        "figure": "video_watch_memory",
        "seconds": round(soak, 1),
        "loops": stats.connects,
        "frames_sampled": stats.sampled,
        "events": events[0],
        "rss_mib_first": round(float(mib[0]), 1) if len(mib) else None,
        "rss_mib_last": round(float(mib[-1]), 1) if len(mib) else None,
        "rss_slope_mib_per_min": round(slope, 3) if slope is not None else None,
        "load": common.load(),
    }
