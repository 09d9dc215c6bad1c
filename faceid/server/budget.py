"""A server-wide memory budget for decoded images: work that would exceed it waits its turn.

Each request reserves what its images will take once decoded (their working size, from their
headers: :func:`faceid.images.working_pixels`) times :data:`BYTES_PER_PIXEL`, and gives it back
when its answer is made. A request larger than the whole budget runs alone. When the budget
falls idle, the C allocator is asked to hand freed memory back to the system (glibc's
``malloc_trim``), so a burst of large photos does not leave the process large.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faceid.server.slots import Refused

__all__ = ["ARENAS", "BYTES_PER_PIXEL", "Budget", "limit_arenas", "trim_memory"]

#: glibc malloc arenas for the server (``MALLOC_ARENA_MAX`` in the environment overrides it).
#: By default glibc makes up to 8 per core, one per thread that allocates at once, and keeps
#: what each one grew to: 8 concurrent 35 MP photos left the server 283 MB above idle 60 s
#: later with the default, 193 MB with 2 arenas set here at start, 43 MB with
#: ``MALLOC_ARENA_MAX=2`` in the environment (``faceid bench --only big-photos``, one run each,
#: load 22-28 on 2 cores; see docs/serving-securely.md).
ARENAS = 2

log = logging.getLogger(__name__)

#: Bytes a working pixel costs while its request runs: the RGB array (3), the copies made while
#: decoding and turning it upright (up to 6), the detector's float32 copy at its size (up to 12
#: when the working size is the detector's), rounded up.
BYTES_PER_PIXEL = 24


class Budget:
    """Up to ``limit`` bytes reserved at once; a request that does not fit waits (in arrival order).

    Args:
        limit: bytes (at least 1).
        trim: call :func:`trim_memory` when the last reservation is given back.
    """

    def __init__(self, limit: int, trim: bool = True) -> None:
        if limit < 1:
            raise ValueError(f"the memory budget must be at least 1 byte, got {limit}")
        self.limit = int(limit)
        self.used = 0
        self.peak = 0
        self.trim = trim
        self._waiting: list[tuple[int, asyncio.Future]] = []

    @asynccontextmanager
    async def hold(self, nbytes: int, deadline: float) -> AsyncIterator[None]:
        """``nbytes`` (capped at the whole budget) until the block ends.

        Raises:
            Refused: 503 when the memory does not free up before ``deadline`` (a monotonic time).
        """
        need = max(0, min(int(nbytes), self.limit))
        if self._waiting or self.used + need > self.limit:
            turn = asyncio.get_running_loop().create_future()
            entry = (need, turn)
            self._waiting.append(entry)
            try:
                await asyncio.wait_for(asyncio.shield(turn), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                if turn.done():  # granted just as the time ran out: take it after all
                    pass
                else:
                    self._waiting.remove(entry)
                    self._wake()
                    raise Refused(503, "busy: the server's memory for images is in use; try again shortly") from None
            except BaseException:
                if entry in self._waiting:
                    self._waiting.remove(entry)
                elif turn.done():  # granted, then cancelled: give it back
                    self.used -= need
                self._wake()
                raise
        else:
            self.used += need
        self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            self.used -= need
            self._wake()
            if self.used == 0 and self.trim and need:
                await asyncio.get_running_loop().run_in_executor(None, trim_memory)

    def _wake(self) -> None:
        """Grant the waiting requests that now fit, in arrival order (the first one blocks the rest)."""
        while self._waiting and self.used + self._waiting[0][0] <= self.limit:
            need, turn = self._waiting.pop(0)
            if turn.done():
                continue
            self.used += need
            turn.set_result(None)


_LIBC: ctypes.CDLL | None = None
_NO_GLIBC = False
_M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)


def _libc() -> ctypes.CDLL | None:
    global _LIBC, _NO_GLIBC
    if _LIBC is None and not _NO_GLIBC:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim  # noqa: B018 - not glibc (musl, macOS) if this is missing
            libc.mallopt  # noqa: B018
            _LIBC = libc
        except (OSError, AttributeError):
            _NO_GLIBC = True
    return _LIBC


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads made from now on (``mallopt(M_ARENA_MAX)``),
    unless ``MALLOC_ARENA_MAX`` is set; ``False`` where there is no glibc or it is set."""
    import os

    libc = _libc()
    if libc is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, int(arenas)))


def trim_memory() -> bool:
    """Ask glibc to give freed heap memory back to the system (``malloc_trim(0)``); ``False``
    where there is no glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
