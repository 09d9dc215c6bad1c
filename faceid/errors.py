"""Exceptions raised by faceid.

Every error faceid raises on purpose is a :class:`FaceIDError`, and every class of them is
defined here (the modules that raise them re-export theirs). The CLI turns one into a single line
on stderr and a non-zero exit status; the server answers it with the HTTP status its class maps
to (:func:`faceid.server.errors.status_of`), never by its words. The tree::

    FaceIDError
    ├── ModelError
    │   ├── ModelNotFoundError
    │   ├── ModelIntegrityError
    │   └── ModelLicenceError
    ├── EmbeddingKeyError (also a ValueError)
    ├── UncalibratedError
    ├── ImageError (also a ValueError)
    │   ├── ImageTooLargeError
    │   └── UnsupportedImageError
    ├── OptionError (also a ValueError)
    ├── VideoError (also a ValueError)
    ├── PipelineError
    ├── FaceCountError
    ├── InvalidNameError (also a ValueError)
    │   └── NameTakenError
    ├── PersonNotFoundError (also a KeyError)
    ├── FaceNotFoundError (also a KeyError)
    ├── GroupNotFoundError (also a KeyError)
    ├── KeyExistsError
    ├── KeyNotFoundError (also a KeyError)
    ├── RayUnavailableError
    └── GalleryError
        ├── GalleryCorruptError
        ├── GalleryBusyError
        ├── ModelMismatchError
        └── MigrationError
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "FaceCountError",
    "FaceIDError",
    "FaceNotFoundError",
    "GalleryBusyError",
    "GalleryCorruptError",
    "EmbeddingKeyError",
    "GalleryError",
    "GroupNotFoundError",
    "ImageError",
    "ImageTooLargeError",
    "InvalidNameError",
    "KeyExistsError",
    "KeyNotFoundError",
    "MigrationError",
    "ModelError",
    "ModelIntegrityError",
    "ModelLicenceError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "NameTakenError",
    "OptionError",
    "PersonNotFoundError",
    "PipelineError",
    "RayUnavailableError",
    "UncalibratedError",
    "UnsupportedImageError",
    "VideoError",
]


class FaceIDError(Exception):
    """Base class of every error faceid raises on purpose."""


class ModelError(FaceIDError):
    """A model file is missing, unreadable or not the file it should be."""


class ModelNotFoundError(ModelError):
    """The model's weight file is not on this machine; the message names the command that gets it."""


class ModelIntegrityError(ModelError):
    """A model file's SHA-256 is not the one in the registry."""


class ModelLicenceError(ModelError):
    """A model's licence restricts its use and was not accepted when pulling it."""


class EmbeddingKeyError(FaceIDError, ValueError):
    """An embedding key has an invalid field, or disagrees with the registered model it names."""


class UncalibratedError(FaceIDError):
    """No threshold is known for a gallery: none was measured for its embedding key, none calibrated."""


class ImageError(FaceIDError, ValueError):
    """An image cannot be read: unreadable, truncated, unsupported, or too large."""


class ImageTooLargeError(ImageError):
    """An image file, or the pixels it declares, exceed what faceid reads (a decompression bomb too)."""


class UnsupportedImageError(ImageError):
    """The bytes are not an image, or in a format faceid cannot decode."""


class OptionError(FaceIDError, ValueError):
    """An option (of a pipeline, detector, embedder...) is unknown or out of range; raised when it is given."""


class PipelineError(FaceIDError):
    """The face pipeline failed on an image it had decoded (for example, the detector returned a
    result that does not fit); a batch reports it against that image and goes on."""


class FaceCountError(FaceIDError):
    """Enrolment expected exactly one face in a photo and found another number."""

    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


class InvalidNameError(FaceIDError, ValueError):
    """A person's name is empty, too long, or holds control characters."""


class NameTakenError(InvalidNameError):
    """The name belongs to another enrolled person (renaming or naming onto it would merge two people)."""


class PersonNotFoundError(FaceIDError, KeyError):
    """No person of that name is enrolled in the gallery."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class GalleryError(FaceIDError):
    """The gallery cannot be opened or written."""


class GalleryCorruptError(GalleryError):
    """The gallery's files are damaged or disagree with each other; the message says how to repair."""


class GalleryBusyError(GalleryError):
    """Another process held the gallery's write lock for longer than the timeout."""


class ModelMismatchError(GalleryError):
    """The gallery's embeddings were made by another model or preprocessing than the one asked for."""


class FaceNotFoundError(FaceIDError, KeyError):
    """No enrolled face has that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class GroupNotFoundError(FaceIDError, KeyError):
    """No group of kept unknown faces has that id (it was named, or the faces were grouped again)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class VideoError(FaceIDError, ValueError):
    """A video or stream cannot be read: missing, empty, corrupt, not a video, or it stopped."""


class KeyExistsError(FaceIDError):
    """An API key of that name exists already."""


class KeyNotFoundError(FaceIDError, KeyError):
    """No API key of that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MigrationError(GalleryError):
    """A migration stopped without changing the gallery; ``unmigrated`` lists the faces that stopped it
    (:class:`faceid.migrate.Unmigrated` records)."""

    def __init__(self, message: str, unmigrated: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.unmigrated = list(unmigrated)


class RayUnavailableError(FaceIDError):
    """Ray (with its data extra) is not installed."""
