"""One error shape for every failure: ``{"error": "one line"}`` with the status that fits.

Library errors map to statuses here and nowhere else; an unexpected exception is logged with its
traceback on the server and answered with a 500 and one line, never the traceback.
"""

from __future__ import annotations

import logging

from faceid.errors import (
    FaceIDError,
    FaceNotFoundError,
    GalleryBusyError,
    ImageError,
    InvalidNameError,
    ModelMismatchError,
    PersonNotFoundError,
)

__all__ = ["ApiError", "image_status", "status_of"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer: ``status`` and a one-line ``message`` (plus optional extra fields)."""

    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def image_status(message: str) -> int:
    """413 for an image or file too large (a bomb too), 415 for what is not an image, else 422.

    The words are :mod:`faceid.images`' own, so the message the CLI prints is the one answered.
    """
    if "pixels, more than" in message or "decompression bomb" in message or "bytes, more than" in message:
        return 413
    if "not an image" in message:
        return 415
    return 422


def status_of(exc: FaceIDError) -> int:
    """The HTTP status for a library error."""
    if isinstance(exc, ImageError):
        return image_status(str(exc))
    if isinstance(exc, (PersonNotFoundError, FaceNotFoundError)):
        return 404
    if isinstance(exc, InvalidNameError):
        return 409 if "already enrolled" in str(exc) else 400
    if isinstance(exc, ModelMismatchError):
        return 409
    if isinstance(exc, GalleryBusyError):
        return 503
    from faceid.apikeys import KeyExistsError, KeyNotFoundError

    if isinstance(exc, KeyExistsError):
        return 409
    if isinstance(exc, KeyNotFoundError):
        return 404
    return 500
