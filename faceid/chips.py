"""Making a face chip: the piece of the photo around one face that every registered model's crop
reads (see :mod:`faceid.gallery.chips` for what a chip is and how the gallery keeps it).

Pixel work, beside :mod:`faceid.align` and :mod:`faceid.draw`: the gallery stores and returns the
chip's bytes and never imports the aligner or the detector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceid.gallery.chips import CHIP_FACE_SIDE, CHIP_MARGIN, FaceChip
from faceid.results import Detection

__all__ = ["make_chip"]


def _footprint(box: Sequence[float], landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The photo region every registered crop of this face reads: ``(x0, y0, x1, y1)``, unclipped."""
    from faceid.align import ARCFACE_TEMPLATE_112, TEMPLATE_160, similarity_transform

    x, y, w, h = (float(v) for v in box)
    xs = [x - CHIP_MARGIN * w / 2, x + w + CHIP_MARGIN * w / 2]
    ys = [y - CHIP_MARGIN * h / 2, y + h + CHIP_MARGIN * h / 2]
    for template, side in ((ARCFACE_TEMPLATE_112, 112.0), (TEMPLATE_160 * 160.0, 160.0)):
        matrix = similarity_transform(landmarks, template)
        inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
        corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], dtype=np.float64)
        points = corners @ inverse.T
        xs += list(points[:, 0])
        ys += list(points[:, 1])
    return min(xs), min(ys), max(xs), max(ys)


def make_chip(image: np.ndarray, detection: Detection) -> FaceChip:
    """The chip of one detected face of ``image`` (``(H, W, 3)`` uint8 RGB)."""
    import cv2

    from faceid.align import face_landmarks

    landmarks = face_landmarks(detection)
    height, width = image.shape[:2]
    fx0, fy0, fx1, fy1 = _footprint(detection.box, landmarks)
    # two pixels more on each side for the interpolation of the crops' edge pixels
    x0, y0 = max(0, int(np.floor(fx0)) - 2), max(0, int(np.floor(fy0)) - 2)
    x1, y1 = min(width, int(np.ceil(fx1)) + 2), min(height, int(np.ceil(fy1)) + 2)
    if x1 <= x0 or y1 <= y0:  # a box outside the photo (not from a detector): keep the whole photo
        x0, y0, x1, y1 = 0, 0, width, height
    patch = image[y0:y1, x0:x1]
    side = max(detection.box[2], detection.box[3])
    shrink = min(1.0, CHIP_FACE_SIDE / side) if side > 0 else 1.0
    if shrink < 1.0:
        new_w, new_h = max(1, round(patch.shape[1] * shrink)), max(1, round(patch.shape[0] * shrink))
        patch = cv2.resize(patch, (new_w, new_h), interpolation=cv2.INTER_AREA)
    sx, sy = patch.shape[1] / (x1 - x0), patch.shape[0] / (y1 - y0)
    bx, by, bw, bh = (float(v) for v in detection.box)
    box = ((bx - x0) * sx, (by - y0) * sy, bw * sx, bh * sy)
    points = (landmarks - np.array([x0, y0], dtype=np.float64)) * np.array([sx, sy])
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(patch[:, :, ::-1]))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise ValueError("could not encode a face chip")
    return FaceChip(
        encoded.tobytes(),
        box,
        tuple((float(px), float(py)) for px, py in points),
        (x0, y0),
        (float(sx), float(sy)),
    )
