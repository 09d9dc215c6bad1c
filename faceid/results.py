"""What identification hands out: for each image an :class:`Identification`, for each face a
:class:`FaceMatch` with its status (``"known"``, ``"unknown"``, ``"ambiguous"``) and candidates.

Plain frozen data, shared by :mod:`faceid.identify` (which makes it) and :mod:`faceid.draw` and
the CLI (which show it), so that none of them needs to import another. Similarities are cosine
similarities of unit vectors, higher is closer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faceid.detect import Detection
from faceid.thresholds import DecisionParams

__all__ = ["AMBIGUOUS", "KNOWN", "UNKNOWN", "Candidate", "FaceMatch", "Identification"]

KNOWN, UNKNOWN, AMBIGUOUS = "known", "unknown", "ambiguous"


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
