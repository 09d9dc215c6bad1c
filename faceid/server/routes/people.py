"""People and their faces: enrol, list, look at, rename, remove (securely), thumbnails.

A name is free text, so in a URL it is percent-encoded whole; see :data:`PersonName`.
"""

import hashlib
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceid.batch import Processed
from faceid.errors import FaceIDError, ImageError, NameTakenError
from faceid.gallery import normalise_name
from faceid.server.auth import Admin, Reader
from faceid.server.errors import ApiError, api_words, status_of
from faceid.server.schemas import EnrollOut, PersonDetailOut, PersonOut, RemovedFaceOut, RemovedOut, RenameIn
from faceid.server.state import State, state_of
from faceid.server.uploads import decode, image_faces, memory_for, upload_name
from faceid.verify import box_overlap

__all__ = ["FaceId", "PersonName", "addressable", "face_out", "router"]

log = logging.getLogger(__name__)

FaceId = Annotated[int, PathParam(ge=0, le=2**63 - 1, description="A face's id.")]
# A name is free text: '/', '%', '?', '#' and the rest arrive percent-encoded (a '/' as %2F, which the
# server decodes before routing, hence the path converter: the name is everything up to the route's end).
PersonName = Annotated[str, PathParam(description="The person's name, percent-encoded (a '/' in it as %2F).")]

router = APIRouter()


def addressable(name: str) -> str:
    """The stored form of a new name, refused if no URL can reach it: clients (browsers, httpx) fold
    a path segment of "." or ".." into its parent, percent-encoded or not."""
    person = normalise_name(name)
    if person.strip(".") == "" and len(person) <= 2:
        raise ApiError(400, f"the name {person!r} cannot be used in a URL path; choose another")
    return person


def face_out(face) -> dict:
    """A face as the API shows it (an enrolled :class:`FaceRecord` or a kept :class:`UnknownFace`):
    the fields of ``faceid faces --json``, the photo's file name only, and its thumbnail's URL."""
    return {
        "id": face.id,
        "box": list(face.box),
        "image": os.path.basename(face.image_path) if face.image_path else None,
        "created_at": face.created_at,
        "thumbnail": f"/v1/faces/{face.id}/thumbnail",
    }


def _parse_box(box: Optional[str]) -> Optional[tuple[int, int, int, int]]:
    from faceid.errors import OptionError
    from faceid.verify import parse_box

    try:
        return parse_box(box, "box")
    except OptionError as exc:
        raise ApiError(400, str(exc)) from None


def _onto(box: tuple[int, int, int, int], image) -> tuple[int, int, int, int]:
    """A box in full-size pixels, in pixels of ``image`` as decoded (smaller for a large photo)."""
    sx, sy = image.scale
    x, y, w, h = box
    return (round(x / sx), round(y / sy), max(1, round(w / sx)), max(1, round(h / sy)))


@router.post("/v1/people/{name:path}/faces", response_model=EnrollOut, tags=["people"])
async def enroll(
    request: Request,
    caller: Admin,
    name: PersonName,
    file: Annotated[list[UploadFile], File(description="One or more photos of the person.")],
    largest: Annotated[bool, Query(description="In photos with several faces, take the largest.")] = False,
    box: Annotated[
        Optional[str], Query(description="x,y,width,height: take the face at this box (one photo only).")
    ] = None,
):
    """Enrol a person (created if new) from photos: one report entry per photo, as `faceid enroll` says."""
    state = state_of(request)
    try:
        person = addressable(name)
    except FaceIDError as exc:
        raise ApiError(400, str(exc)) from None
    if len(file) > state.settings.max_files:
        raise ApiError(400, f"{len(file)} photos in one request; at most {state.settings.max_files}")
    wanted = _parse_box(box)
    if wanted is not None and len(file) != 1:
        raise ApiError(400, "box chooses a face in one photo; send one photo with it")
    items: list[Processed] = []
    unreadable: dict[int, int] = {}  # photo -> the status of its decoding error
    datas = [await upload.read() for upload in file]
    deadline = time.monotonic() + state.settings.request_timeout
    async with state.budget.hold(memory_for(datas, state.settings), deadline):
        for i, (upload, data) in enumerate(zip(file, datas)):
            source = upload_name(upload, i)
            try:
                items.append(Processed(source, await run_in_threadpool(decode, data, source, state.settings)))
            except ImageError as exc:
                unreadable[i] = status_of(exc)
                items.append(Processed(source, None, error=str(exc)))
        readable = [(i, item.image.pixels) for i, item in enumerate(items) if item.image is not None]
        pixels = [p for _, p in readable]
        names = [items[i].source for i, _ in readable]
        found = await run_in_threadpool(image_faces, state, pixels, names) if readable else []
        for (i, _), faces in zip(readable, found):
            if isinstance(faces, str):
                items[i] = replace(items[i], error=faces)
                continue
            if wanted is not None:
                near = _onto(wanted, items[i].image)
                scored = sorted(((box_overlap(f.detection.box, near), f) for f in faces), key=lambda t: -t[0])
                if not scored or scored[0][0] < 0.3:
                    raise ApiError(422, f"{items[i].source}: no face found at box {list(wanted)}")
                faces = [scored[0][1]]
            items[i] = replace(items[i], faces=list(faces))

        def write():
            from faceid.enroll import enroll_processed

            with state.use(caller) as gallery:
                return enroll_processed(gallery, person, items, state.pipeline.key, largest=largest, paths=False)

        results = await run_in_threadpool(write)
    report = [{**r.to_json(), "message": api_words(r.message)} for r in results]
    if results and all(not r.ok for r in results):
        first = results[0].message
        status = unreadable.get(0, 422)
        more = f" (and {len(results) - 1} more photos failed)" if len(results) > 1 else ""
        raise ApiError(status, first + more, results=report)
    stored = results[0].person if results else person
    return {"person": stored, "new_person": bool(results and results[0].new_person), "results": report}


@router.get("/v1/people", response_model=list[PersonOut], tags=["people"])
async def people(request: Request, caller: Reader):
    """Everyone enrolled, with how many faces each."""
    state = state_of(request)

    def read():
        with state.use() as gallery:
            return [{"name": p.name, "faces": p.faces} for p in gallery.people()]

    return await run_in_threadpool(read)


@router.get("/v1/people/{name:path}", response_model=PersonDetailOut, tags=["people"])
async def person(request: Request, caller: Reader, name: PersonName):
    """One person and their faces (with thumbnail URLs)."""
    state = state_of(request)

    def read():
        with state.use() as gallery:
            p = gallery.person(name)
            faces = gallery.faces(p.name)  # renamed by another process in between: 404, as it should
        return {
            "name": p.name,
            "created_at": p.created_at,
            "faces": [face_out(f) for f in faces],
        }

    return await run_in_threadpool(read)


@router.patch("/v1/people/{name:path}", response_model=PersonOut, tags=["people"])
async def rename(request: Request, caller: Admin, name: PersonName, body: RenameIn):
    """Rename a person: `{"name": NEW}`; 409 if the new name is someone else's."""
    state = state_of(request)

    def write():
        with state.use(caller) as gallery:
            old = gallery.person(name)
            new = addressable(body.name)
            if new in gallery and gallery.person(new).id != old.id:
                raise NameTakenError(f"{new!r} is already enrolled; remove or rename them first")
            gallery.rename(old.name, new)
            return {"name": new, "faces": old.faces}

    return await run_in_threadpool(write)


@router.delete("/v1/people/{name:path}", response_model=RemovedOut, tags=["people"])
async def remove(request: Request, caller: Admin, name: PersonName):
    """Remove a person and every face of theirs, securely (as `faceid remove`).

    Answers once the removal is committed and scrubbed from the index files; the rewrite of the
    database file that clears stale copies of the rows follows in the background."""
    state = state_of(request)

    def write():
        with state.use(caller) as gallery:
            person = gallery.person(name)
            faces = gallery.remove(person.name, compact=False)
        state.compactor.request()
        return {"removed": person.name, "faces": faces}

    return await run_in_threadpool(write)


@router.get(
    "/v1/faces/{face_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "A small JPEG of the face."}},
    tags=["people"],
)
async def thumbnail(request: Request, caller: Reader, face_id: FaceId):
    """A small JPEG of one enrolled face."""
    state = state_of(request)
    jpeg = await run_in_threadpool(_thumbnail, state, face_id)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@router.delete("/v1/faces/{face_id}", response_model=RemovedFaceOut, tags=["people"])
async def remove_face(request: Request, caller: Admin, face_id: FaceId):
    """Remove one face, securely (the database file's rewrite in the background, as for a person);
    the person stays."""
    state = state_of(request)

    def write():
        with state.use(caller) as gallery:
            person = gallery.remove_face(face_id, compact=False)
        state.compactor.request()
        return {"removed": face_id, "person": person}

    return await run_in_threadpool(write)


def _thumbnail(state: State, face_id: int) -> bytes:
    """The stored thumbnail; for a face enrolled before thumbnails were kept, a crop of its photo if unchanged."""

    with state.use() as gallery:
        jpeg = gallery.face_thumbnail(face_id)  # enrolled faces and kept unknown ones
        if jpeg is not None:
            return jpeg
        face = gallery.face(face_id)
    path = Path(face.image_path) if face.image_path and os.path.isabs(face.image_path) else None
    if path is not None and path.is_file():
        from faceid.draw import face_thumbnail

        try:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == face.image_sha256:
                return face_thumbnail(decode(data, str(path), state.settings).pixels, face.box)
        except (OSError, ImageError) as exc:
            log.info("no thumbnail for face %d from %s: %s", face_id, path, exc)
    raise ApiError(404, f"no thumbnail for face {face_id}: enrolled before thumbnails were kept, and its photo changed")
