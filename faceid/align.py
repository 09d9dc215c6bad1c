"""Turn a detection into the square crop FaceNet takes.

Two methods, both measured on LFW (README, "Choosing the defaults"):

- ``"margin"``: the MTCNN box grown by ``margin`` (a fraction of the box, split over both sides),
  clipped to the image and resized to ``size`` x ``size``, which is how FaceNet's training crops
  were made.
- ``"similarity"``: a 5-point similarity transform (rotation, uniform scale, translation; least
  squares, Umeyama) that puts the landmarks onto a fixed template, then the same framing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceid.detect import Detection

__all__ = ["ALIGN_METHODS", "TEMPLATE_160", "crop_faces", "crop_margin", "crop_similarity", "similarity_transform"]

ALIGN_METHODS = ("margin", "similarity")

#: Where the five landmarks (eyes, nose, mouth corners) sit in a square crop, as fractions of its
#: side: the mean landmark positions in margin-0.2 crops of the 7,701 LFW pairs images, made
#: left-right symmetric, so that both methods frame a face alike.
TEMPLATE_160 = np.array(
    [[0.3110, 0.4017], [0.6890, 0.4017], [0.5000, 0.5666], [0.3316, 0.7089], [0.6684, 0.7089]], dtype=np.float64
)


def crop_margin(image: np.ndarray, box: Sequence[int], *, margin: float = 0.2, size: int = 160) -> np.ndarray:
    """``(size, size, 3)`` uint8 crop of ``box`` (x, y, w, h) grown by ``margin`` and clipped to the image."""
    import cv2

    x, y, w, h = (float(v) for v in box)
    height, width = image.shape[:2]
    x0 = int(max(0, np.floor(x - margin * w / 2)))
    y0 = int(max(0, np.floor(y - margin * h / 2)))
    x1 = int(min(width, np.ceil(x + w + margin * w / 2)))
    y1 = int(min(height, np.ceil(y + h + margin * h / 2)))
    patch = image[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
    interpolation = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(patch, (size, size), interpolation=interpolation))


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity transform mapping ``source`` points onto ``target`` (Umeyama 1991)."""
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(covariance)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / variance if variance > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def crop_similarity(image: np.ndarray, landmarks: np.ndarray, *, size: int = 160) -> np.ndarray:
    """``(size, size, 3)`` uint8 crop with the five ``landmarks`` moved onto :data:`TEMPLATE_160`."""
    import cv2

    matrix = similarity_transform(landmarks, TEMPLATE_160 * size)
    return np.ascontiguousarray(
        cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    )


def crop_faces(
    image: np.ndarray, detections: Sequence[Detection], *, method: str = "margin", margin: float = 0.2, size: int = 160
) -> np.ndarray:
    """Crops of every detection as one ``(N, size, size, 3)`` uint8 array."""
    if method not in ALIGN_METHODS:
        raise ValueError(f"unknown alignment {method!r}; choose one of {', '.join(ALIGN_METHODS)}")
    crops = [
        crop_margin(image, d.box, margin=margin, size=size)
        if method == "margin"
        else crop_similarity(image, d.landmark_array(), size=size)
        for d in detections
    ]
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), dtype=np.uint8)
