"""The app factory: the models loaded once (lifespan), the routes, limits and error handlers put together.

The parts, one job each:

- :mod:`.state`: the gallery behind its lock, the batcher, annotated images kept for their URLs
- :mod:`.limits`: body size, time per request, uploads in flight (ASGI middleware)
- :mod:`.auth`: API keys and scopes, as dependencies
- :mod:`.errors`: one error shape, library errors mapped to statuses
- :mod:`.uploads`: uploaded files decoded, their faces found through :mod:`.batching`
- :mod:`.routes`: the page and health, identify, people and faces, review of unknown faces
"""

import asyncio
import logging
import os
from collections.abc import Callable
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from faceid.errors import FaceIDError
from faceid.gallery import AnyGallery, open_gallery
from faceid.server import routes
from faceid.server.errors import OPENAPI_ERRORS, add_error_handlers
from faceid.server.headers import SecurityHeaders, csp_for_inline_scripts
from faceid.server.limits import FORM_KEY_PATHS, Limits
from faceid.server.routes.service import WEB
from faceid.server.settings import Settings
from faceid.server.state import State

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)


def create_app(
    gallery_path: "str | os.PathLike",
    *,
    pipeline=None,
    pipeline_factory: Optional[Callable[[AnyGallery], Any]] = None,
    settings: Settings = Settings(),
    model: Optional[str] = None,
    detector: Optional[str] = None,
    load_in_background: bool = False,
    on_load_failure: Optional[Callable[[BaseException], None]] = None,
    form_key_paths: tuple[str, ...] = FORM_KEY_PATHS,
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
        detector: the face detector of a new gallery (``"mtcnn"`` or ``"yunet"``), the same way.
        load_in_background: start answering at once (``/healthz`` says 503 ``loading``, the API
            503 with Retry-After) while the models load, instead of only once they are loaded.
        on_load_failure: called with the exception if loading in the background fails.
        form_key_paths: path prefixes of routes that read their API key from a form field
            (see :class:`~faceid.server.limits.Limits`).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.faceid = None

        def start():
            return run_in_threadpool(_start, gallery_path, pipeline, pipeline_factory, settings, model, detector)

        if not load_in_background:
            app.state.faceid = await start()
        else:

            async def load() -> None:
                try:
                    app.state.faceid = await start()
                except BaseException as exc:
                    log.error("could not start: %s", exc, exc_info=not isinstance(exc, FaceIDError))
                    if on_load_failure is not None:
                        on_load_failure(exc)

            loading = asyncio.ensure_future(load())
        try:
            yield
        finally:
            if load_in_background and not loading.done():
                await asyncio.wait([loading])  # a thread cannot be stopped: let it finish, then close
            if app.state.faceid is not None:
                await run_in_threadpool(_stop, app.state.faceid)

    assets = _swagger_ui_assets()
    app = FastAPI(
        title="faceid",
        summary="Name the faces in photos against a gallery of enrolled people.",
        version=_version(),
        lifespan=lifespan,
        responses=OPENAPI_ERRORS,
        docs_url=None if assets else "/docs",  # else FastAPI's page, which fetches Swagger UI from a CDN
        redoc_url=None,
    )
    app.add_middleware(Limits, settings=settings, form_key_paths=form_key_paths)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the door's own too
    add_error_handlers(app)
    for module in (routes.service, routes.identify, routes.people, routes.review, routes.verify):
        app.include_router(module.router)
    if settings.compat:
        _add_compat(app, settings)
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    if assets:
        _add_offline_docs(app, assets)
    return app


def _add_compat(app: FastAPI, settings: Settings) -> None:
    """CompreFace's and DeepStack's routes, and the DeepStack form-field key read before the upload."""
    from faceid.server import compat
    from faceid.server.compat.formkey import FormKey

    app.add_middleware(FormKey, settings=settings)  # outside Limits: a keyless upload never takes its slots
    for router in compat.routers():
        app.include_router(router)


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
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="faceid API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )
        # Swagger UI starts from one inline script: allowed by its hash, not by 'unsafe-inline'
        page.headers["content-security-policy"] = csp_for_inline_scripts(bytes(page.body).decode())
        return page


def _version() -> str:
    from faceid import __version__

    return __version__


def _start(
    gallery_path,
    pipeline,
    pipeline_factory,
    settings: Settings,
    model: Optional[str] = None,
    detector: Optional[str] = None,
) -> State:
    from faceid.server.batching import Batcher

    gallery = open_gallery(gallery_path, create=True)
    try:
        if pipeline is None:
            if pipeline_factory is not None:
                pipeline = pipeline_factory(gallery)
            else:
                from faceid.enroll import enrolment_key
                from faceid.pipeline import Pipeline

                pipeline = Pipeline.from_key(enrolment_key(gallery, model=model, detector=detector), frozen=True)
            _warm(pipeline, settings)  # a pipeline handed in ready (tests) is the caller's to warm
        log.info("models loaded; gallery %s", gallery.path)
        state = State(gallery, None, pipeline, settings)
        state.batcher = Batcher(
            pipeline,
            wait=settings.batch_wait_ms / 1000.0,
            max_batch=settings.max_batch,
            coming=lambda: state.coming,
            workers=settings.batch_workers,
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


def _stop(state: State) -> None:
    state.batcher.stop()
    state.compactor.stop(timeout=state.settings.request_timeout)
    with state.lock:
        state.gallery.close()


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
    detector: Optional[str] = None,
    ssl_certfile: Optional[str] = None,
    ssl_keyfile: Optional[str] = None,
) -> None:
    """Run the app with uvicorn until SIGINT or SIGTERM; requests in flight finish first.

    The socket is bound before the models load: ``/healthz`` answers 503 ``loading`` meanwhile.
    With ``ssl_certfile`` and ``ssl_keyfile`` (PEM files) it speaks HTTPS (uvicorn's TLS).

    Raises:
        FaceIDError: (or any other error) the models or the gallery could not be loaded.
    """
    import uvicorn

    from faceid.server.budget import limit_arenas

    limit_arenas()  # before the models' and the workers' threads exist: see budget.ARENAS

    class _Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self):
            # uvicorn re-raises the signal after a graceful shutdown (the process then dies of it);
            # a clean stop is a clean exit here: status 0.
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    failed: list[BaseException] = []

    def stop(exc: BaseException) -> None:
        failed.append(exc)
        server.should_exit = True

    app = create_app(
        gallery_path, settings=settings, model=model, detector=detector, load_in_background=True, on_load_failure=stop
    )
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
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    server = _Server(config)
    server.run()
    if failed:
        raise failed[0]
