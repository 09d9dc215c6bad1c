"""The door of the server (pure ASGI middleware, so it acts before FastAPI reads a byte of a body).

In this order, for every request to the API:

1. the key in the headers (``Authorization: Bearer`` or ``x-api-key``) is checked: no key or an
   unknown one is answered 401 at once, before a byte of the body is read or a slot is taken;
2. the key's turn: its rate and its requests at once (:class:`~faceid.server.slots.KeyLimits`),
   waiting within the request's time rather than refused;
3. for a request with a body, a server-wide upload slot (``max_uploads``), waited for likewise;
4. the body, read whole (up to ``max_body_bytes``) with ``read_timeout`` seconds allowed between
   two pieces of it (a stalled client is cut off then, with 408), and all within ``request_timeout``;
5. the app, within what is left of ``request_timeout``.

The page, its static files, ``/healthz`` and the API docs need no key. Paths under
``form_key_paths`` (compatibility routes whose clients send their key as a form field) go
straight to their routes when they carry no key in the headers: those read the key themselves.
"""

from __future__ import annotations

import asyncio
import time
from typing import Optional

from starlette.concurrency import run_in_threadpool

from faceid.server.errors import ApiError, error_response
from faceid.server.settings import Settings
from faceid.server.slots import KeyLimits, Refused, Slots
from faceid.server.state import CALLER

__all__ = ["FORM_KEY_PATHS", "PUBLIC", "Limits"]

#: Path prefixes of routes whose clients send their key as a form field (DeepStack's, issue 19):
#: without a key in the headers they go on to their own reader of the form.
FORM_KEY_PATHS = ("/v1/vision/",)

#: Paths answered without a key (exact, or a prefix when they end with "/").
PUBLIC = ("/", "/healthz", "/favicon.ico", "/openapi.json", "/docs", "/static/", "/docs-assets/")


def _public(path: str) -> bool:
    return any(path == p or (p.endswith("/") and p != "/" and path.startswith(p)) for p in PUBLIC)


class Limits:
    """ASGI middleware: the key first, then the key's turn, an upload slot, the body, the app.

    Args:
        app: the ASGI app inside.
        settings: the limits (:class:`Settings`).
        form_key_paths: path prefixes whose routes read their key from the form themselves.
    """

    def __init__(self, app, settings: Settings, form_key_paths: tuple[str, ...] = FORM_KEY_PATHS) -> None:
        self.app = app
        self.settings = settings
        self.form_key_paths = tuple(form_key_paths)
        self.uploads = Slots(settings.max_uploads, "uploads")
        self.keys = KeyLimits(settings.key_concurrency, settings.key_rate, settings.key_burst)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        body_limit = s.body_limit(scope.get("path", ""))
        deadline = time.monotonic() + s.request_timeout
        started = False

        async def tracked_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def answer(status: int, message: str, headers: Optional[dict] = None) -> None:
            if not started:
                await error_response(status, message, headers=headers)(scope, receive, send)

        async def run(receive_) -> None:
            try:
                await asyncio.wait_for(self.app(scope, receive_, tracked_send), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                await answer(503, f"the request took longer than {s.request_timeout:g} s")

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        path = scope.get("path", "")
        if _public(path):
            await run(receive)
            return
        length = headers.get("content-length")
        declared = None
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await answer(400, "Content-Length is not a number")
                return
        state = getattr(getattr(scope.get("app"), "state", None), "faceid", None)
        if state is None:
            await answer(503, "the server is starting (loading its models); try again shortly", {"Retry-After": "2"})
            return
        from faceid.server.auth import authenticate, header_key

        token = header_key(headers)
        if token is None and any(path.startswith(p) for p in self.form_key_paths):
            await run(receive)  # the route reads its key from the form
            return
        try:
            caller = await run_in_threadpool(authenticate, state, token)
        except ApiError as exc:
            await answer(exc.status, exc.message, exc.headers)
            return
        scope[CALLER] = caller
        if declared is not None and declared > body_limit:
            await answer(413, f"request body is {declared} bytes, more than the {body_limit} allowed")
            return
        who = f"key:{caller.key}" if caller.key else f"address:{(scope.get('client') or ('?',))[0]}"
        has_body = scope["method"] in ("POST", "PUT", "PATCH") or length not in (None, "0")
        try:
            async with self.keys.hold(who, deadline):
                if not has_body:
                    await run(receive)
                    return
                async with self.uploads.hold(deadline):
                    body = await self._read_body(receive, deadline, body_limit)
                    if body is None:  # the client went away
                        return
                    await run(_replay(body, receive))
        except Refused as exc:
            await answer(exc.status, exc.message, {"Retry-After": str(exc.retry_after)})
        except _BodyError as exc:
            await answer(exc.status, exc.message)

    async def _read_body(self, receive, deadline: float, limit: int) -> Optional[bytes]:
        s = self.settings
        chunks, size = [], 0
        while True:
            left = deadline - time.monotonic()
            wait = min(s.read_timeout, left)
            try:
                message = await asyncio.wait_for(receive(), max(0.0, wait))
            except asyncio.TimeoutError:
                if wait < s.read_timeout:
                    raise _BodyError(408, f"the request body did not arrive within {s.request_timeout:g} s") from None
                raise _BodyError(408, f"the upload stalled: no data for {s.read_timeout:g} s") from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyError(413, f"request body is more than the {limit} bytes allowed")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
