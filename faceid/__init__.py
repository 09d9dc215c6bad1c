"""faceid: find every face in a photo and name the people you enrolled, or say "unknown".

The pipeline: MTCNN detection -> crop -> FaceNet embedding (unit vectors; similarity is their
cosine, higher is closer) -> gallery search (SQLite + FAISS) -> open-set decision.

    >>> import faceid
    >>> with faceid.Gallery("gallery") as gallery:
    ...     faceid.enroll(gallery, "penny", ["penny1.jpg", "penny2.jpg"])
    ...     for result in faceid.identify(["party.jpg"], gallery):
    ...         print([(face.name, face.status) for face in result.faces])

Importing faceid is cheap: TensorFlow, mtcnn and FAISS load when a model or index is first used.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

# FAISS's OpenMP threads spin while they wait for work by default. On a machine whose other cores
# are busy that spinning steals them: measured here with the other core loaded, building a small
# approximate index took 2.4-7.9 s spinning and 0.06-0.33 s passive. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from faceid.errors import (
    EmbeddingKeyError,
    FaceCountError,
    FaceIDError,
    GalleryBusyError,
    GalleryCorruptError,
    GalleryError,
    ImageError,
    ImageTooLargeError,
    InvalidNameError,
    ModelError,
    ModelIntegrityError,
    ModelLicenceError,
    ModelMismatchError,
    ModelNotFoundError,
    NameTakenError,
    OptionError,
    PersonNotFoundError,
    PipelineError,
    UncalibratedError,
    UnsupportedImageError,
)

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "Detection",
    "Detector",
    "EnrollResult",
    "Embedder",
    "EmbeddingKey",
    "EmbeddingKeyError",
    "Face",
    "FaceCountError",
    "FaceIDError",
    "FaceMatch",
    "Gallery",
    "GalleryBusyError",
    "GalleryCorruptError",
    "GalleryError",
    "Identification",
    "ImageError",
    "ImageTooLargeError",
    "InvalidNameError",
    "ModelError",
    "ModelIntegrityError",
    "ModelLicenceError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "NameTakenError",
    "OptionError",
    "PersonNotFoundError",
    "Pipeline",
    "PipelineError",
    "UncalibratedError",
    "UnsupportedImageError",
    "YuNetDetector",
    "enroll",
    "enroll_folders",
    "identify",
    "identify_image",
    "load_image",
]

# name -> module; resolved on first use so that `import faceid` stays light.
_LAZY = {
    "Candidate": "faceid.results",
    "Detection": "faceid.detect",
    "Detector": "faceid.detect",
    "YuNetDetector": "faceid.detect_yunet",
    "EnrollResult": "faceid.enroll",
    "Embedder": "faceid.embed",
    "EmbeddingKey": "faceid.embedding_key",
    "Face": "faceid.pipeline",
    "FaceMatch": "faceid.results",
    "Gallery": "faceid.gallery",
    "Identification": "faceid.results",
    "Pipeline": "faceid.pipeline",
    "enroll": "faceid.enroll",
    "enroll_folders": "faceid.enroll",
    "identify": "faceid.identify",
    "identify_image": "faceid.identify",
    "load_image": "faceid.images",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faceid' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from faceid.detect import Detection, Detector
    from faceid.detect_yunet import YuNetDetector
    from faceid.embed import Embedder
    from faceid.embedding_key import EmbeddingKey
    from faceid.enroll import EnrollResult, enroll, enroll_folders
    from faceid.gallery import Gallery
    from faceid.identify import identify, identify_image
    from faceid.images import load_image
    from faceid.pipeline import Face, Pipeline
    from faceid.results import Candidate, FaceMatch, Identification
