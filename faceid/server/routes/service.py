"""The page (``/``, plain HTML/JS from :mod:`faceid.web`), ``/healthz`` and ``/v1/key`` (who is asking)."""

from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from faceid.server.auth import Reader
from faceid.server.schemas import HealthOut, LoadingOut
from faceid.server.state import state_of

__all__ = ["WEB", "router"]

WEB = Path(__file__).resolve().parent.parent.parent / "web"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"model": LoadingOut, "description": "Still loading the models"}},
    tags=["service"],
)
async def healthz(request: Request):
    """200 once the models are loaded, 503 ``{"status": "loading"}`` until then; says whether
    requests need a key. No key needed."""
    if getattr(request.app.state, "faceid", None) is None:
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "2"})
    state = state_of(request)

    def look() -> HealthOut:
        with state.use():
            auth = state.settings.auth and not (state.settings.loopback and state.keys.count() == 0)
        model = getattr(getattr(state.pipeline, "spec", None), "name", None)
        batcher = state.batcher
        return HealthOut(status="ok", auth=auth, model=model, batches=batcher.batches, batched_images=batcher.images)

    return await run_in_threadpool(look)


class KeyOut(BaseModel):
    key: Optional[str] = Field(description="The key's name; null when this server needs no key.")
    scope: str = Field(description="What it may do: `admin` (change the gallery) or `read-only`.")


@router.get("/v1/key", response_model=KeyOut, tags=["service"])
async def key(caller: Reader):
    """The key this request was sent with: its name and scope (the page offers only what the scope allows)."""
    return KeyOut(key=caller.key, scope=caller.scope)
