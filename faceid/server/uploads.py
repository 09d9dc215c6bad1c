"""What arrives: uploaded files decoded within the limits, and their faces found through the batcher."""

import logging
import os

import numpy as np
from fastapi import UploadFile

from faceid.images import LoadedImage, read_image
from faceid.server.errors import ApiError, one_line
from faceid.server.settings import Settings
from faceid.server.state import State

__all__ = [
    "decode",
    "downscaled",
    "image_faces",
    "memory_for",
    "only_one_file",
    "upload_name",
    "uploaded_faces",
    "upscaled",
]

log = logging.getLogger(__name__)


#: What a refusal for size says raises the limit.
LIMIT_HINT = "the server's max_pixels setting; `faceid serve --max-megapixels` raises it"


def decode(data: bytes, name: str, settings: Settings) -> LoadedImage:
    """The upload decoded at the server's working size (see :func:`faceid.images.read_image`)."""
    return read_image(
        data, max_pixels=settings.max_pixels, name=name, working_side=settings.working_side, limit_hint=LIMIT_HINT
    )


def memory_for(datas: list[bytes], settings: Settings) -> int:
    """Bytes the uploads will take while their request runs (for :class:`~faceid.server.budget.Budget`)."""
    from faceid.images import working_pixels
    from faceid.server.budget import BYTES_PER_PIXEL

    return sum(min(working_pixels(d, settings.working_side), settings.max_pixels) for d in datas) * BYTES_PER_PIXEL


def upscaled(faces, image: LoadedImage) -> list:
    """``faces`` found in ``image`` (a list of :class:`~faceid.pipeline.Face`, or a failure's line)
    with boxes and landmarks in pixels of the full-size photo, when it was decoded smaller."""
    if isinstance(faces, str) or image.full_size is None:
        return faces
    from dataclasses import replace

    sx, sy = image.scale
    full_w, full_h = image.full_size
    out = []
    for face in faces:
        d = face.detection
        x, y, w, h = d.box
        x0, y0 = min(full_w - 1, round(x * sx)), min(full_h - 1, round(y * sy))
        box = (x0, y0, max(1, min(full_w - x0, round(w * sx))), max(1, min(full_h - y0, round(h * sy))))
        marks = tuple((float(px) * sx, float(py) * sy) for px, py in d.landmarks)
        out.append(replace(face, detection=replace(d, box=box, landmarks=marks)))
    return out


def downscaled(result, image: LoadedImage):
    """An :class:`~faceid.results.Identification` in full-size pixels moved onto ``image``'s
    decoded pixels (to draw it there)."""
    if image.full_size is None:
        return result
    from dataclasses import replace

    sx, sy = image.scale
    faces = []
    for match in result.faces:
        d = match.detection
        x, y, w, h = d.box
        box = (int(x / sx), int(y / sy), max(1, int(w / sx)), max(1, int(h / sy)))
        marks = tuple((px / sx, py / sy) for px, py in d.landmarks)
        faces.append(replace(match, detection=replace(d, box=box, landmarks=marks)))
    return replace(result, faces=tuple(faces), width=image.width, height=image.height)


async def only_one_file(request, field: str = "file") -> None:
    """Refuse a request with more than one ``field`` part where the route reads one (the form is
    parsed once: FastAPI keeps it)."""
    form = await request.form()
    count = len(form.getlist(field))
    if count > 1:
        raise ApiError(400, f"send one image in '{field}'; this request has {count}")


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


def uploaded_faces(state: State, data: bytes, name: str) -> tuple[LoadedImage, list]:
    """One upload decoded at the working size and its faces found (call from a worker thread). The
    faces are in the decoded pixels, where they are cropped and kept; :func:`upscaled` moves them
    to the photo's own pixels for an answer.

    Raises:
        ImageError: not a readable image within the limits (mapped by class).
        ApiError: 422 when the face pipeline failed on it (the line says why).
    """
    state.arriving(+1)
    try:
        image = decode(data, name, state.settings)
    finally:
        state.arriving(-1)
    faces = image_faces(state, [image.pixels], [name])[0]
    if isinstance(faces, str):
        raise ApiError(422, faces)
    return image, faces
