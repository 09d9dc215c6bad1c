"""What arrives: uploaded files decoded within the limits, and their faces found through the batcher."""

import logging
import os

import numpy as np
from fastapi import UploadFile

from faceid.images import LoadedImage, read_image
from faceid.server.errors import ApiError, one_line
from faceid.server.settings import Settings
from faceid.server.state import State

__all__ = ["decode", "image_faces", "upload_name"]

log = logging.getLogger(__name__)


def decode(data: bytes, name: str, settings: Settings) -> LoadedImage:
    return read_image(data, max_pixels=settings.max_pixels, name=name)


def upload_name(file: UploadFile, i: int = 0) -> str:
    name = os.path.basename((file.filename or "").replace("\\", "/")).strip()
    return one_line(name)[:200] or f"upload-{i + 1}"


def image_faces(state: State, images: list[np.ndarray], names: list[str]) -> list:
    """The faces of each image through the batcher (call from a worker thread), or for an image the
    pipeline failed on, one line saying so, worded as the command line words it. A bug (any other
    exception) propagates: a 500, logged with its traceback, not a bad photo."""
    from faceid.batch import describe_failure, image_failures
    from faceid.server.batching import BatcherStopped

    try:
        return list(state.batcher.submit(images).result())
    except BatcherStopped as exc:
        raise ApiError(503, str(exc)) from None
    except image_failures() as exc:
        if len(images) > 1:  # which one? each alone
            return [image_faces(state, [image], [name])[0] for image, name in zip(images, names)]
        log.error("the face pipeline failed on %s", names[0], exc_info=True)
        return [describe_failure(exc, names[0])]
