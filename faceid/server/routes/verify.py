"""``POST /v1/verify``: are the faces in two photos the same person? (``faceid verify A B`` over HTTP)."""

from typing import Annotated, Optional

from fastapi import APIRouter, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from faceid.server.auth import Reader
from faceid.server.errors import ApiError
from faceid.server.state import State, state_of
from faceid.server.uploads import decode, image_faces, upload_name, upscaled

__all__ = ["router"]

router = APIRouter()


def _box(text: Optional[str], field: str):
    from faceid.errors import FaceIDError
    from faceid.verify import parse_box

    try:
        return parse_box(text, field)
    except FaceIDError as exc:
        raise ApiError(400, str(exc)) from None


@router.post("/v1/verify", tags=["identify"])
async def verify(
    request: Request,
    caller: Reader,
    a: Annotated[UploadFile, File(description="The first photo.")],
    b: Annotated[UploadFile, File(description="The second photo.")],
    fmr: Annotated[
        Optional[float], Query(gt=0.0, lt=1.0, description="False-match rate to decide at [default: 0.001].")
    ] = None,
    threshold: Annotated[
        Optional[float], Query(ge=-1.0, le=1.0, description="Cosine similarity to decide at, instead of fmr.")
    ] = None,
    box_a: Annotated[Optional[str], Query(description="x,y,w,h: the face to use in a [default: the largest].")] = None,
    box_b: Annotated[Optional[str], Query(description="x,y,w,h: the face to use in b [default: the largest].")] = None,
):
    """Each photo's largest face (or the one at its box) compared: ``same``, ``similarity``, the
    ``threshold`` used and the false-match rate it was measured at; what `faceid verify --json` prints."""
    if fmr is not None and threshold is not None:
        raise ApiError(400, "give fmr or threshold, not both")
    state = state_of(request)
    boxes = _box(box_a, "box_a"), _box(box_b, "box_b")
    uploads = [(await f.read(), upload_name(f, i)) for i, f in enumerate((a, b))]
    result = await run_in_threadpool(_verify, state, uploads, boxes, fmr, threshold)
    return result.to_json()


def _verify(state: State, uploads, boxes, fmr, threshold):
    from faceid.verify import choose_face, verify_faces

    state.arriving(+2)
    try:
        images = [decode(data, name, state.settings) for data, name in uploads]
    finally:
        state.arriving(-2)
    found = image_faces(state, [i.pixels for i in images], [i.name for i in images])
    for faces in found:
        if isinstance(faces, str):
            raise ApiError(422, faces)
    # boxes asked for and answered are the photo's own pixels, whatever size it was decoded at
    found = [upscaled(f, i) for f, i in zip(found, images)]
    chosen = [choose_face(f, i.name, box) for f, i, box in zip(found, images, boxes)]
    return verify_faces(
        chosen[0],
        chosen[1],
        state.pipeline.key,
        sources=(images[0].name, images[1].name),
        counts=(len(found[0]), len(found[1])),
        fmr=fmr,
        threshold=threshold,
    )
