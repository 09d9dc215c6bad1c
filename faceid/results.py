"""What identification hands out: for each image an :class:`Identification`, for each face a
:class:`FaceMatch` with its status (``"known"``, ``"unknown"``, ``"ambiguous"``) and candidates.

Plain frozen data, shared by :mod:`faceid.identify` (which makes it) and :mod:`faceid.draw` and
the CLI (which show it), so that none of them needs to import another. Similarities are cosine
similarities of unit vectors, higher is closer.

The ground floor: the base result types (:class:`Detection`, :class:`Face`,
:class:`DecisionParams` and the identification results) live here, and this module imports no
faceid module but :mod:`faceid.errors`. Their old homes (``faceid.detect.Detection``,
``faceid.pipeline.Face``, ``faceid.thresholds.DecisionParams`` and ``BETA``) re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "AMBIGUOUS",
    "BETA",
    "KNOWN",
    "UNKNOWN",
    "Candidate",
    "DecisionParams",
    "Detection",
    "Face",
    "FaceMatch",
    "Identification",
]

KNOWN, UNKNOWN, AMBIGUOUS = "known", "unknown", "ambiguous"

#: Weight of the best other person's similarity in the decision score. Measured on LFW open-set
#: with one enrolled photo: DIR at FPIR 1% 0.709 / 0.799 / 0.820 / 0.829 / 0.824 / 0.814 and at
#: FPIR 0.1% 0.271 / 0.285 / 0.324 / 0.365 / 0.383 / 0.377 for beta 0 / .3 / .4 / .5 / .6 / .7:
#: 0.6 is within 0.005 of the best at 1% and the best at 0.1%.
BETA = 0.6


@dataclass(frozen=True)
class Detection:
    """One detected face, in pixels of the image as displayed.

    Attributes:
        box: ``(x, y, width, height)``, integers, clipped to the image.
        confidence: MTCNN's final-stage score in [0, 1].
        landmarks: five ``(x, y)`` points: left eye, right eye, nose, left and right mouth
            corner (left and right as seen in the image).
    """

    box: tuple[int, int, int, int]
    confidence: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]

    def landmark_array(self) -> np.ndarray:
        """Landmarks as a ``(5, 2)`` float32 array."""
        return np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)


@dataclass(frozen=True)
class Face:
    """A detected face and its ``(D,)`` float32 unit embedding."""

    detection: Detection
    embedding: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class DecisionParams:
    """The numbers an identification used, and where the threshold came from."""

    threshold: float
    margin: float
    beta: float = BETA
    source: str = "explicit"


@dataclass(frozen=True)
class Candidate:
    """An enrolled person and their score for a face (best similarity over their faces)."""

    name: str
    similarity: float


@dataclass(frozen=True)
class FaceMatch:
    """The decision for one face.

    Attributes:
        detection: where the face is.
        status: ``"known"``, ``"unknown"`` or ``"ambiguous"``.
        name: the person, for ``"known"`` only, else ``None``.
        similarity: the named person's similarity; for other faces, the best similarity any person
            had (``-1.0`` when the gallery is empty).
        score: the decision score (see :mod:`faceid.identify`) of that same person.
        candidates: the best people for this face, best first.
        kept_as: with ``identify(..., remember=True)``, the id of the kept unknown face (``None``:
            not kept: known, ambiguous, or too small or unsure to keep).
        not_kept: with ``remember``, why an unknown face was not kept (``"confidence 0.91 below
            0.95"``); ``None`` otherwise.
        kept_before: with ``remember``, the face was already kept (same photo and box).
    """

    detection: Detection
    status: str
    name: str | None
    similarity: float
    score: float
    candidates: tuple[Candidate, ...]
    kept_as: int | None = None
    not_kept: str | None = None
    kept_before: bool = False

    def to_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.kept_as is not None or self.not_kept is not None:
            extra = {"kept_as": self.kept_as, "not_kept": self.not_kept}
            if self.kept_before:
                extra["kept_before"] = True
        return extra | {
            "box": list(self.detection.box),
            "confidence": round(self.detection.confidence, 4),
            "name": self.name,
            "similarity": round(self.similarity, 4),
            "score": round(self.score, 4),
            "status": self.status,
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.detection.landmarks],
            "candidates": [{"name": c.name, "similarity": round(c.similarity, 4)} for c in self.candidates],
        }


@dataclass(frozen=True)
class Identification:
    """Every face of one image, or the reason the image could not be read.

    ``params`` are the threshold, margin and beta the decision used, and where they came from.
    """

    image: str
    faces: tuple[FaceMatch, ...]
    params: DecisionParams
    error: str | None = None
    width: int | None = None
    height: int | None = None
    annotated: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "annotated": self.annotated,
            "image": self.image,
            "faces": [face.to_json() for face in self.faces],
            "error": self.error,
            "threshold": round(self.params.threshold, 4),
            "margin": round(self.params.margin, 4),
            "beta": round(self.params.beta, 4),
            "threshold_source": self.params.source,
            "width": self.width,
            "height": self.height,
        }
