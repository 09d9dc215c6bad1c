"""How fresh a Milvus gallery's reads are, and what they cost: the guarantee timestamp of each read.

A Strong read (every collection's default here) waits for the server's next time tick, about
0.2 s on Milvus 2.3.5 standalone, on every query: an enrolment of seven people made 42 of them
(9.2 s). A read only has to see two things, and :class:`ReadPoint` asks for exactly those
(Milvus's ``Customized`` consistency: a read waits until the server has applied every write with
a timestamp up to the ``guarantee_timestamp`` it is given, and then reads the newest it has):

- every write acknowledged before the gallery was opened, by any process: the *floor*, a
  timestamp the server's oracle hands out when the gallery is opened (``AllocTimestamp``, one
  round trip without a wait). The oracle's timestamps only grow and a write gets its own before it
  is acknowledged, so every write acknowledged before the open is below the floor: as Strong at
  the moment of the open;
- this process's own writes to the collection read: read-your-writes, as Session. After each
  write :meth:`ReadPoint.wrote` notes its timestamp, as pymilvus records it from the server's
  answer; Milvus 2.3.5 answers a delete by expression with no timestamp, so when none came a new
  one is asked of the oracle (one round trip without a wait), which is above the write's.

A write by another process after the open is seen as soon as the server has applied it (within a
time tick), as with Bounded consistency; faceid has one writing process per gallery (see
:mod:`faceid.gallery.milvus`), so what that matters for is a reader such as ``faceid people``, never
the writer's own bookkeeping. So a read waits for a tick only right after this process wrote to the
same collection, or in the first tick after the open.

milvus-lite has no time ticks (its reads cost no wait) and no ``AllocTimestamp``: reads there keep
the collections' default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["ReadPoint"]

log = logging.getLogger(__name__)


class ReadPoint:
    """The guarantee timestamps of one open gallery's reads (see the module's docstring).

    Args:
        client: gives the gallery's ``MilvusClient`` (or its :class:`~faceid.gallery.milvus_timeout.TimedClient`).
        server: ``False`` for milvus-lite: no options, the collections' default.
        timeout: seconds for the ``AllocTimestamp`` call.
    """

    def __init__(self, client: Callable[[], Any], *, server: bool, timeout: float) -> None:
        self.client = client
        self.server = server
        self.timeout = timeout
        self.floor = 0
        self._last: dict[str, int] = {}  # collection -> the timestamp of this process's last write to it
        self.writes = 0  # this process's writes so far: what it read before is stale once this moves
        self._address = ""  # the connection's, as pymilvus keys its session timestamps

    def open(self) -> None:
        """Take the floor: a timestamp above every write acknowledged so far (one round trip, no wait)."""
        if self.server:
            self._address = self._handler().server_address
            self.floor = self._now()
            if not self.floor:  # a server without AllocTimestamp: every read Strong, as before
                log.info("Milvus gave no timestamp (AllocTimestamp): reads are Strong")

    def options(self, collection: str, *, own_writes: bool = True) -> dict[str, Any]:
        """The keyword arguments of a query or search of ``collection`` (``own_writes``: it must see this
        process's writes to it; ``False`` only for rows this process never writes, or keeps in memory)."""
        if not self.server or not self.floor:
            return {}
        guarantee = self.floor
        if own_writes:
            guarantee = max(guarantee, self._last.get(collection, 0))
        return {"consistency_level": "Customized", "guarantee_timestamp": guarantee}

    def wrote(self, collection: str) -> None:
        """Note the timestamp of the write to ``collection`` that has just returned."""
        self.writes += 1
        if not self.server or not self.floor:
            return
        from pymilvus.client import ts_utils

        before = self._last.get(collection, self.floor)
        ts = int(ts_utils.get_collection_ts(collection, self._address, "") or 0)
        self._last[collection] = ts if ts > before else max(self._now(), before)

    def _now(self) -> int:
        """A timestamp from the server's oracle: above that of every write acknowledged so far."""
        return int(self._handler().alloc_timestamp(timeout=self.timeout) or 0)

    def _handler(self) -> Any:
        return self.client()._get_connection()
