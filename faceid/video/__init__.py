"""Video files and camera streams: faces found on sampled frames, linked into tracks, each track
named once from its frames with the gallery's open-set rule.

- :mod:`~faceid.video.reader`: frames via OpenCV's FFmpeg backend, sampled at a rate;
- :mod:`~faceid.video.tracker`: faces linked into tracks by appearance and place;
- :mod:`~faceid.video.decision`: one decision per track (pooled embedding, or a vote);
- :mod:`~faceid.video.engine`: the three together, frame by frame;
- :mod:`~faceid.video.run`: :func:`identify_video` for files;
- :mod:`~faceid.video.annotate`: annotated videos a browser plays;
- :mod:`~faceid.video.watch`: live sources as start/end events; :mod:`~faceid.video.sinks`: webhook and MQTT.

Measured by :mod:`faceid.bench.video` and :mod:`faceid.eval.video`.

Nothing here is imported by ``import faceid``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faceid.video.reader import VIDEO_SUFFIXES, is_video

if TYPE_CHECKING:
    from faceid.video.results import Track, VideoResult
    from faceid.video.run import DEFAULT_FPS, identify_video, identify_videos

# Imported when first asked for: `faceid identify PHOTO` only asks the reader whether its
# arguments are videos, and the rest (tracking, the pipeline's video paths) costs its cold start.
_LAZY = {
    "Track": "faceid.video.results",
    "VideoResult": "faceid.video.results",
    "DEFAULT_FPS": "faceid.video.run",
    "identify_video": "faceid.video.run",
    "identify_videos": "faceid.video.run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_FPS", "VIDEO_SUFFIXES", "Track", "VideoResult", "identify_video", "identify_videos", "is_video"]
