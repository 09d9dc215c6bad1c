"""DeepStack's face API (also CodeProject.AI's) under ``/v1/vision/face``, answered from faceid's gallery.

Fields and answers as DeepStack's docs give them and ``deepstack-python`` 0.9, Home Assistant's
``deepstack_face`` and Double Take send them: multipart forms with ``image`` (``register`` takes
one or more files under any field name), ``userid``, ``min_confidence`` and ``api_key``. Answers
are ``{"success": true, ...}`` with 200; errors ``{"success": false, "error"}`` with a 4xx/5xx
status (the clients raise on any status but 200). ``confidence`` is on :mod:`.scale` (faceid's
decision at 0.60); ``userid`` is ``"unknown"`` unless faceid names the face and the confidence
is at least the request's ``min_confidence``. An image with no face is a 200 with no
predictions. Unlike DeepStack, ``register`` adds faces to the person and never replaces them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from faceid.errors import FaceIDError
from faceid.server.auth import keeps_unknown
from faceid.server.compat.keys import CompatAdmin, CompatReader
from faceid.server.compat.recognise import NoFace, recognise
from faceid.server.errors import OPENAPI_ERRORS, SHAPES, ApiError
from faceid.server.state import state_of
from faceid.server.uploads import upload_name

__all__ = ["PREFIX", "router"]

PREFIX = "/v1/vision/face"


class DeepStackError(BaseModel):
    success: bool = Field(description="Always false.")
    error: str = Field(description="What went wrong, in one line.")
    code: int = Field(description="The HTTP status again.")


router = APIRouter(
    prefix=PREFIX,
    tags=["compat: DeepStack"],
    responses={
        status: {"model": DeepStackError, "description": e["description"]} for status, e in OPENAPI_ERRORS.items()
    },
)

UNKNOWN = "unknown"


def _shape(status: int, message: str, extra: dict) -> tuple[int, dict]:
    return status, {"success": False, "error": message, "code": status}


SHAPES[PREFIX] = _shape

_FORM = {"requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object"}}}, "required": True}}


async def _form(request: Request):
    kind = request.headers.get("content-type", "")
    if not kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise ApiError(400, "send a multipart form (image, userid, api_key, ...)")
    return await request.form()


async def _image(form, field: str = "image") -> tuple[bytes, str]:
    part = form.get(field)
    if part is None or isinstance(part, str):
        raise ApiError(400, f"the form needs the image as the file field {field!r}")
    return await part.read(), upload_name(part)


def _number(form, field: str, default: float) -> float:
    value = form.get(field)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{field} must be a number, got {str(value)[:40]!r}") from None
    if not 0.0 <= number <= 1.0:
        raise ApiError(400, f"{field} must be between 0 and 1, got {number:g}")
    return number


def _box(detection) -> dict[str, int]:
    x, y, w, h = detection.box
    return {"x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h}


def _flag(form, field: str) -> bool:
    return str(form.get(field, "")).strip().lower() in ("1", "true", "yes", "on")


@router.post("/recognize", openapi_extra=_FORM)
async def recognize(request: Request, caller: CompatReader):
    """Every face with ``userid`` (or ``"unknown"``) and ``confidence``; fields ``image``, ``min_confidence``."""
    state = state_of(request)
    form = await _form(request)
    data, name = await _image(form)
    least = _number(form, "min_confidence", 0.0)
    remember = keeps_unknown(caller, _flag(form, "remember"), state.settings)
    try:
        _, faces = await run_in_threadpool(recognise, state, data, name, remember=remember)
    except NoFace:
        faces = []
    predictions = []
    for face in faces:
        best = face.subjects[0] if face.subjects else None
        confidence = best.similarity if best is not None else 0.0
        named = face.named if face.named is not None and confidence >= least else None
        predictions.append({"confidence": confidence, "userid": named or UNKNOWN, **_box(face.match.detection)})
    return {"success": True, "predictions": predictions, "duration": 0}


@router.post("", openapi_extra=_FORM)
async def detect(request: Request, caller: CompatReader):
    """Every face's box and detection confidence (DeepStack's face detection); field ``image``."""
    state = state_of(request)
    form = await _form(request)
    data, name = await _image(form)
    least = _number(form, "min_confidence", 0.0)

    def work():
        from faceid.server.uploads import uploaded_faces, upscaled

        image, found = uploaded_faces(state, data, name)
        return upscaled(found, image)

    found = await run_in_threadpool(work)
    predictions = [
        {"confidence": round(f.detection.confidence, 5), **_box(f.detection)}
        for f in sorted(found, key=lambda f: -f.detection.area)
        if f.detection.confidence >= least
    ]
    return {"success": True, "predictions": predictions, "duration": 0}


@router.post("/register", openapi_extra=_FORM)
async def register(request: Request, caller: CompatAdmin):
    """Add the face of each image to ``userid`` (created if new; faces are added, never replaced)."""
    from faceid.batch import Processed
    from faceid.enroll import FAILED, enroll_processed, stored_name
    from faceid.server.routes.people import addressable
    from faceid.server.uploads import decode, image_faces

    state = state_of(request)
    form = await _form(request)
    userid = form.get("userid")
    if not isinstance(userid, str) or not userid.strip():
        raise ApiError(400, "the form needs userid: who the face is")
    try:
        person = addressable(userid)
    except FaceIDError as exc:
        raise ApiError(400, str(exc)) from None
    uploads = [(k, v) for k, v in form.multi_items() if not isinstance(v, str)]
    if not uploads:
        raise ApiError(400, "the form needs one or more images")
    if len(uploads) > state.settings.max_files:
        raise ApiError(400, f"{len(uploads)} images in one request; at most {state.settings.max_files}")
    blobs = [(await part.read(), upload_name(part, i)) for i, (_, part) in enumerate(uploads)]

    def work():
        items = []
        for data, source in blobs:
            image = decode(data, source, state.settings)
            found = image_faces(state, [image.pixels], [source])[0]
            if isinstance(found, str):
                raise ApiError(422, found)
            items.append(Processed(source, image, list(found)))
        with state.use(caller) as gallery:
            stored = stored_name(gallery, person)[0]
            results = enroll_processed(gallery, stored, items, state.pipeline.key, paths=False)
        failed = [r for r in results if r.status == FAILED]
        if failed:
            raise ApiError(400, "; ".join(r.message for r in failed))
        return stored, bool(results and results[0].new_person)

    stored, new = await run_in_threadpool(work)
    # DeepStack's answer, and beside it who the faces went to and whether that person is new
    return {"success": True, "message": "face added", "userid": stored, "new_person": new}


@router.post("/list")
async def list_faces(request: Request, caller: CompatReader):
    """Everyone enrolled: ``{"success": true, "faces": [USERID, ...]}``."""
    state = state_of(request)

    def read():
        with state.use() as gallery:
            return [p.name for p in gallery.people()]

    return {"success": True, "faces": await run_in_threadpool(read)}


@router.post("/delete", openapi_extra=_FORM)
async def delete(request: Request, caller: CompatAdmin):
    """Remove ``userid`` and every face of theirs, securely."""
    from faceid.enroll import stored_name

    state = state_of(request)
    form = await _form(request)
    userid = form.get("userid")
    if not isinstance(userid, str) or not userid.strip():
        raise ApiError(400, "the form needs userid: who to remove")

    def write():
        with state.use(caller) as gallery:
            stored = stored_name(gallery, userid)[0]
            if stored in gallery:
                gallery.remove(stored, compact=False)
        state.compactor.request()

    await run_in_threadpool(write)
    return {"success": True}


@router.post("/match", openapi_extra=_FORM)
async def match(request: Request, caller: CompatReader):
    """How alike the largest faces of ``image1`` and ``image2`` are: ``similarity`` on the scale
    where faceid's 1:1 decision (``faceid verify``, FMR 0.1%) falls at 0.60."""
    from faceid.server.compat.scale import to_scale
    from faceid.server.uploads import decode, image_faces
    from faceid.verify import choose_face, verify_faces

    state = state_of(request)
    form = await _form(request)
    first, second = await _image(form, "image1"), await _image(form, "image2")

    def work() -> dict[str, Any]:
        images = [decode(data, name, state.settings) for data, name in (first, second)]
        found = image_faces(state, [i.pixels for i in images], [first[1], second[1]])
        for faces in found:
            if isinstance(faces, str):
                raise ApiError(422, faces)
        faces = [choose_face(f, i.name) for f, i in zip(found, images)]
        result = verify_faces(faces[0], faces[1], state.pipeline.key)
        return {"success": True, "similarity": to_scale(result.similarity, result.threshold, named=result.same)}

    return await run_in_threadpool(work)
