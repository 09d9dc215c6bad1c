"""The key of a compatibility request, wherever its client puts it, with faceid's scopes.

``Authorization: Bearer KEY`` (faceid's own), ``x-api-key: KEY`` (CompreFace's clients) and, on
the DeepStack routes, an ``api_key`` form field (read and checked by :mod:`.formkey` before the
upload is accepted, and handed on in the request's scope). The key is then checked exactly as for
faceid's routes (:func:`faceid.server.auth.reader`): the same keys, the same read-only and admin
scopes. DeepStack clients send ``api_key`` empty when none is set: that is no key.
"""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials

from faceid.apikeys import ADMIN
from faceid.server.auth import Credentials, authenticate
from faceid.server.errors import ApiError
from faceid.server.state import CALLER, Caller, state_of

__all__ = ["FORM_KEY", "CompatAdmin", "CompatReader"]

#: Where :mod:`.formkey` leaves a DeepStack form-field key in the ASGI scope's ``state``.
FORM_KEY = "faceid_form_api_key"

_x_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="An API key (CompreFace's header).")


def _credentials(request: Request, bearer, header: Optional[str]) -> Optional[HTTPAuthorizationCredentials]:
    if bearer is not None:
        return bearer
    key = header or request.scope.get("state", {}).get(FORM_KEY)
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=key) if key else None


def _caller(request: Request, bearer, header: Optional[str]) -> Caller:
    known = request.scope.get(CALLER)  # a header key, checked before the body was read
    if isinstance(known, Caller):
        return known
    credentials = _credentials(request, bearer, header)
    return authenticate(state_of(request), credentials.credentials if credentials else None)


def compat_reader(
    request: Request, bearer: Credentials, header: Annotated[Optional[str], Security(_x_api_key)]
) -> Caller:
    """Any valid key, from any of the three places (or none needed)."""
    return _caller(request, bearer, header)


def compat_admin(
    request: Request, bearer: Credentials, header: Annotated[Optional[str], Security(_x_api_key)]
) -> Caller:
    """A key that may change the gallery, from any of the three places."""
    caller = _caller(request, bearer, header)
    if caller.scope != ADMIN:
        raise ApiError(403, f"key {caller.key!r} is read-only; this needs an admin key")
    return caller


CompatReader = Annotated[Caller, Depends(compat_reader)]
CompatAdmin = Annotated[Caller, Depends(compat_admin)]
