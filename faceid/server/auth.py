"""Who is asking: API keys as FastAPI dependencies (:data:`Reader`, :data:`Admin`), never checked in a route.

A loopback server whose gallery has no keys yet, or one started with ``--insecure-no-auth``,
takes every request as an admin's; otherwise a request needs ``Authorization: Bearer KEY``
(401 without, or with an unknown or revoked key) and an admin key to change anything (403).
"""

import logging
import time
from typing import Annotated, Optional

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from faceid.apikeys import ADMIN, ApiKey
from faceid.errors import FaceIDError
from faceid.server.errors import ApiError
from faceid.server.state import Caller, state_of

__all__ = ["Admin", "Reader", "admin", "reader"]

log = logging.getLogger(__name__)

TOUCH_EVERY = 60.0  # seconds between writes of a key's last-used time

_bearer = HTTPBearer(auto_error=False, description="An API key from `faceid keys create`.")


def _caller(request: Request, credentials: Optional[HTTPAuthorizationCredentials]) -> Caller:
    state = state_of(request)
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


Reader = Annotated[Caller, Depends(reader)]
Admin = Annotated[Caller, Depends(admin)]
