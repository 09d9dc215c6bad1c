"""``faceid bench --only detectors``: MTCNN and YuNet side by side in one run.

Per detector: faces found on the Big Bang and face_recognition photos, false faces on the awkward
photos, the smallest face found, the time per 640x480 photo (:mod:`faceid.detector_figures`); and
per embedding model, how far apart the two detectors' landmarks put the same faces' embeddings
(:mod:`faceid.detector_agreement`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = ["detector_part"]

log = logging.getLogger(__name__)


def detector_part(
    data: Path | None,
    figure: Callable[..., dict],
    *,
    tiny: bool,
    detectors: Sequence[str] = ("mtcnn", "yunet"),
) -> Iterator[dict]:
    """The figures, one dict each (``figure`` adds the load); ``data`` is ``../shared/data``."""
    from faceid.detector_agreement import detector_agreement
    from faceid.detector_figures import detector_figures
    from faceid.errors import ModelNotFoundError
    from faceid.models import DEFAULT_MODEL, FACENET, locate

    try:
        locate("yunet")
    except ModelNotFoundError as exc:
        yield figure("detectors", skipped=str(exc))
        return
    if data is None or not (data / "bigbang").is_dir():
        yield figure("detectors", skipped="../shared/data is not here (set FACEID_DATA)")
        return
    for name in detectors:
        found = detector_figures(data, name, repeats=3 if tiny else 20)
        yield figure("detector_found", **dataclasses.asdict(found))
    photos = sorted((data / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))[::26][: 20 if tiny else 500]
    if not photos:
        return
    for model in (DEFAULT_MODEL,) if tiny else (DEFAULT_MODEL, FACENET):
        try:
            locate(model)
        except ModelNotFoundError as exc:
            yield figure("detector_agreement", model=model, skipped=str(exc))
            continue
        agreement = detector_agreement(photos, model, (detectors[0], detectors[-1]))
        yield figure(
            "detector_agreement",
            photos=f"LFW, every 26th photo of the sorted paths, the first {len(photos)}",
            **dataclasses.asdict(agreement),
        )
