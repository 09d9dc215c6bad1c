"""``faceid bench --only detection``: MTCNN milliseconds per image at several sizes.

See :mod:`faceid.bench` for what each figure means."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from faceid.bench import _common as common


def _photo(width: int, height: int, source: Path) -> np.ndarray:
    import cv2

    from faceid.images import load_image

    return np.ascontiguousarray(cv2.resize(load_image(source), (width, height), interpolation=cv2.INTER_AREA))


def figures(data: Path | None, repeats: int) -> Iterator[dict]:
    from faceid.detect import Detector
    from faceid.images import load_image

    detector = Detector()
    pair = common.SAMPLES / "photos" / "obama_and_biden.jpg"
    lfw = common.lfw_files(data, 16)
    small = load_image(lfw[0]) if lfw else _photo(250, 250, common.SAMPLES / "photos" / "astronaut.jpg")
    for label, image in (
        ("250x250", small),
        ("640x480", _photo(640, 480, pair)),
        ("1920x1080", _photo(1920, 1080, pair)),
    ):
        found = detector.detect(image)
        seconds = common.best(partial(detector.detect, image), repeats)
        yield common.figure(
            "detection", size=label, per_call=1, ms_per_image=round(seconds * 1000, 1), faces=len(found)
        )
    batch = [load_image(p) for p in lfw] if len(lfw) >= 2 else [small] * 16
    detector.detect_many(batch)
    seconds = common.best(lambda: detector.detect_many(batch), repeats)
    yield common.figure(
        "detection", size="250x250", per_call=len(batch), ms_per_image=round(seconds * 1000 / len(batch), 1)
    )
