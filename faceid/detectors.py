"""The face detectors faceid runs, by name: MTCNN (the default, :mod:`faceid.detect`) and YuNet
(:mod:`faceid.detect_yunet`, OpenCV alone, several times faster).

Both give :class:`~faceid.detect.Detection` lists with the same five landmarks in the same order,
so alignment and embedding do not depend on which found the face; how much their landmarks differ,
and so their embeddings, is measured in docs/detectors.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from faceid.detect import Detection
from faceid.errors import OptionError

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "FaceDetector", "detector_name", "make_detector"]

#: Detector names, as ``--detector`` and a gallery's embedding key spell them.
DETECTORS = ("mtcnn", "yunet")

#: The detector of a new gallery when none is named, and of every gallery that records none.
DEFAULT_DETECTOR = "mtcnn"


@runtime_checkable
class FaceDetector(Protocol):
    """What a pipeline needs of a detector (tests pass fakes with these methods)."""

    @property
    def settings(self) -> dict: ...

    def detect(self, image: np.ndarray) -> list[Detection]: ...

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Detection]]: ...


def check_name(name: object) -> str:
    """``name`` if it is a known detector, else :class:`~faceid.errors.OptionError` naming the known ones."""
    if not isinstance(name, str) or name not in DETECTORS:
        raise OptionError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return name


def make_detector(name: str | None = None, *, min_face_size: int = 20) -> FaceDetector:
    """A new detector by name (default :data:`DEFAULT_DETECTOR`); nothing is loaded until its first image."""
    name = check_name(DEFAULT_DETECTOR if name is None else name)
    if name == "yunet":
        from faceid.detect_yunet import YuNetDetector

        return YuNetDetector(min_face_size=min_face_size)
    from faceid.detect import Detector

    return Detector(min_face_size=min_face_size)


def detector_name(detector: object) -> str:
    """The name of a detector object: its ``name``, or MTCNN's for objects without one (tests' fakes)."""
    name = getattr(detector, "name", DEFAULT_DETECTOR)
    return name if isinstance(name, str) and name in DETECTORS else DEFAULT_DETECTOR
