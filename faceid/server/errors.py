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
    "api_words",
    "error_response",
    "one_line",
    "status_of",
    "without_paths",
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

    def __init__(self, status: int, message: str, headers: Optional[dict] = None, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
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


#: The library's words for the command line, and the API's for the same thing.
_API_WORDS = (("pass --largest", "pass largest=true"), ("--largest", "largest=true"), ("--box", "box"))


def api_words(text: str) -> str:
    """A library message worded for the API: its parameters instead of the command line's flags."""
    for cli, api in _API_WORDS:
        text = text.replace(cli, api)
    return text


def without_paths(text: str, request) -> str:
    """``text`` without the server's gallery path (no client needs to know where it is kept)."""
    state = getattr(request.app.state, "faceid", None)
    path = str(getattr(getattr(state, "gallery", None), "path", "") or "")
    if path:
        text = text.replace(f" in {path}", "").replace(path, "the gallery")
    return text


def error_response(status: int, message: str, headers: Optional[dict] = None, **extra) -> JSONResponse:
    return JSONResponse({"error": one_line(api_words(message)), **extra}, status_code=status, headers=headers)


def _validation_words(error: dict) -> str:
    """One of pydantic's complaints in the API's words (no Python types, no parser internals)."""
    kind, message = str(error.get("type", "")), str(error.get("msg", "invalid"))
    where = ".".join(
        str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path") and not isinstance(p, int)
    )
    if "UploadFile" in message:
        message = "expected a file (a part of a multipart/form-data body with a filename)"
    elif kind == "json_invalid" or "JSON decode" in message:
        return "the body is not valid JSON"
    elif kind in ("model_attributes_type", "dict_type", "model_type"):
        message = "the body must be a JSON object"
    elif kind == "missing":
        message = "missing"
    message = message.removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


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
        return _answer(request, exc.status, without_paths(exc.message, request), headers=exc.headers, **exc.extra)

    @app.exception_handler(FaceIDError)
    async def faceiderror_response(request: Request, exc: FaceIDError):
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return _answer(request, status, without_paths(str(exc), request))

    @app.exception_handler(StarletteHTTPException)
    async def httperror_response(request: Request, exc: StarletteHTTPException):
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such path in this API: {request.url.path[:200]} (the API is described at /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method[:20]} is not a method {request.url.path[:200]} answers"
        return _answer(request, exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = list(dict.fromkeys(_validation_words(e) for e in exc.errors()[:3]))
        return _answer(request, 400, "; ".join(problems) or "bad request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return _answer(request, 500, f"internal error ({type(exc).__name__}); the server's log has the details")
