"""Faces that fill the photo: tight crops, as people cut them from video frames.

MTCNN's smallest window sees a face only with some background around it, so a photo that is
nothing but a face often yields no face at all. :func:`detect_padded` runs the detector again on
each image where it found nothing, with a border of half the image's size on every side and
made small (at most :data:`PADDED_SIDE` pixels: the face then still spans about half of it), and
maps the boxes and landmarks back into the image, clipped to it. A photo with no face costs one
more small detection; one with a face costs nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from faceid.detect import Detection

__all__ = ["PADDED_SIDE", "detect_padded", "map_back", "pad_for_detection"]

#: Longer side of the padded image detection runs on.
PADDED_SIDE = 320


class _Detects(Protocol):
    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Detection]]: ...


def pad_for_detection(image: np.ndarray) -> tuple[np.ndarray, float, int, int]:
    """``image`` with a black border of half its height and width on each side, scaled so its
    longer side is at most :data:`PADDED_SIDE`; returns it, the scale, and the border (x, y) before scaling."""
    import cv2

    h, w = image.shape[:2]
    py, px = h // 2, w // 2
    padded = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    scale = min(1.0, PADDED_SIDE / max(padded.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(padded.shape[1] * scale)), max(1, round(padded.shape[0] * scale)))
        padded = cv2.resize(padded, size, interpolation=cv2.INTER_AREA)
    return padded, scale, px, py


def map_back(d: Detection, scale: float, px: int, py: int, width: int, height: int) -> Detection | None:
    """``d``, found on an image scaled by ``scale`` after a border of ``px``, ``py`` pixels was added,
    in the pixels of the ``width`` x ``height`` original, clipped to it (``None``: nothing of it left)."""
    x0, y0 = d.box[0] / scale - px, d.box[1] / scale - py
    x1, y1 = x0 + d.box[2] / scale, y0 + d.box[3] / scale
    cx0, cy0, cx1, cy1 = max(0, round(x0)), max(0, round(y0)), min(width, round(x1)), min(height, round(y1))
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:
        return None
    landmarks = tuple((float(x / scale - px), float(y / scale - py)) for x, y in d.landmarks)
    return Detection((cx0, cy0, cx1 - cx0, cy1 - cy0), d.confidence, landmarks)


def detect_padded(detector: _Detects, images: Sequence[np.ndarray]) -> list[list[Detection]]:
    """``detector.detect_many(images)``, then for each image with no face, the faces found on it
    padded (see the module docstring), in the image's own pixels."""
    found = detector.detect_many(images)
    empty = [i for i, faces in enumerate(found) if not faces]
    if not empty:
        return found
    padded = [pad_for_detection(images[i]) for i in empty]
    again = detector.detect_many([p[0] for p in padded])
    for i, (_, scale, px, py), faces in zip(empty, padded, again):
        h, w = images[i].shape[:2]
        mapped = [map_back(d, scale, px, py, w, h) for d in faces]
        found[i] = [d for d in mapped if d is not None]
    return found
