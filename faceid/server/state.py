"""What the app keeps between requests: the gallery behind its lock, the batcher, annotated images.

Everything the gallery does goes through one :class:`~faceid.gallery.Gallery` object behind a
lock (a ``Gallery`` is for one thread at a time); detection and embedding run outside it, in the
micro-batcher's worker (:mod:`faceid.server.batching`). The gallery is SQLite, so changes made by
the CLI in another process are seen by the next request: people and faces are read from the
database each time, and the search index follows the gallery's write generation.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

from fastapi import Request

from faceid.apikeys import ApiKeys
from faceid.gallery import AnyGallery
from faceid.server.settings import Settings

__all__ = ["CALLER", "Caller", "State", "state_of"]

#: Where the ASGI scope keeps the :class:`Caller` that the key in the headers named.
CALLER = "faceid.caller"


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key's name (``None`` when keys are not required) and its scope."""

    key: Optional[str]
    scope: str


class State:
    """What the app keeps between requests: the gallery behind its lock, the batcher, annotated images."""

    def __init__(self, gallery: AnyGallery, batcher, pipeline, settings: Settings) -> None:
        from faceid.server.budget import Budget
        from faceid.server.compaction import Compactor

        self.gallery = gallery
        self.compactor = Compactor(gallery.path, timeout=gallery.timeout)
        self.keys = ApiKeys(gallery)
        self.lock = threading.Lock()
        self.batcher = batcher
        self.pipeline = pipeline
        self.settings = settings
        self.budget = Budget(settings.memory_mb * 2**20)
        self.annotated: OrderedDict[str, bytes] = OrderedDict()
        self.touched: dict[str, float] = {}
        self.coming = 0  # requests being decoded now, whose images the batcher will get soon
        self._coming_lock = threading.Lock()

    def arriving(self, change: int) -> None:
        with self._coming_lock:
            self.coming += change

    @contextmanager
    def use(self, caller: Optional[Caller] = None):
        """The gallery, held for this thread; changes are audited as the caller's key."""
        with self.lock:
            self.gallery.actor = f"key:{caller.key}" if caller is not None and caller.key else None
            try:
                yield self.gallery
            finally:
                self.gallery.actor = None

    def keep_annotated(self, jpeg: bytes) -> str:
        token = secrets.token_urlsafe(16)
        with self.lock:
            self.annotated[token] = jpeg
            while len(self.annotated) > self.settings.annotated_kept:
                self.annotated.popitem(last=False)
        return token


def state_of(request: Request) -> State:
    """The app's :class:`State` (set by the app's lifespan)."""
    return request.app.state.faceid
