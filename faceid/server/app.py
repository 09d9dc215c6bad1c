"""The FastAPI app: routes, auth, limits, and the models loaded once.

Everything the gallery does goes through one :class:`~faceid.gallery.Gallery` object behind a
lock (a ``Gallery`` is for one thread at a time); detection and embedding run outside it, in the
micro-batcher's worker (:mod:`faceid.server.batching`). The gallery is SQLite, so changes made by
the CLI in another process are seen by the next request: people and faces are read from the
database each time, and the search index is rebuilt when the gallery's write generation moves.
"""

import asyncio
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
from fastapi import Depends, FastAPI, File, Query, Request, Security, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceid.apikeys import ADMIN, ApiKey, ApiKeys
from faceid.batch import Processed
from faceid.errors import FaceIDError, ImageError
from faceid.gallery import Gallery, normalise_name
from faceid.images import LoadedImage, read_image
from faceid.server.errors import ApiError, image_status, status_of
from faceid.server.schemas import (
    EnrollOut,
    ErrorOut,
    HealthOut,
    IdentifyOut,
    PersonDetailOut,
    PersonOut,
    RemovedFaceOut,
    RemovedOut,
    RenameIn,
)
from faceid.server.settings import Settings

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent.parent / "web"
TOUCH_EVERY = 60.0  # seconds between writes of a key's last-used time

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "Bad request"),
        (401, "No key, or an unknown key"),
        (403, "A read-only key asked to change something"),
        (404, "Not found"),
        (408, "The request took longer than the server allows"),
        (409, "Conflict (name taken, or the gallery was made with another model)"),
        (413, "Body or image too large"),
        (415, "Not an image"),
        (422, "Unreadable image, or no usable face"),
        (500, "Internal error (logged on the server)"),
        (503, "Busy: too many uploads at once, or the gallery is locked"),
    )
}


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key's name (``None`` when keys are not required) and its scope."""

    key: Optional[str]
    scope: str


class _State:
    """What the app keeps between requests: the gallery behind its lock, the batcher, annotated images."""

    def __init__(self, gallery: Gallery, batcher, pipeline, settings: Settings) -> None:
        self.gallery = gallery
        self.keys = ApiKeys(gallery)
        self.lock = threading.Lock()
        self.batcher = batcher
        self.pipeline = pipeline
        self.settings = settings
        self.annotated: OrderedDict[str, bytes] = OrderedDict()
        self.touched: dict[str, float] = {}
        self.coming = 0  # requests being decoded now, whose images the batcher will get soon
        self._coming_lock = threading.Lock()

    def arriving(self, change: int) -> None:
        with self._coming_lock:
            self.coming += change

    @contextmanager
    def use(self, caller: Optional[Caller] = None):
        """The gallery, held for this thread; changes are audited as the caller's key."""
        with self.lock:
            self.gallery.actor = f"key:{caller.key}" if caller is not None and caller.key else None
            try:
                yield self.gallery
            finally:
                self.gallery.actor = None

    def keep_annotated(self, jpeg: bytes) -> str:
        token = secrets.token_urlsafe(16)
        with self.lock:
            self.annotated[token] = jpeg
            while len(self.annotated) > self.settings.annotated_kept:
                self.annotated.popitem(last=False)
        return token


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def _error(status: int, message: str, headers: Optional[dict] = None, **extra) -> JSONResponse:
    return JSONResponse({"error": _one_line(message), **extra}, status_code=status, headers=headers)


# -- limits -------------------------------------------------------------------------------------------


class Limits:
    """ASGI middleware: body size, time per request, and uploads in flight.

    A body is read (up to ``max_body_bytes``) before the app sees it, within the request's time,
    so a slow or stalled client is cut off at ``request_timeout`` and never holds a worker; more
    than ``max_uploads`` bodies at once are refused at once with 503 and ``Retry-After``.
    """

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.uploads = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        started = False

        async def tracked_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def answer(response: JSONResponse) -> None:
            if not started:
                await response(scope, receive, send)

        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await answer(_error(400, "Content-Length is not a number"))
                return
            if declared > s.max_body_bytes:
                await answer(_error(413, f"request body is {declared} bytes, more than the {s.max_body_bytes} allowed"))
                return
        has_body = scope["method"] in ("POST", "PUT", "PATCH") or length not in (None, b"0")
        if not has_body:
            try:
                await asyncio.wait_for(self.app(scope, receive, tracked_send), s.request_timeout)
            except asyncio.TimeoutError:
                await answer(_error(503, f"the request took longer than {s.request_timeout:g} s"))
            return
        if self.uploads >= s.max_uploads:
            busy = f"busy: {self.uploads} uploads in progress; try again shortly"
            await answer(_error(503, busy, headers={"Retry-After": "1"}))
            return
        self.uploads += 1
        try:
            deadline = time.monotonic() + s.request_timeout
            try:
                body = await asyncio.wait_for(self._read_body(receive), s.request_timeout)
            except _TooLarge:
                await answer(_error(413, f"request body is more than the {s.max_body_bytes} bytes allowed"))
                return
            except asyncio.TimeoutError:
                await answer(_error(408, f"the request body did not arrive within {s.request_timeout:g} s"))
                return
            if body is None:  # the client went away
                return
            sent = False

            async def replay():
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            try:
                await asyncio.wait_for(self.app(scope, replay, tracked_send), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                await answer(_error(503, f"the request took longer than {s.request_timeout:g} s"))
        finally:
            self.uploads -= 1

    async def _read_body(self, receive) -> Optional[bytes]:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _TooLarge(Exception):
    pass


# -- the app ------------------------------------------------------------------------------------------


def create_app(
    gallery_path: "str | os.PathLike",
    *,
    pipeline=None,
    pipeline_factory: Optional[Callable[[Gallery], Any]] = None,
    settings: Settings = Settings(),
    model: Optional[str] = None,
) -> FastAPI:
    """The ASGI app for one gallery.

    Args:
        gallery_path: the gallery folder (created when the first person is enrolled through it).
        pipeline: a ready :class:`~faceid.pipeline.Pipeline` (tests pass one with fake models).
        pipeline_factory: called with the open gallery at start-up to make the pipeline; default:
            the real models with the gallery's settings, as a frozen graph (fastest when warm).
        settings: limits and auth (:class:`Settings`).
        model: the embedding model of a new gallery (one that has no faces yet); a gallery with
            faces keeps its own, and another model here is refused (:class:`ModelMismatchError`).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = await run_in_threadpool(_start, gallery_path, pipeline, pipeline_factory, settings, model)
        app.state.faceid = state
        try:
            yield
        finally:
            await run_in_threadpool(_stop, state)

    assets = _swagger_ui_assets()
    app = FastAPI(
        title="faceid",
        summary="Name the faces in photos against a gallery of enrolled people.",
        version=_version(),
        lifespan=lifespan,
        responses=_ERRORS,
        docs_url=None if assets else "/docs",  # else FastAPI's page, which fetches Swagger UI from a CDN
        redoc_url=None,
    )
    app.add_middleware(Limits, settings=settings)
    _add_error_handlers(app)
    _add_routes(app, settings)
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    if assets:
        _add_offline_docs(app, assets)
    return app


def _swagger_ui_assets() -> Optional[Path]:
    """Swagger UI's files from the swagger-ui-bundle-v2 package (the serve extra), if installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def _add_offline_docs(app: FastAPI, assets: Path) -> None:
    """``/docs`` served with Swagger UI's own files, so the API docs work offline too."""
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="faceid API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def _version() -> str:
    from faceid import __version__

    return __version__


def _start(gallery_path, pipeline, pipeline_factory, settings: Settings, model: Optional[str] = None) -> _State:
    from faceid.server.batching import Batcher

    gallery = Gallery(gallery_path, create=True)
    try:
        if pipeline is None:
            if pipeline_factory is not None:
                pipeline = pipeline_factory(gallery)
            else:
                from faceid.enroll import enrolment_key
                from faceid.pipeline import Pipeline

                pipeline = Pipeline.from_key(enrolment_key(gallery, model=model), frozen=True)
            _warm(pipeline, settings)  # a pipeline handed in ready (tests) is the caller's to warm
        log.info("models loaded; gallery %s", gallery.path)
        state = _State(gallery, None, pipeline, settings)
        state.batcher = Batcher(
            pipeline, wait=settings.batch_wait_ms / 1000.0, max_batch=settings.max_batch, coming=lambda: state.coming
        )
    except BaseException:
        gallery.close()
        raise
    return state


def _warm(pipeline, settings: Settings) -> None:
    """Run every batch size the batcher may use once, on a sample photo with a face: TensorFlow
    prepares each new input shape on first use, and no request should pay for that."""
    from faceid.images import load_image

    sample = Path(__file__).resolve().parent.parent / "samples" / "photos" / "astronaut.jpg"
    try:
        image = load_image(sample)
    except FaceIDError:  # the samples are missing from this installation
        image = np.full((160, 160, 3), 127, np.uint8)
    for n in range(1, min(settings.max_batch, 8) + 1):
        pipeline.faces_many([image] * n)


def _stop(state: _State) -> None:
    state.batcher.stop()
    with state.lock:
        state.gallery.close()


def _state(request: Request) -> _State:
    return request.app.state.faceid


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.message, **exc.extra)

    @app.exception_handler(FaceIDError)
    async def faceid_error(request: Request, exc: FaceIDError):
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return _error(status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors()[:3]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
            problems.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        return _error(400, "; ".join(problems) or "bad request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")


# -- auth ---------------------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="An API key from `faceid keys create`.")


def _caller(request: Request, credentials: Optional[HTTPAuthorizationCredentials]) -> Caller:
    state = _state(request)
    with state.use() as gallery:
        keys = state.keys.count()
        if not state.settings.auth or (state.settings.loopback and keys == 0):
            return Caller(None, ADMIN)  # --insecure-no-auth, or a loopback server with no keys yet
        if credentials is None:
            raise ApiError(401, "this server needs an API key: send 'Authorization: Bearer KEY'")
        key: Optional[ApiKey] = state.keys.check(credentials.credentials)
        if key is None:
            raise ApiError(401, "unknown or revoked API key")
        now = time.monotonic()
        if now - state.touched.get(key.name, -TOUCH_EVERY) >= TOUCH_EVERY:
            state.touched[key.name] = now
            try:
                state.keys.touch(key.name)
            except FaceIDError as exc:  # bookkeeping must not fail a request
                log.warning("could not record the use of key %s in %s: %s", key.name, gallery.path, exc)
        return Caller(key.name, key.scope)


Credentials = Annotated[Optional[HTTPAuthorizationCredentials], Security(_bearer)]


def reader(request: Request, credentials: Credentials) -> Caller:
    """Any valid key (or none needed)."""
    return _caller(request, credentials)


def admin(request: Request, credentials: Credentials) -> Caller:
    """A key that may change the gallery."""
    caller = _caller(request, credentials)
    if caller.scope != ADMIN:
        raise ApiError(403, f"key {caller.key!r} is read-only; this needs an admin key")
    return caller


FaceId = Annotated[int, PathParam(ge=0, le=2**63 - 1, description="A face's id.")]
Reader = Annotated[Caller, Depends(reader)]
Admin = Annotated[Caller, Depends(admin)]


# -- routes -------------------------------------------------------------------------------------------


def _decode(data: bytes, name: str, settings: Settings) -> LoadedImage:
    return read_image(data, max_pixels=settings.max_pixels, name=name)


def _upload_name(file: UploadFile, i: int = 0) -> str:
    name = os.path.basename((file.filename or "").replace("\\", "/")).strip()
    return _one_line(name)[:200] or f"upload-{i + 1}"


def _parse_box(box: Optional[str]) -> Optional[tuple[int, int, int, int]]:
    if box is None:
        return None
    try:
        values = tuple(int(round(float(v))) for v in box.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0:
        raise ApiError(400, f"box must be x,y,width,height in pixels, got {box[:60]!r}")
    return (values[0], values[1], values[2], values[3])


def _iou(a, b) -> float:
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    w = max(0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    h = max(0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = w * h
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


def _add_routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", response_model=HealthOut, tags=["service"])
    async def healthz(request: Request):
        """200 once the models are loaded; says whether requests need a key. No key needed."""
        state = _state(request)

        def look() -> HealthOut:
            with state.use():
                auth = state.settings.auth and not (state.settings.loopback and state.keys.count() == 0)
            model = getattr(getattr(state.pipeline, "spec", None), "name", None)
            batcher = state.batcher
            return HealthOut(
                status="ok", auth=auth, model=model, batches=batcher.batches, batched_images=batcher.images
            )

        return await run_in_threadpool(look)

    @app.post("/v1/identify", response_model=IdentifyOut, tags=["identify"])
    async def identify(
        request: Request,
        caller: Reader,
        file: Annotated[UploadFile, File(description="One image.")],
        threshold: Annotated[
            Optional[float], Query(ge=-1.0, le=1.0, description="Decision score a match needs.")
        ] = None,
        margin: Annotated[Optional[float], Query(ge=0.0, le=2.0, description="How far the best must lead.")] = None,
        annotate: Annotated[bool, Query(description="Also make an annotated JPEG (URL in 'annotated').")] = False,
    ):
        """Every face in the image, named, or unknown / ambiguous: what `faceid identify --json` prints."""
        state = _state(request)
        name = _upload_name(file)
        data = await file.read()
        # decode, detect + embed (in the batcher's thread, with whatever else arrived) and decide,
        # all in one worker thread: each hand-over between threads costs on a busy machine
        image, result = await run_in_threadpool(_identify_upload, state, data, name, threshold, margin)
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

    @app.get(
        "/v1/annotated/{token}.jpg",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}, "description": "The annotated JPEG."}},
        tags=["identify"],
    )
    async def annotated(request: Request, caller: Reader, token: str):
        """An annotated image made by `POST /v1/identify?annotate=true` (the latest few are kept)."""
        state = _state(request)
        with state.lock:
            jpeg = state.annotated.get(token)
        if jpeg is None:
            raise ApiError(404, "no such annotated image (only the latest ones are kept)")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})

    @app.post("/v1/people/{name}/faces", response_model=EnrollOut, tags=["people"])
    async def enroll(
        request: Request,
        caller: Admin,
        name: str,
        file: Annotated[list[UploadFile], File(description="One or more photos of the person.")],
        largest: Annotated[bool, Query(description="In photos with several faces, take the largest.")] = False,
        box: Annotated[
            Optional[str], Query(description="x,y,width,height: take the face at this box (one photo only).")
        ] = None,
    ):
        """Enrol a person (created if new) from photos: one report entry per photo, as `faceid enroll` says."""
        state = _state(request)
        try:
            person = normalise_name(name)
        except FaceIDError as exc:
            raise ApiError(400, str(exc)) from None
        if len(file) > state.settings.max_files:
            raise ApiError(400, f"{len(file)} photos in one request; at most {state.settings.max_files}")
        wanted = _parse_box(box)
        if wanted is not None and len(file) != 1:
            raise ApiError(400, "box chooses a face in one photo; send one photo with it")
        items: list[Processed] = []
        for i, upload in enumerate(file):
            source = _upload_name(upload, i)
            data = await upload.read()
            try:
                items.append(Processed(source, await run_in_threadpool(_decode, data, source, state.settings)))
            except ImageError as exc:
                items.append(Processed(source, None, error=str(exc)))
        readable = [(i, item.image.pixels) for i, item in enumerate(items) if item.image is not None]
        pixels = [p for _, p in readable]
        names = [items[i].source for i, _ in readable]
        found = await run_in_threadpool(_image_faces, state, pixels, names) if readable else []
        for (i, _), faces in zip(readable, found):
            if isinstance(faces, str):
                items[i] = replace(items[i], error=faces)
                continue
            if wanted is not None:
                scored = sorted(((_iou(f.detection.box, wanted), f) for f in faces), key=lambda t: -t[0])
                if not scored or scored[0][0] < 0.3:
                    raise ApiError(422, f"{items[i].source}: no face found at box {list(wanted)}")
                faces = [scored[0][1]]
            items[i] = replace(items[i], faces=list(faces))

        def write():
            from faceid.enroll import enroll_processed

            with state.use(caller) as gallery:
                return enroll_processed(gallery, person, items, state.pipeline.key, largest=largest, paths=False)

        results = await run_in_threadpool(write)
        report = [r.to_json() for r in results]
        if results and all(not r.ok for r in results):
            first = results[0].message
            status = image_status(first) if items[0].image is None else 422
            more = f" (and {len(results) - 1} more photos failed)" if len(results) > 1 else ""
            raise ApiError(status, first + more, results=report)
        return {"person": person, "results": report}

    @app.get("/v1/people", response_model=list[PersonOut], tags=["people"])
    async def people(request: Request, caller: Reader):
        """Everyone enrolled, with how many faces each."""
        state = _state(request)

        def read():
            with state.use() as gallery:
                return [{"name": p.name, "faces": p.faces} for p in gallery.people()]

        return await run_in_threadpool(read)

    @app.get("/v1/people/{name}", response_model=PersonDetailOut, tags=["people"])
    async def person(request: Request, caller: Reader, name: str):
        """One person and their faces (with thumbnail URLs)."""
        state = _state(request)

        def read():
            with state.use() as gallery:
                p = gallery.person(name)
                faces = gallery.faces(p.name)  # renamed by another process in between: 404, as it should
            return {
                "name": p.name,
                "created_at": p.created_at,
                "faces": [
                    {
                        "id": f.id,
                        "box": list(f.box),
                        "source": os.path.basename(f.image_path) if f.image_path else None,
                        "created_at": f.created_at,
                        "thumbnail": f"/v1/faces/{f.id}/thumbnail",
                    }
                    for f in faces
                ],
            }

        return await run_in_threadpool(read)

    @app.patch("/v1/people/{name}", response_model=PersonOut, tags=["people"])
    async def rename(request: Request, caller: Admin, name: str, body: RenameIn):
        """Rename a person: `{"name": NEW}`; 409 if the new name is someone else's."""
        state = _state(request)

        def write():
            with state.use(caller) as gallery:
                old = gallery.person(name)
                new = normalise_name(body.name)
                if new in gallery and gallery.person(new).id != old.id:
                    raise ApiError(409, f"{new!r} is already enrolled; remove or rename them first")
                gallery.rename(old.name, new)
                return {"name": new, "faces": old.faces}

        return await run_in_threadpool(write)

    @app.delete("/v1/people/{name}", response_model=RemovedOut, tags=["people"])
    async def remove(request: Request, caller: Admin, name: str):
        """Remove a person and every face of theirs, securely (as `faceid remove`)."""
        state = _state(request)

        def write():
            with state.use(caller) as gallery:
                person = gallery.person(name)
                return {"removed": person.name, "faces": gallery.remove(person.name)}

        return await run_in_threadpool(write)

    @app.get(
        "/v1/faces/{face_id}/thumbnail",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}, "description": "A small JPEG of the face."}},
        tags=["people"],
    )
    async def thumbnail(request: Request, caller: Reader, face_id: FaceId):
        """A small JPEG of one enrolled face."""
        state = _state(request)
        jpeg = await run_in_threadpool(_thumbnail, state, face_id)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})

    @app.delete("/v1/faces/{face_id}", response_model=RemovedFaceOut, tags=["people"])
    async def remove_face(request: Request, caller: Admin, face_id: FaceId):
        """Remove one face, securely; the person stays."""
        state = _state(request)

        def write():
            with state.use(caller) as gallery:
                return {"removed": face_id, "person": gallery.remove_face(face_id)}

        return await run_in_threadpool(write)


def _identify_upload(state: _State, data: bytes, name: str, threshold, margin):
    """``(image, Identification)`` of one uploaded image; runs in a worker thread."""
    state.arriving(+1)
    try:
        image = _decode(data, name, state.settings)
    finally:
        state.arriving(-1)
    faces = _image_faces(state, [image.pixels], [name])[0]
    if isinstance(faces, str):
        raise ApiError(422, faces)
    return image, _identify(state, image, faces, threshold, margin)


def _image_faces(state: _State, images: list[np.ndarray], names: list[str]) -> list:
    """The faces of each image through the batcher (call from a worker thread), or for an image the
    pipeline failed on, one line saying so, worded as the command line words it. A bug (any other
    exception) propagates: a 500, logged with its traceback, not a bad photo."""
    from faceid.batch import _image_failures
    from faceid.server.batching import BatcherStopped

    try:
        return list(state.batcher.submit(images).result())
    except BatcherStopped as exc:
        raise ApiError(503, str(exc)) from None
    except _image_failures() as exc:
        if len(images) > 1:  # which one? each alone
            return [_image_faces(state, [image], [name])[0] for image, name in zip(images, names)]
        log.error("the face pipeline failed on %s", names[0], exc_info=True)
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        return [f"{names[0]}: the face pipeline failed on it: {reason}"]


def _identify(state: _State, image: LoadedImage, faces, threshold, margin):
    from faceid.identify import match_faces
    from faceid.results import Identification
    from faceid.thresholds import decision_params

    with state.use() as gallery:
        gallery.check_embedding_key(state.pipeline.key)
        params = decision_params(gallery, threshold=threshold, margin=margin)
        vectors = np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 1), np.float32)
        matches = match_faces(gallery, [f.detection for f in faces], vectors, params)
    matches = tuple(sorted(matches, key=lambda m: (m.detection.box[0], m.detection.box[1])))
    return Identification(image.name, matches, params, width=image.width, height=image.height)


def _thumbnail(state: _State, face_id: int) -> bytes:
    """The stored thumbnail; for a face enrolled before thumbnails were kept, a crop of its photo if unchanged."""
    import hashlib

    with state.use() as gallery:
        face = gallery.face(face_id)
        jpeg = gallery.face_thumbnail(face_id)
    if jpeg is not None:
        return jpeg
    path = Path(face.image_path) if face.image_path and os.path.isabs(face.image_path) else None
    if path is not None and path.is_file():
        from faceid.draw import face_thumbnail

        try:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == face.image_sha256:
                return face_thumbnail(_decode(data, str(path), state.settings).pixels, face.box)
        except (OSError, ImageError) as exc:
            log.info("no thumbnail for face %d from %s: %s", face_id, path, exc)
    raise ApiError(404, f"no thumbnail for face {face_id}: enrolled before thumbnails were kept, and its photo changed")


# -- running ------------------------------------------------------------------------------------------


def serve(
    gallery_path: "str | os.PathLike",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings = Settings(),
    log_level: str = "info",
    on_ready: Optional[Callable[[str], None]] = None,
    model: Optional[str] = None,
) -> None:
    """Run the app with uvicorn until SIGINT or SIGTERM; requests in flight finish first."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self):
            # uvicorn re-raises the signal after a graceful shutdown (the process then dies of it);
            # a clean stop is a clean exit here: status 0.
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    app = create_app(gallery_path, settings=settings, model=model)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=max(5, int(settings.request_timeout)),
        limit_concurrency=max(64, 8 * settings.max_uploads),
        server_header=False,
        access_log=log_level == "debug",
    )
    _Server(config).run()
