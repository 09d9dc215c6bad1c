"""One error shape for every failure: ``{"error": "one line"}`` with the status that fits.

Library errors map to statuses here and nowhere else; an unexpected exception is logged with its
traceback on the server and answered with a 500 and one line, never the traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Optional

from fastapi.responses import JSONResponse

from faceid.errors import (
    FaceCountError,
    FaceIDError,
    FaceNotFoundError,
    GalleryBusyError,
    GroupNotFoundError,
    ImageError,
    ImageTooLargeError,
    InvalidNameError,
    KeyExistsError,
    KeyNotFoundError,
    ModelMismatchError,
    NameTakenError,
    OptionError,
    PersonNotFoundError,
    PipelineError,
    UncalibratedError,
    UnsupportedImageError,
    VideoError,
)
from faceid.server.schemas import ErrorOut

__all__ = [
    "OPENAPI_ERRORS",
    "SHAPES",
    "STATUSES",
    "ApiError",
    "add_error_handlers",
    "error_response",
    "one_line",
    "status_of",
]

log = logging.getLogger(__name__)


OPENAPI_ERRORS: dict[int | str, dict[str, Any]] = {
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


class ApiError(Exception):
    """An error answer: ``status`` and a one-line ``message`` (plus optional extra fields)."""

    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


#: The HTTP status of each library error class, most specific first: :func:`status_of` answers with
#: the first class the error is an instance of (500 for none). Chosen by class, never by the words.
STATUSES: tuple[tuple[type[FaceIDError], int], ...] = (
    (ImageTooLargeError, 413),
    (UnsupportedImageError, 415),
    (ImageError, 422),
    (VideoError, 422),
    (PipelineError, 422),
    (FaceCountError, 422),
    (PersonNotFoundError, 404),
    (FaceNotFoundError, 404),
    (GroupNotFoundError, 404),
    (KeyNotFoundError, 404),
    (NameTakenError, 409),
    (KeyExistsError, 409),
    (ModelMismatchError, 409),
    (InvalidNameError, 400),
    (OptionError, 400),
    (GalleryBusyError, 503),
    (UncalibratedError, 409),  # no threshold measured for the gallery's model: the server's setup
)


def status_of(exc: BaseException) -> int:
    """The HTTP status for a library error (see :data:`STATUSES`); 500 for anything else."""
    for kind, status in STATUSES:
        if isinstance(exc, kind):
            return status
    return 500


def one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def error_response(status: int, message: str, headers: Optional[dict] = None, **extra) -> JSONResponse:
    return JSONResponse({"error": one_line(message), **extra}, status_code=status, headers=headers)


#: URL path prefix -> ``shape(status, message, extra) -> (status, body)``: the error shape of a
#: compatibility API (:mod:`faceid.server.compat`), used for every error under its prefix.
SHAPES: dict[str, Callable[[int, str, dict], tuple[int, dict]]] = {}


def _answer(request, status: int, message: str, headers: Optional[dict] = None, **extra) -> JSONResponse:
    """The error response in the shape of the API the request's path belongs to."""
    path = request.url.path
    for prefix, shape in SHAPES.items():
        if path.startswith(prefix):
            status, body = shape(status, one_line(message), extra)
            return JSONResponse(body, status_code=status, headers=headers)
    return error_response(status, message, headers, **extra)


def add_error_handlers(app) -> None:
    """Answer every exception with the one error shape (``app`` is the FastAPI app)."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ApiError)
    async def apierror_response(request: Request, exc: ApiError):
        return _answer(request, exc.status, exc.message, **exc.extra)

    @app.exception_handler(FaceIDError)
    async def faceiderror_response(request: Request, exc: FaceIDError):
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return _answer(request, status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def httperror_response(request: Request, exc: StarletteHTTPException):
        return _answer(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors()[:3]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
            problems.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        return _answer(request, 400, "; ".join(problems) or "bad request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return _answer(request, 500, f"internal error ({type(exc).__name__}); the server's log has the details")
