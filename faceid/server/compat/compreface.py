"""CompreFace's recognition API under ``/api/v1/recognition/``, answered from faceid's gallery.

Paths, parameters, status codes and answer shapes follow CompreFace's REST docs
(``docs/Rest-API-description.md`` of exadel-inc/CompreFace) and what ``compreface-sdk`` 0.6 and
Double Take send: an image as the multipart field ``file`` or as JSON ``{"file": BASE64}``;
``limit`` (0: every face; the largest first), ``det_prob_threshold``, ``prediction_count``,
``face_plugins`` (``landmarks`` and ``calculator`` served, any other name, Double Take's literal
``undefined`` included, ignored), ``status``. Errors are ``{"message", "code"}`` with CompreFace's
codes (28: no face). Similarities are on :mod:`.scale` (faceid's decision at 0.60). An
``image_id`` is faceid's face id, as text. Differences, on purpose: a subject is renamed only to
a free name (CompreFace merges into an existing one), and faceid keeps no photos, so there is no
image download.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Annotated, Any, Optional

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from faceid.errors import FaceIDError, FaceNotFoundError, PersonNotFoundError
from faceid.server.auth import keeps_unknown
from faceid.server.compat.keys import CompatAdmin, CompatReader
from faceid.server.compat.recognise import NoFace, Recognised, recognise
from faceid.server.errors import OPENAPI_ERRORS, SHAPES, ApiError
from faceid.server.state import state_of

__all__ = ["PREFIX", "router"]

PREFIX = "/api/v1/recognition"


class CompreFaceError(BaseModel):
    message: str = Field(description="What went wrong, in one line.")
    code: int = Field(description="CompreFace's error code (28: no face found).")


router = APIRouter(
    prefix=PREFIX,
    tags=["compat: CompreFace"],
    responses={
        status: {"model": CompreFaceError, "description": e["description"]} for status, e in OPENAPI_ERRORS.items()
    },
)

#: CompreFace's error codes (its ``ExceptionCode``), by what went wrong.
NO_FACE, TOO_MANY_FACES, SUBJECT_NOT_FOUND, IMAGE_NOT_FOUND = 28, 31, 42, 11
SUBJECT_EXISTS, VALIDATION, MISSING_HEADER, WRITING_NOT_ALLOWED, UNDEFINED = 43, 26, 20, 32, 0
_CODE_BY_STATUS = {400: VALIDATION, 401: MISSING_HEADER, 403: WRITING_NOT_ALLOWED, 404: IMAGE_NOT_FOUND}

#: Subjects created without a face (``POST /subjects``), kept as a gallery setting until one is added.
PENDING = "compat_pending_subjects"

_IMAGE_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "application/json": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "description": "base64"}}}
            },
        },
        "required": True,
    }
}


def _shape(status: int, message: str, extra: dict) -> tuple[int, dict]:
    code = extra.get("code", _CODE_BY_STATUS.get(status, UNDEFINED))
    return status, {"message": message, "code": code}


SHAPES[PREFIX] = _shape


async def image_of(request: Request, field: str = "file") -> tuple[bytes, str]:
    """The uploaded image: a multipart part ``field``, or ``{field: BASE64}`` as JSON."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            value = json.loads(await request.body()).get(field)
            data = base64.b64decode(value, validate=False) if isinstance(value, str) else None
        except (ValueError, AttributeError, binascii.Error):
            data = None
        if not data:
            raise ApiError(400, f"the JSON body needs {field!r}: the image in base64", code=VALIDATION)
        return data, f"{field}.base64"
    if kind.startswith("multipart/form-data"):
        form = await request.form()
        part = form.get(field)
        if part is not None and not isinstance(part, str):
            from faceid.server.uploads import upload_name

            return await part.read(), upload_name(part)  # type: ignore[arg-type]
    raise ApiError(400, f"send the image as the multipart field {field!r} or as JSON {{{field!r}: base64}}", code=34)


def _plugins(text: Optional[str]) -> set[str]:
    return {p.strip().lower() for p in (text or "").split(",") if p.strip()}


def _face_json(face: Recognised, plugins: set[str], status: bool, took_ms: float) -> dict[str, Any]:
    d = face.match.detection
    x, y, w, h = d.box
    out: dict[str, Any] = {
        "box": {"probability": round(d.confidence, 5), "x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h}
    }
    if "landmarks" in plugins:
        out["landmarks"] = [[int(round(px)), int(round(py))] for px, py in d.landmarks]
    if "calculator" in plugins:
        out["embedding"] = [float(v) for v in face.embedding]
    if status:
        out["execution_time"] = {"detector": round(took_ms, 1), "calculator": 0.0}
    return out


def _versions(request: Request) -> dict[str, str]:
    key = state_of(request).pipeline.key
    return {"detector": "faceid.mtcnn", "calculator": f"faceid.{key.model}"}


@router.post("/recognize", openapi_extra=_IMAGE_BODY)
async def recognize(
    request: Request,
    caller: CompatReader,
    limit: Annotated[int, Query(ge=0, description="Most faces, largest first; 0: every face.")] = 0,
    det_prob_threshold: Annotated[float, Query(ge=0.0, le=1.0, description="Least detection confidence.")] = 0.0,
    prediction_count: Annotated[int, Query(ge=1, le=100, description="Subjects per face.")] = 1,
    face_plugins: Annotated[Optional[str], Query(description="landmarks, calculator; others ignored.")] = None,
    status: Annotated[bool, Query(description="Add execution_time and plugins_versions.")] = False,
    remember: Annotated[bool, Query(description="Keep the unknown faces for review (faceid's own).")] = False,
):
    """Every face in the image with its best subjects (CompreFace's "Recognize Faces from a Given Image")."""
    state = state_of(request)
    data, name = await image_of(request)
    started = time.perf_counter()
    remember = keeps_unknown(caller, remember, state.settings)
    try:
        _, faces = await run_in_threadpool(
            recognise,
            state,
            data,
            name,
            det_prob_threshold=det_prob_threshold,
            limit=limit,
            top=prediction_count,
            remember=remember,
        )
    except NoFace:
        raise ApiError(400, "No face is found in the given image", code=NO_FACE) from None
    took = (time.perf_counter() - started) * 1000
    plugins = _plugins(face_plugins)
    result = []
    for face in faces:
        item = _face_json(face, plugins, status, took)
        item["subjects"] = [{"subject": s.name, "similarity": s.similarity} for s in face.subjects]
        result.append(item)
    answer: dict[str, Any] = {"result": result}
    if status:
        answer["plugins_versions"] = _versions(request)
    return answer


@router.post("/faces", status_code=201, openapi_extra=_IMAGE_BODY)
async def add_face(
    request: Request,
    caller: CompatAdmin,
    subject: Annotated[str, Query(description="Who the face is (created if new).")],
    det_prob_threshold: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
):
    """Add one face of ``subject`` (the photo must show one face): ``{"image_id", "subject"}``."""
    from faceid.batch import Processed
    from faceid.enroll import ADDED, DUPLICATE, enroll_processed
    from faceid.server.routes.people import addressable
    from faceid.server.uploads import uploaded_faces

    state = state_of(request)
    data, source = await image_of(request)
    try:
        person = addressable(subject)
    except FaceIDError as exc:
        raise ApiError(400, str(exc), code=VALIDATION) from None

    def work():
        image, found = uploaded_faces(state, data, source)
        faces = [f for f in found if f.detection.confidence >= det_prob_threshold]
        if not faces:
            raise ApiError(400, "No face is found in the given image", code=NO_FACE)
        if len(faces) > 1:
            raise ApiError(400, f"{len(faces)} faces found; the image should contain one face", code=TOO_MANY_FACES)
        with state.use(caller) as gallery:
            stored = _stored_name(gallery, person)
            result = enroll_processed(
                gallery, stored, [Processed(source, image, faces)], state.pipeline.key, paths=False
            )[0]
            if result.status == DUPLICATE:
                sha = image.sha256
                same = [f for f in gallery.faces() if f.image_sha256 == sha]
                if same:
                    return {"image_id": str(same[0].id), "subject": same[0].person, "new_subject": False}
            if result.status != ADDED or result.face_id is None:
                raise ApiError(400, result.message)
            _drop_pending(gallery, stored)
            # beside CompreFace's two fields: whether this face created the subject
            return {"image_id": str(result.face_id), "subject": result.person, "new_subject": result.new_person}

    return await run_in_threadpool(work)


def _stored_name(gallery, name: str) -> str:
    """The enrolled person ``name`` refers to (by the gallery's rule, a name differing only in case
    is the same person), else ``name``."""
    from faceid.enroll import stored_name

    return stored_name(gallery, name)[0]


def _pending(gallery) -> list[str]:
    value = gallery.get_setting(PENDING)
    return [str(v) for v in value] if isinstance(value, list) else []


def _drop_pending(gallery, name: str) -> None:
    pending = _pending(gallery)
    if any(p.casefold() == name.casefold() for p in pending):
        gallery.set_setting(PENDING, [p for p in pending if p.casefold() != name.casefold()] or None)


@router.get("/faces")
async def list_faces(
    request: Request,
    caller: CompatReader,
    page: Annotated[int, Query(ge=0)] = 0,
    size: Annotated[int, Query(ge=1, le=1000)] = 20,
    subject: Annotated[Optional[str], Query()] = None,
):
    """The enrolled faces, a page at a time: ``{"faces": [{"image_id", "subject"}], "page_number", ...}``."""
    state = state_of(request)

    def read():
        with state.use() as gallery:
            try:
                faces = gallery.faces(_stored_name(gallery, subject) if subject else None)
            except PersonNotFoundError as exc:
                raise ApiError(404, str(exc), code=SUBJECT_NOT_FOUND) from None
        chosen = faces[page * size : (page + 1) * size]
        return {
            "faces": [{"image_id": str(f.id), "subject": f.person} for f in chosen],
            "page_number": page,
            "page_size": size,
            "total_pages": (len(faces) + size - 1) // size,
            "total_elements": len(faces),
        }

    return await run_in_threadpool(read)


@router.delete("/faces")
async def delete_faces(request: Request, caller: CompatAdmin, subject: Annotated[Optional[str], Query()] = None):
    """Remove every face of ``subject`` (without it: every face), securely: ``{"deleted": N}``."""
    state = state_of(request)

    def write():
        with state.use(caller) as gallery:
            if subject:
                stored = _stored_name(gallery, subject)
                if stored not in gallery:
                    return {"deleted": 0}
                names = [stored]
            else:
                names = [p.name for p in gallery.people()]
            deleted = sum(gallery.remove(n, compact=False) for n in names)
        state.compactor.request()
        return {"deleted": deleted}

    return await run_in_threadpool(write)


def _face_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise ApiError(404, f"no face with id {text[:40]!r}", code=IMAGE_NOT_FOUND)
    return value


@router.delete("/faces/{image_id}")
async def delete_face(request: Request, caller: CompatAdmin, image_id: str):
    """Remove one face, securely: ``{"image_id", "subject"}``."""
    state = state_of(request)
    face_id = _face_id(image_id)

    def write():
        with state.use(caller) as gallery:
            try:
                person = gallery.remove_face(face_id, compact=False)
            except FaceNotFoundError as exc:
                raise ApiError(404, str(exc), code=IMAGE_NOT_FOUND) from None
        state.compactor.request()
        return {"image_id": image_id, "subject": person}

    return await run_in_threadpool(write)


@router.post("/faces/delete")
async def delete_face_list(request: Request, caller: CompatAdmin):
    """Remove the faces whose ids the JSON list in the body holds: the removed ones, ``[{"image_id", "subject"}]``."""
    state = state_of(request)
    try:
        ids = json.loads(await request.body())
    except ValueError:
        ids = None
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
        raise ApiError(400, "the body must be a JSON list of image ids", code=VALIDATION)

    def write():
        out = []
        with state.use(caller) as gallery:
            for text in ids:
                try:
                    out.append(
                        {"image_id": str(text), "subject": gallery.remove_face(_face_id(str(text)), compact=False)}
                    )
                except (FaceNotFoundError, ApiError):
                    continue  # CompreFace answers the ones it removed
        state.compactor.request()
        return out

    return await run_in_threadpool(write)


@router.post("/faces/{image_id}/verify", openapi_extra=_IMAGE_BODY)
async def verify_face(
    request: Request,
    caller: CompatReader,
    image_id: str,
    limit: Annotated[int, Query(ge=0)] = 0,
    det_prob_threshold: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
    face_plugins: Annotated[Optional[str], Query()] = None,
    status: Annotated[bool, Query()] = False,
):
    """Each face of the image against one enrolled face: ``similarity`` on the scale where faceid's
    1:1 decision (``faceid verify``, FMR 0.1%) falls at 0.60."""
    import numpy as np

    from faceid.server.compat.scale import to_scale
    from faceid.thresholds import verify_threshold

    state = state_of(request)
    face_id = _face_id(image_id)
    data, name = await image_of(request)
    started = time.perf_counter()

    def stored():
        with state.use() as gallery:
            ids, _, vectors = gallery.embeddings()
        hit = np.flatnonzero(ids == face_id)
        if not len(hit):
            raise ApiError(404, f"no face with id {face_id}", code=IMAGE_NOT_FOUND)
        return vectors[hit[0]]

    reference = await run_in_threadpool(stored)
    try:
        _, faces = await run_in_threadpool(
            recognise, state, data, name, det_prob_threshold=det_prob_threshold, limit=limit
        )
    except NoFace:
        raise ApiError(400, "No face is found in the given image", code=NO_FACE) from None
    threshold = verify_threshold(state.pipeline.key)
    took = (time.perf_counter() - started) * 1000
    plugins = _plugins(face_plugins)
    result = []
    for face in faces:
        cosine = float(np.dot(face.embedding, reference))
        item = _face_json(face, plugins, status, took)
        item["similarity"] = to_scale(cosine, threshold, named=cosine >= threshold)
        result.append(item)
    answer: dict[str, Any] = {"result": result}
    if status:
        answer["plugins_versions"] = _versions(request)
    return answer


# -- subjects -------------------------------------------------------------------------------------


def _subject_body(body: bytes) -> str:
    try:
        value = json.loads(body).get("subject")
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, 'the body must be JSON {"subject": NAME}', code=VALIDATION)
    return value


@router.post("/subjects", status_code=201)
async def add_subject(request: Request, caller: CompatAdmin):
    """Create a subject before any face (kept until a face is added): ``{"subject"}``."""
    from faceid.server.routes.people import addressable

    state = state_of(request)
    try:
        name = addressable(_subject_body(await request.body()))
    except FaceIDError as exc:
        raise ApiError(400, str(exc), code=VALIDATION) from None

    def write():
        with state.use(caller) as gallery:
            stored = _stored_name(gallery, name)
            pending = _pending(gallery)
            if stored in gallery or any(p.casefold() == name.casefold() for p in pending):
                raise ApiError(400, f"subject {stored!r} already exists", code=SUBJECT_EXISTS)
            gallery.set_setting(PENDING, pending + [name])
            return {"subject": name}

    return await run_in_threadpool(write)


@router.get("/subjects")
async def list_subjects(request: Request, caller: CompatReader):
    """Every subject: ``{"subjects": [NAME, ...]}``."""
    state = state_of(request)

    def read():
        with state.use() as gallery:
            names = [p.name for p in gallery.people()]
            return {"subjects": sorted(set(names) | set(_pending(gallery)))}

    return await run_in_threadpool(read)


@router.put("/subjects/{subject:path}")
async def rename_subject(request: Request, caller: CompatAdmin, subject: str):
    """Rename a subject to a free name: ``{"updated": true}``."""
    from faceid.server.routes.people import addressable

    state = state_of(request)
    try:
        new = addressable(_subject_body(await request.body()))
    except FaceIDError as exc:
        raise ApiError(400, str(exc), code=VALIDATION) from None

    def write():
        with state.use(caller) as gallery:
            old = _stored_name(gallery, subject)
            pending = _pending(gallery)
            if old not in gallery:
                if old in pending:
                    gallery.set_setting(PENDING, [new if p == old else p for p in pending])
                    return {"updated": True}
                raise ApiError(404, f"no subject {subject!r}", code=SUBJECT_NOT_FOUND)
            taken = _stored_name(gallery, new)
            if taken in gallery and taken != old:
                raise ApiError(
                    400, f"subject {taken!r} already exists; faceid does not merge subjects", code=SUBJECT_EXISTS
                )
            gallery.rename(old, new)
            return {"updated": True}

    return await run_in_threadpool(write)


@router.delete("/subjects/{subject:path}")
async def delete_subject(request: Request, caller: CompatAdmin, subject: str):
    """Remove a subject and every face of theirs, securely: ``{"subject"}``."""
    state = state_of(request)

    def write():
        with state.use(caller) as gallery:
            stored = _stored_name(gallery, subject)
            pending = _pending(gallery)
            if stored not in gallery:
                if stored in pending:
                    gallery.set_setting(PENDING, [p for p in pending if p != stored] or None)
                    return {"subject": stored}
                raise ApiError(404, f"no subject {subject!r}", code=SUBJECT_NOT_FOUND)
            gallery.remove(stored, compact=False)
        state.compactor.request()
        return {"subject": stored}

    return await run_in_threadpool(write)


@router.delete("/subjects")
async def delete_all_subjects(request: Request, caller: CompatAdmin):
    """Remove every subject and their faces, securely: ``{"deleted": N}`` (subjects removed)."""
    state = state_of(request)

    def write():
        with state.use(caller) as gallery:
            names = [p.name for p in gallery.people()]
            pending = _pending(gallery)
            for n in names:
                gallery.remove(n, compact=False)
            if pending:
                gallery.set_setting(PENDING, None)
        state.compactor.request()
        return {"deleted": len(names) + len(pending)}

    return await run_in_threadpool(write)
