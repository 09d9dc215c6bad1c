"""1:1 verification: are the faces in two photos the same person?

Each photo gives one face: its largest, or the one at a chosen box. Their cosine similarity
(unit vectors, higher is closer) is compared with a threshold measured for the embedding model at
a stated false-match rate (FMR: the share of different-person pairs called the same), not with
the identification threshold: a 1:1 question has no gallery, so neither the decision score's
discount for other people nor its per-size tables apply. The thresholds are in
:data:`faceid.thresholds.VERIFY_TABLES`, measured on impostor pairs of LFW people that LFW's own
``pairs.txt`` does not use (``faceid eval verify``), and reported on ``pairs.txt``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from faceid.detect import Detection
from faceid.errors import FaceCountError
from faceid.images import LoadedImage, read_image
from faceid.thresholds import VERIFY_FMR, verify_threshold

if TYPE_CHECKING:  # pragma: no cover
    from faceid.embedding_key import EmbeddingKey
    from faceid.pipeline import Face, Pipeline

__all__ = [
    "parse_box",
    "VERIFY_FMR",
    "Verification",
    "VerifiedFace",
    "choose_face",
    "verify_faces",
    "verify_files",
    "verify_images",
]

log = logging.getLogger(__name__)

#: A chosen box picks the detected face that overlaps it most, if by at least this much (IoU).
BOX_OVERLAP = 0.3


@dataclass(frozen=True)
class VerifiedFace:
    """The face a photo gave: where it came from, its detection, and how many faces the photo had."""

    source: str
    detection: Detection
    faces: int

    def to_json(self) -> dict:
        d = self.detection
        return {"source": self.source, "box": list(d.box), "confidence": round(d.confidence, 4), "faces": self.faces}


@dataclass(frozen=True)
class Verification:
    """The answer to "same person?": ``same`` is ``similarity >= threshold``; ``fmr`` is the
    false-match rate the threshold was measured at (``None`` for a threshold passed in)."""

    same: bool
    similarity: float
    threshold: float
    fmr: float | None
    model: str
    a: VerifiedFace
    b: VerifiedFace

    def to_json(self) -> dict:
        return {
            "same": self.same,
            "similarity": round(self.similarity, 4),
            "threshold": round(self.threshold, 4),
            "fmr": self.fmr,
            "model": self.model,
            "a": self.a.to_json(),
            "b": self.b.to_json(),
        }


#: Largest coordinate a box may name (a photo's side is far smaller).
MAX_COORDINATE = 1_000_000


def parse_box(text: str | None, option: str) -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` as four integers (pixels), or ``None`` for ``None``.

    Raises:
        OptionError: not four finite numbers up to :data:`MAX_COORDINATE` with a positive width
            and height (``option`` names it).
    """
    import math

    from faceid.errors import OptionError

    if text is None:
        return None
    try:
        numbers = [float(v) for v in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for v in numbers):
        raise OptionError(
            f"{option} must be x,y,width,height: four numbers of pixels up to {MAX_COORDINATE}, got {text[:60]!r}"
        )
    values = tuple(int(round(v)) for v in numbers)
    if values[2] <= 0 or values[3] <= 0:
        raise OptionError(f"{option} must have a width and height above 0, got {text[:60]!r}")
    return (values[0], values[1], values[2], values[3])


def box_overlap(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def choose_face(faces: Sequence[Face], source: str, box: Sequence[int] | None = None) -> Face:
    """The largest of ``faces``, or the one overlapping ``box`` (x, y, w, h) most.

    Raises:
        FaceCountError: no face, or none at ``box``; the message names ``source``.
    """
    if not faces:
        raise FaceCountError(f"{source}: no face found; verify needs a face in each photo", 0)
    if box is None:
        return max(faces, key=lambda f: (f.detection.area, f.detection.confidence))
    overlap, face = max(((box_overlap(f.detection.box, box), f) for f in faces), key=lambda t: t[0])
    if overlap < BOX_OVERLAP:
        raise FaceCountError(f"{source}: no face found at box {list(box)} ({len(faces)} elsewhere)", 0)
    return face


def verify_faces(
    a: Face,
    b: Face,
    key: EmbeddingKey,
    *,
    sources: tuple[str, str] = ("a", "b"),
    counts: tuple[int, int] = (1, 1),
    fmr: float | None = None,
    threshold: float | None = None,
) -> Verification:
    """Compare two embedded faces. ``threshold`` overrides the one measured for ``key`` at ``fmr``
    (default :data:`~faceid.thresholds.VERIFY_FMR`).

    Raises:
        UncalibratedError: no verification threshold is measured for ``key``.
        OptionError: ``fmr`` is outside the measured range.
    """
    if threshold is None:
        fmr = VERIFY_FMR if fmr is None else fmr
        threshold = verify_threshold(key, fmr)
    else:
        fmr = None
    similarity = float(np.dot(a.embedding.astype(np.float64), b.embedding.astype(np.float64)))
    return Verification(
        same=similarity >= threshold,
        similarity=similarity,
        threshold=float(threshold),
        fmr=fmr,
        model=key.model,
        a=VerifiedFace(sources[0], a.detection, counts[0]),
        b=VerifiedFace(sources[1], b.detection, counts[1]),
    )


def verify_images(
    a: LoadedImage,
    b: LoadedImage,
    pipeline: Pipeline,
    *,
    box_a: Sequence[int] | None = None,
    box_b: Sequence[int] | None = None,
    fmr: float | None = None,
    threshold: float | None = None,
) -> Verification:
    """Verify two decoded images (both detected and embedded in one batch)."""
    found = pipeline.faces_many([a.pixels, b.pixels])
    face_a = choose_face(found[0], a.name, box_a)
    face_b = choose_face(found[1], b.name, box_b)
    return verify_faces(
        face_a,
        face_b,
        pipeline.key,
        sources=(a.name, b.name),
        counts=(len(found[0]), len(found[1])),
        fmr=fmr,
        threshold=threshold,
    )


def verify_files(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    pipeline: Pipeline,
    **options,
) -> Verification:
    """:func:`verify_images` of two image files (``options`` as there).

    Raises:
        ImageError: a file cannot be read (the message names it).
        FaceCountError: a photo has no face (or none at its box).
    """
    return verify_images(read_image(a), read_image(b), pipeline, **options)
