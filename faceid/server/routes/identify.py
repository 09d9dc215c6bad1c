"""``POST /v1/identify``: every face in an image, named or not; and the annotated images it makes."""

from dataclasses import replace
from typing import Annotated, Optional

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceid.images import LoadedImage
from faceid.server.auth import Reader
from faceid.server.errors import ApiError
from faceid.server.schemas import IdentifyOut
from faceid.server.state import State, state_of
from faceid.server.uploads import decode, image_faces, upload_name

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/identify", response_model=IdentifyOut, response_model_exclude_unset=True, tags=["identify"])
async def identify(
    request: Request,
    caller: Reader,
    file: Annotated[UploadFile, File(description="One image.")],
    threshold: Annotated[Optional[float], Query(ge=-1.0, le=1.0, description="Decision score a match needs.")] = None,
    margin: Annotated[Optional[float], Query(ge=0.0, le=2.0, description="How far the best must lead.")] = None,
    annotate: Annotated[bool, Query(description="Also make an annotated JPEG (URL in 'annotated').")] = False,
    remember: Annotated[
        bool, Query(description="Keep the unknown faces for review, as `identify --remember` (their ids in 'kept_as').")
    ] = False,
):
    """Every face in the image, named, or unknown / ambiguous: what `faceid identify --json` prints."""
    state = state_of(request)
    name = upload_name(file)
    data = await file.read()
    # decode, detect + embed (in the batcher's thread, with whatever else arrived) and decide,
    # all in one worker thread: each hand-over between threads costs on a busy machine
    remember = remember or state.settings.remember_unknown
    image, result = await run_in_threadpool(_identify_upload, state, data, name, threshold, margin, remember)
    if annotate:
        from faceid.draw import annotate as draw

        def render() -> bytes:
            import io

            buffer = io.BytesIO()
            draw(image.pixels, result).save(buffer, format="JPEG", quality=90)
            return buffer.getvalue()

        token = state.keep_annotated(await run_in_threadpool(render))
        result = replace(result, annotated=f"/v1/annotated/{token}.jpg")
    return result.to_json()


@router.get(
    "/v1/annotated/{token}.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The annotated JPEG."}},
    tags=["identify"],
)
async def annotated(request: Request, caller: Reader, token: str):
    """An annotated image made by `POST /v1/identify?annotate=true` (the latest few are kept)."""
    state = state_of(request)
    with state.lock:
        jpeg = state.annotated.get(token)
    if jpeg is None:
        raise ApiError(404, "no such annotated image (only the latest ones are kept)")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})


def _identify_upload(state: State, data: bytes, name: str, threshold, margin, remember: bool = False):
    """``(image, Identification)`` of one uploaded image; runs in a worker thread."""
    state.arriving(+1)
    try:
        image = decode(data, name, state.settings)
    finally:
        state.arriving(-1)
    faces = image_faces(state, [image.pixels], [name])[0]
    if isinstance(faces, str):
        raise ApiError(422, faces)
    return image, _identify(state, image, faces, threshold, margin, remember)


def _identify(state: State, image: LoadedImage, faces, threshold, margin, remember: bool = False):
    from faceid.identify import identify_image

    with state.use() as gallery:
        result = identify_image(
            image, gallery, state.pipeline, faces=faces, threshold=threshold, margin=margin, remember=remember
        )
        if remember:
            from faceid.server.compat.recognise import after_keeping

            after_keeping(gallery, result.faces)
    return result
