"""Turn a detection into the square crop an embedding model takes.

Three methods; the first two measured for FaceNet on LFW (docs/accuracy.md, "Choosing the defaults"):

- ``"margin"``: the MTCNN box grown by ``margin`` (a fraction of the box, split over both sides),
  clipped to the image and resized to ``size`` x ``size``, which is how FaceNet's training crops
  were made.
- ``"similarity"``: a 5-point similarity transform (rotation, uniform scale, translation; least
  squares, Umeyama) that puts the landmarks onto a fixed template, then the same framing.
- ``"arcface-112"``: the same transform onto the standard 112x112 ArcFace template
  (:data:`ARCFACE_TEMPLATE_112`, InsightFace's ``arcface_dst``), black outside the photo, as
  ArcFace-family models (SFace, InsightFace's) were trained on; scaled for another ``size``.

A detection without landmarks (all five points equal, as in a fallback box) gets them placed
where they sit on average in its box (:func:`landmarks_from_box`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceid.detect import Detection
from faceid.embedding_key import ALIGN_METHODS

__all__ = [
    "ALIGN_METHODS",
    "ARCFACE_TEMPLATE_112",
    "TEMPLATE_160",
    "crop_arcface",
    "crop_faces",
    "crop_margin",
    "crop_similarity",
    "face_landmarks",
    "landmarks_from_box",
    "similarity_transform",
]


#: The five landmarks (left eye, right eye, nose, left and right mouth corner, as seen in the
#: image) in a 112x112 ArcFace crop, in pixels: the template InsightFace and OpenCV's SFace align to.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

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


def crop_arcface(image: np.ndarray, landmarks: np.ndarray, *, size: int = 112) -> np.ndarray:
    """``(size, size, 3)`` uint8 crop with the five ``landmarks`` moved onto :data:`ARCFACE_TEMPLATE_112`
    (scaled by ``size / 112``); pixels outside the photo are black, as in InsightFace's ``norm_crop``."""
    import cv2

    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE_112 * (size / 112.0))
    return np.ascontiguousarray(
        cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
    )


def landmarks_from_box(box: Sequence[int]) -> np.ndarray:
    """``(5, 2)`` landmarks where they sit on average in an MTCNN ``box`` (x, y, w, h): :data:`TEMPLATE_160`
    is their mean place in the box grown by 0.2."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = x - 0.1 * w, y - 0.1 * h
    return np.array([[x0 + fx * 1.2 * w, y0 + fy * 1.2 * h] for fx, fy in TEMPLATE_160], dtype=np.float64)


def face_landmarks(detection: Detection) -> np.ndarray:
    """The ``(5, 2)`` landmarks the similarity crops use: the detection's, or :func:`landmarks_from_box`'s
    for a detection without them."""
    points = detection.landmark_array()
    if np.ptp(points, axis=0).max() < 1e-6:  # no landmarks (a fallback box)
        return landmarks_from_box(detection.box)
    return points


def crop_faces(
    image: np.ndarray, detections: Sequence[Detection], *, method: str = "margin", margin: float = 0.2, size: int = 160
) -> np.ndarray:
    """Crops of every detection as one ``(N, size, size, 3)`` uint8 array."""
    if method not in ALIGN_METHODS:
        raise ValueError(f"unknown alignment {method!r}; choose one of {', '.join(ALIGN_METHODS)}")
    if method == "margin":
        crops = [crop_margin(image, d.box, margin=margin, size=size) for d in detections]
    elif method == "similarity":
        crops = [crop_similarity(image, face_landmarks(d), size=size) for d in detections]
    else:
        crops = [crop_arcface(image, face_landmarks(d), size=size) for d in detections]
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), dtype=np.uint8)
