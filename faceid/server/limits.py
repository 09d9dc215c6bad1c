"""Limits on what a client may send: body size, time per request, uploads in flight."""

import asyncio
import time
from typing import Optional

from fastapi.responses import JSONResponse

from faceid.server.errors import error_response
from faceid.server.settings import Settings

__all__ = ["Limits"]


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
        body_limit = s.body_limit(scope.get("path", ""))
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
                await answer(error_response(400, "Content-Length is not a number"))
                return
            if declared > body_limit:
                too_big = f"request body is {declared} bytes, more than the {body_limit} allowed"
                await answer(error_response(413, too_big))
                return
        has_body = scope["method"] in ("POST", "PUT", "PATCH") or length not in (None, b"0")
        if not has_body:
            try:
                await asyncio.wait_for(self.app(scope, receive, tracked_send), s.request_timeout)
            except asyncio.TimeoutError:
                await answer(error_response(503, f"the request took longer than {s.request_timeout:g} s"))
            return
        if self.uploads >= s.max_uploads:
            busy = f"busy: {self.uploads} uploads in progress; try again shortly"
            await answer(error_response(503, busy, headers={"Retry-After": "1"}))
            return
        self.uploads += 1
        try:
            deadline = time.monotonic() + s.request_timeout
            try:
                body = await asyncio.wait_for(self._read_body(receive, body_limit), s.request_timeout)
            except _TooLarge:
                await answer(error_response(413, f"request body is more than the {body_limit} bytes allowed"))
                return
            except asyncio.TimeoutError:
                await answer(error_response(408, f"the request body did not arrive within {s.request_timeout:g} s"))
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
                await answer(error_response(503, f"the request took longer than {s.request_timeout:g} s"))
        finally:
            self.uploads -= 1

    async def _read_body(self, receive, limit: int) -> Optional[bytes]:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _TooLarge(Exception):
    pass
