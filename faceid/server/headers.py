"""Security headers on every answer (pure ASGI middleware): a Content-Security-Policy without
``unsafe-inline``, ``X-Content-Type-Options: nosniff``, a ``Referrer-Policy`` and no framing.

The page loads its script and style from ``/static`` only, so ``'self'`` is all it needs; a
response that sets its own policy (the API docs, whose page has one inline script, allowed by its
hash) keeps it.
"""

from __future__ import annotations

import base64
import hashlib
import re

__all__ = ["CSP", "SecurityHeaders", "csp_for_inline_scripts"]

#: The policy of the page and of every other answer.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def csp_for_inline_scripts(html: str) -> str:
    """:data:`CSP` with the page's own inline scripts allowed by their SHA-256 (and nothing else)."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    ]
    return CSP.replace("script-src 'self'", "script-src 'self' " + " ".join(hashes))


class SecurityHeaders:
    """ASGI middleware: :data:`CSP` and the other headers added to every HTTP answer."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                headers.extend((k, v) for k, v in _HEADERS if k not in names)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
