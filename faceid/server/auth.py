"""Who is asking: API keys as FastAPI dependencies (:data:`Reader`, :data:`Admin`), never checked in a route.

A loopback server whose gallery has no keys yet, or one started with ``--insecure-no-auth``,
takes every request as an admin's; otherwise a request needs ``Authorization: Bearer KEY`` or
``x-api-key: KEY`` (401 without, or with an unknown or revoked key) and an admin key to change
anything (403). The key is checked by :class:`~faceid.server.limits.Limits` from the headers,
before a byte of the body is read (:func:`authenticate`); the dependencies take its answer.
"""

import logging
import time
from collections.abc import Mapping
from typing import Annotated, Optional

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from faceid.apikeys import ADMIN, ApiKey
from faceid.errors import FaceIDError
from faceid.server.errors import ApiError
from faceid.server.state import CALLER, Caller, state_of

__all__ = ["CHALLENGE", "Admin", "Reader", "admin", "authenticate", "header_key", "reader"]

log = logging.getLogger(__name__)

TOUCH_EVERY = 60.0  # seconds between writes of a key's last-used time

#: The ``WWW-Authenticate`` header of every 401.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="faceid"'}

_bearer = HTTPBearer(auto_error=False, description="An API key from `faceid keys create`.")
_header = APIKeyHeader(name="x-api-key", auto_error=False, description="The same key, in this header instead.")


def header_key(headers: Mapping[str, str]) -> Optional[str]:
    """The key a request carries in ``Authorization: Bearer KEY`` or ``x-api-key: KEY`` (``headers``
    with lower-case names), or ``None``."""
    value = headers.get("authorization", "")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    token = headers.get("x-api-key", "").strip()
    return token or None


def authenticate(state, token: Optional[str]) -> Caller:
    """The caller a key names (``state``: the app's :class:`~faceid.server.state.State`); call from a
    worker thread (it reads the gallery).

    Raises:
        ApiError: 401 without a key, or with an unknown or revoked one, when keys are required.
    """
    with state.use() as gallery:
        keys = state.keys.count()
        if not state.settings.auth or (state.settings.loopback and keys == 0):
            return Caller(None, ADMIN)  # --insecure-no-auth, or a loopback server with no keys yet
        if token is None:
            raise ApiError(
                401, "this server needs an API key: send 'Authorization: Bearer KEY' or 'x-api-key: KEY'", CHALLENGE
            )
        key: Optional[ApiKey] = state.keys.check(token)
        if key is None:
            raise ApiError(401, "unknown or revoked API key", CHALLENGE)
        now = time.monotonic()
        if now - state.touched.get(key.name, -TOUCH_EVERY) >= TOUCH_EVERY:
            state.touched[key.name] = now
            try:
                state.keys.touch(key.name)
            except FaceIDError as exc:  # bookkeeping must not fail a request
                log.warning("could not record the use of key %s in %s: %s", key.name, gallery.path, exc)
        return Caller(key.name, key.scope)


def _caller(request: Request) -> Caller:
    known = request.scope.get(CALLER)  # checked from the headers before the body was read
    if isinstance(known, Caller):
        return known
    return authenticate(state_of(request), header_key(request.headers))


# Declared for the OpenAPI schema (the "Authorize" button of /docs); the key is read by _caller.
Credentials = Annotated[Optional[HTTPAuthorizationCredentials], Security(_bearer)]
HeaderKey = Annotated[Optional[str], Security(_header)]


def reader(request: Request, credentials: Credentials, header: HeaderKey) -> Caller:
    """Any valid key (or none needed)."""
    return _caller(request)


def admin(request: Request, credentials: Credentials, header: HeaderKey) -> Caller:
    """A key that may change the gallery."""
    caller = _caller(request)
    if caller.scope != ADMIN:
        raise ApiError(403, f"key {caller.key!r} is read-only; this needs an admin key")
    return caller


def keeps_unknown(caller: Caller, asked: bool, settings) -> bool:
    """Whether a request keeps its unknown faces: when it asks (``remember=true``), which keeps faces
    in the gallery and so needs an admin key, or when the server was started with ``--remember-unknown``
    (the operator's choice, for cameras that cannot ask; it holds for every key)."""
    if asked and caller.scope != ADMIN:
        raise ApiError(403, f"key {caller.key!r} is read-only; remember=true keeps faces, which needs an admin key")
    return asked or settings.remember_unknown


Reader = Annotated[Caller, Depends(reader)]
Admin = Annotated[Caller, Depends(admin)]
