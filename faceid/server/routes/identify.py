"""``POST /v1/identify``: every face in an image, named or not; and the annotated images it makes."""

import time
from dataclasses import replace
from typing import Annotated, Optional, Union

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceid.images import LoadedImage
from faceid.server.auth import Reader, keeps_unknown
from faceid.server.errors import ApiError
from faceid.server.schemas import IdentifyOut
from faceid.server.state import State, state_of
from faceid.server.uploads import downscaled, memory_for, only_one_file, upload_name, uploaded_faces, upscaled
from faceid.server.video_schemas import VideoOut
from faceid.server.video_upload import identify_video_route, is_video_upload

__all__ = ["router"]

router = APIRouter()


@router.post(
    "/v1/identify",
    response_model=Union[IdentifyOut, VideoOut],
    response_model_exclude_unset=True,
    tags=["identify"],
)
async def identify(
    request: Request,
    caller: Reader,
    file: Annotated[UploadFile, File(description="One image, or one short video (mp4, mov, mkv, webm, avi).")],
    threshold: Annotated[Optional[float], Query(ge=-1.0, le=1.0, description="Decision score a match needs.")] = None,
    margin: Annotated[Optional[float], Query(ge=0.0, le=2.0, description="How far the best must lead.")] = None,
    annotate: Annotated[bool, Query(description="Also make an annotated JPEG (URL in 'annotated').")] = False,
    remember: Annotated[
        bool, Query(description="Keep the unknown faces for review, as `identify --remember` (their ids in 'kept_as').")
    ] = False,
    fps: Annotated[
        Optional[float], Query(ge=0.1, le=120, description="Videos: frames looked at per second [default: 3].")
    ] = None,
):
    """Every face in the image, named, or unknown / ambiguous: what `faceid identify --json` prints.
    For a video, every track, each named once: what `faceid identify VIDEO --json` prints."""
    state = state_of(request)
    await only_one_file(request)
    name = upload_name(file)
    data = await file.read()
    remember = keeps_unknown(caller, remember, state.settings)
    if is_video_upload(data, file.content_type):  # holds the memory budget itself, one frame at a time
        return await identify_video_route(state, data, name, caller, fps, threshold, margin, remember)
    if len(data) > state.settings.max_body_bytes:  # the body limit of this route is the video one
        raise ApiError(413, f"request body is {len(data)} bytes, more than the {state.settings.max_body_bytes} allowed")
    async with state.budget.hold(memory_for([data], state.settings), time.monotonic() + state.settings.request_timeout):
        # decode, detect + embed (in the batcher's thread, with whatever else arrived) and decide,
        # all in one worker thread: each hand-over between threads costs on a busy machine
        image, result = await run_in_threadpool(_identify_upload, state, data, name, threshold, margin, remember)
        if annotate:
            from faceid.draw import annotate as draw

            def render() -> bytes:
                import io

                buffer = io.BytesIO()
                draw(image.pixels, downscaled(result, image)).save(buffer, format="JPEG", quality=90)
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
    image, faces = uploaded_faces(state, data, name)
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
    # the faces were found (and kept) in the pixels as decoded; the answer speaks of the photo as sent
    width, height = image.full_size or (image.width, image.height)
    return replace(result, faces=tuple(upscaled(list(result.faces), image)), width=width, height=height)
