"""Do two detectors' landmarks change the embeddings? The same faces aligned from each detector's
five landmarks, embedded by one model, compared by cosine similarity.

If both detectors put the landmarks in the same places, every face's two embeddings are equal
(cosine 1); the further their landmarks drift apart, the lower the cosine, and an embedding made
with one detector then meets a gallery built with the other with part of its similarity lost.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DetectorAgreement", "detector_agreement"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorAgreement:
    """One model's embeddings of the same faces aligned from two detectors' landmarks.

    Attributes:
        model: the embedding model.
        detectors: the two detectors compared, ``(a, b)``.
        images: images read.
        compared: images where both detectors found a face (the one nearest the centre is compared).
        found: faces found by each detector (images with at least one face).
        landmark_shift_median, landmark_shift_p95: mean distance between the two detectors' five
            landmarks, as a fraction of detector ``a``'s distance between the eyes.
        cosine_median, cosine_p05, cosine_p01, cosine_min: of the pair of embeddings of each face.
        errors: images that could not be read (named, with the reason).
    """

    model: str
    detectors: tuple[str, str]
    images: int
    compared: int
    found: tuple[int, int]
    landmark_shift_median: float
    landmark_shift_p95: float
    cosine_median: float
    cosine_p05: float
    cosine_p01: float
    cosine_min: float
    errors: tuple[str, ...] = ()


def detector_agreement(
    paths: Sequence[str | os.PathLike],
    model: str,
    detectors: tuple[str, str] = ("mtcnn", "yunet"),
) -> DetectorAgreement:
    """Compare ``detectors`` on ``paths`` (one face an image, as LFW's) with embedding ``model``."""
    from faceid.errors import ImageError
    from faceid.images import load_image
    from faceid.pipeline import Pipeline

    first = Pipeline(model, detector=detectors[0])
    second = Pipeline(model, detector=detectors[1], embedder=first.embedder)
    shifts, cosines, errors = [], [], []
    found = [0, 0]
    for path in paths:
        try:
            image = load_image(path)
        except ImageError as exc:
            errors.append(str(exc))
            continue
        faces = []
        for n, pipeline in enumerate((first, second)):
            detections = pipeline.detector.detect(image)
            found[n] += bool(detections)
            faces.append(_central(detections, image.shape[1], image.shape[0]))
        a, b = faces
        if a is None or b is None:
            continue
        points_a, points_b = a.landmark_array(), b.landmark_array()
        eyes = max(float(np.linalg.norm(points_a[0] - points_a[1])), 1.0)
        shifts.append(float(np.linalg.norm(points_a - points_b, axis=1).mean()) / eyes)
        vectors = np.concatenate([first.embed(image, [a]), second.embed(image, [b])])
        cosines.append(float(vectors[0] @ vectors[1]))
    if not cosines:
        nan = float("nan")
        return DetectorAgreement(
            model, detectors, len(paths), 0, (found[0], found[1]), nan, nan, nan, nan, nan, nan, tuple(errors)
        )
    shift, cosine = np.asarray(shifts), np.asarray(cosines)
    return DetectorAgreement(
        model=model,
        detectors=detectors,
        images=len(paths),
        compared=len(cosines),
        found=(found[0], found[1]),
        landmark_shift_median=round(float(np.median(shift)), 4),
        landmark_shift_p95=round(float(np.percentile(shift, 95)), 4),
        cosine_median=round(float(np.median(cosine)), 4),
        cosine_p05=round(float(np.percentile(cosine, 5)), 4),
        cosine_p01=round(float(np.percentile(cosine, 1)), 4),
        cosine_min=round(float(cosine.min()), 4),
        errors=tuple(errors),
    )


def _central(detections, width: int, height: int):
    """The detection whose box centre is nearest the image's, or ``None``."""
    if not detections:
        return None
    cx, cy = width / 2, height / 2
    return min(detections, key=lambda d: (d.box[0] + d.box[2] / 2 - cx) ** 2 + (d.box[1] + d.box[3] / 2 - cy) ** 2)
