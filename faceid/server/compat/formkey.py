"""DeepStack clients send their key as a form field, ``api_key``, inside the upload. This ASGI
middleware reads it before the upload is accepted, so that a client without a valid key never
reaches the server's upload slots (:class:`faceid.server.limits.Limits`).

For a POST under ``/v1/vision/`` on a server that needs keys, the body is read here, in one of a
few slots of its own (:attr:`Settings.form_key_slots`; more at once get 503 with ``Retry-After``),
each read within a short timeout (:attr:`Settings.form_key_timeout`: a stalled client is cut off
with 408), until the ``api_key`` part is complete. An unknown or missing key is answered 401 at
once, the rest of the body unread. deepstack-python and Home Assistant send ``api_key`` before the
image; Double Take after it: then the image is held here, in this pool's slot and within the
body limit, until the key arrives. A valid key is handed on in the request's scope
(:data:`faceid.server.compat.keys.FORM_KEY`, checked again with its scope by the route) and the
request goes on to the app with what was read replayed first.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Optional

from starlette.concurrency import run_in_threadpool

from faceid.server.compat.keys import FORM_KEY
from faceid.server.errors import SHAPES, error_response, one_line
from faceid.server.settings import Settings

__all__ = ["FormKey", "first_field"]

log = logging.getLogger(__name__)

PREFIX = "/v1/vision/"

_NAME = re.compile(rb'name="([^"]*)"', re.IGNORECASE)


def first_field(
    body: bytes | bytearray, boundary: bytes, field: bytes, start: int = 0, seen: int = 0
) -> tuple[Optional[bytes], bool, int]:
    """``(value, complete, resume)`` of form part ``field`` in the multipart ``body`` read so far.

    ``value`` is the part's content once the part is complete, else ``None``; ``complete`` is
    whether the body holds its closing boundary (no more parts can come); ``resume`` is where
    the first part not yet complete begins: pass it as ``start`` when more of the body has
    arrived, and as ``seen`` how much of the body the previous call had: the end of a part in
    progress is then looked for in the new bytes only, so each byte is scanned about once however
    the body comes in.
    """
    marker = b"--" + boundary
    pos = body.find(marker, start)
    while pos >= 0:
        begin = pos + len(marker)
        if body[begin : begin + 2] == b"--":
            return None, True, pos
        head_end = body.find(b"\r\n\r\n", begin)
        if head_end < 0:
            return None, False, pos
        end = body.find(b"\r\n" + marker, max(head_end + 4, seen - len(marker) - 2))
        if end < 0:
            return None, False, pos
        name = _NAME.search(bytes(body[begin:head_end]))
        if name is not None and name.group(1) == field:
            return bytes(body[head_end + 4 : end]), False, pos
        pos = end + 2
    return None, False, max(start, len(body) - len(marker) - 2)


class FormKey:
    """ASGI middleware: the ``api_key`` form field of DeepStack routes, checked before the upload is accepted."""

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.busy = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        state = getattr(getattr(scope.get("app"), "state", None), "faceid", None)
        headers = dict(scope.get("headers") or [])
        kind = headers.get(b"content-type", b"")
        boundary = _boundary(kind) or (b"" if kind.lower().startswith(b"application/x-www-form-urlencoded") else None)
        if (
            state is None
            or boundary is None
            or _has_header_key(headers)
            or not await run_in_threadpool(_keys_needed, state)
        ):
            await self.app(scope, receive, send)
            return
        try:
            if int(headers.get(b"content-length", b"0")) > self.settings.max_body_bytes:
                await self.app(scope, receive, send)  # Limits answers 413 before reading
                return
        except ValueError:
            await self.app(scope, receive, send)
            return
        if self.busy >= self.settings.form_key_slots:
            busy = f"busy: {self.busy} DeepStack uploads waiting for their api_key; try again shortly"
            await _reply(scope, 503, busy, {"Retry-After": "1"})(scope, receive, send)
            return
        self.busy += 1
        try:
            outcome = await self._read_key(receive, boundary, state)
        finally:
            self.busy -= 1
        if isinstance(outcome, int):
            messages = {
                401: "this server needs an API key: send the form field api_key (or 'Authorization: Bearer KEY')",
                403: "unknown or revoked API key",
                408: f"the form's api_key did not arrive within {self.settings.form_key_timeout:g} s a read",
                413: f"request body is more than the {self.settings.max_body_bytes} bytes allowed",
            }
            status = 401 if outcome == 403 else outcome
            await _reply(scope, status, messages[outcome])(scope, receive, send)
            return
        if outcome is None:  # the client went away
            return
        key, read, more = outcome
        scope.setdefault("state", {})[FORM_KEY] = key
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": read, "more_body": more}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_key(self, receive, boundary: bytes, state):
        """``(key, body read, more to come)``, a status to answer with, or ``None`` (client gone)."""
        s = self.settings
        body = bytearray()
        resume = 0
        size, deadline = 0, time.monotonic() + s.request_timeout
        while True:
            wait = min(s.form_key_timeout, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), max(0.01, wait))
            except asyncio.TimeoutError:
                return 408
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > s.max_body_bytes:
                return 413
            seen = len(body)
            body += chunk
            more = bool(message.get("more_body", False))
            if boundary:
                value, complete, resume = first_field(body, boundary, b"api_key", resume, seen)
            else:  # a urlencoded form (deepstack-python's list call): the key once the body is whole
                value, complete = (None, False) if more else (_urlencoded_key(bytes(body)), True)
            if value is not None:
                key = value.decode("utf-8", "replace").strip()
                if not key:
                    return 401
                if not await run_in_threadpool(_valid, state, key):
                    return 403
                return key, bytes(body), more
            if complete or not more:
                return 401


def _reply(scope, status: int, message: str, headers: Optional[dict] = None):
    """An error answer in the shape of the API the path belongs to (DeepStack's)."""
    from fastapi.responses import JSONResponse

    for prefix, shape in SHAPES.items():
        if scope["path"].startswith(prefix):
            status, body = shape(status, one_line(message), {})
            return JSONResponse(body, status_code=status, headers=headers)
    return error_response(status, message, headers)


def _urlencoded_key(body: bytes) -> Optional[bytes]:
    from urllib.parse import parse_qs

    values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get("api_key")
    return values[0].encode("latin-1") if values else None


def _boundary(content_type: bytes) -> Optional[bytes]:
    if not content_type.lower().startswith(b"multipart/form-data"):
        return None
    match = re.search(rb'boundary="?([^";]+)"?', content_type)
    return match.group(1) if match else None


def _has_header_key(headers: dict) -> bool:
    """A key in a header (Bearer or x-api-key): the app's own dependency checks it."""
    auth = headers.get(b"authorization", b"")
    return auth.lower().startswith(b"bearer ") or bool(headers.get(b"x-api-key"))


def _keys_needed(state) -> bool:
    if not state.settings.auth:
        return False
    with state.use():
        return not (state.settings.loopback and state.keys.count() == 0)


def _valid(state, key: str) -> bool:
    with state.use():
        return state.keys.check(key) is not None
