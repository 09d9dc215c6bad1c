"""A pymilvus client whose every call is bounded by the gallery's ``timeout`` (``--timeout``).

``MilvusClient(timeout=...)`` bounds only the connection: each later call waits as long as
pymilvus's retries last unless it is given ``timeout=`` itself (a server that stopped answering
held ``faceid people --timeout 3`` for 81 s). :class:`TimedClient` passes the gallery's timeout to
every call that takes one, unless the caller gave its own. A call that times out or finds the
server unreachable (pymilvus's error, or gRPC's own, which pymilvus lets through) becomes one
:class:`~faceid.errors.GalleryError` naming the address, and every later call fails at once with
it, instead of each waiting out its own timeout (one command makes dozens).
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from faceid.errors import GalleryError

__all__ = ["TimedClient"]

#: MilvusClient methods that take no ``timeout`` (pymilvus 3.0.2; list_collections takes it through **kwargs)
_UNTIMED = frozenset({"close", "session", "using_database", "use_database"})

#: what pymilvus says when the server did not answer in time or could not be reached
_UNANSWERED = re.compile(r"timeout|deadline exceeded|fail connecting|unavailable", re.IGNORECASE)


class TimedClient:
    """Wraps ``client``: every method call gets ``timeout=`` (seconds) unless it has one."""

    def __init__(self, client: Any, timeout: float, where: str, uri: str) -> None:
        self.client = client
        self.timeout = timeout
        self.where, self.uri = where, uri
        self.down: GalleryError | None = None  # set by a call that timed out or found no server

    @classmethod
    def connect(cls, uri: str, timeout: float, where: str) -> TimedClient:
        """A client of the server at ``uri`` (the token read from ``$FACEID_MILVUS_TOKEN``)."""
        from pymilvus import MilvusClient

        token = os.environ.get("FACEID_MILVUS_TOKEN", "")
        return cls(MilvusClient(uri=uri, token=token, timeout=timeout), timeout, where, uri)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if name in _UNTIMED or name.startswith("_") or not callable(attr):
            return attr

        @functools.wraps(attr)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.down is not None:
                raise self.down
            kwargs.setdefault("timeout", self.timeout)
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                if not (_UNANSWERED.search(str(exc)) or type(exc).__module__.startswith("grpc")):
                    raise
                self.down = GalleryError(
                    f"{self.where}: Milvus at {self.uri} did not answer within {self.timeout:g} s "
                    f"({_first_line(exc)}); is the server up? --timeout sets the wait"
                )
                raise self.down from None

        return timed


def _first_line(exc: Exception) -> str:
    details = getattr(exc, "details", None)  # a grpc.RpcError's own short text
    text = details() if callable(details) else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]
