"""Waiting one's turn: slots shared by everyone, and per-key slots with a rate, all within a deadline.

Both queue rather than refuse: a request waits (in arrival order) for as long as its deadline
allows, and only one that cannot be served in time is answered, with :class:`Refused`'s status and
``Retry-After``. Deadlines are :func:`time.monotonic` instants. Any route may use them (the
compatibility routes that read their key from a form field hold a :class:`Slots` of their own).

Typical use, in a coroutine::

    async with limits.hold(caller_identity, deadline):   # the key's rate and concurrency
        async with uploads.hold(deadline):               # the server-wide uploads
            ...
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["KeyLimits", "Refused", "Slots"]

SWEEP_AT = 256  # keys with bookkeeping before idle ones are swept out


class Refused(Exception):
    """A request that could not get its turn in time: the status to answer, a one-line message,
    and the seconds after which a retry may succeed."""

    def __init__(self, status: int, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = max(1, int(retry_after))


class Slots:
    """At most ``limit`` holders at once; the others wait in arrival order until their deadline.

    Args:
        limit: holders at once (at least 1).
        what: what a slot is, for the message of a refusal ("uploads", ...).
    """

    def __init__(self, limit: int, what: str = "requests") -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.what = what
        self.held = 0
        self.waiting = 0
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _sem(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:  # a new event loop (a test's client)
            self._semaphore, self._loop = asyncio.Semaphore(self.limit), loop
        return self._semaphore

    @asynccontextmanager
    async def hold(self, deadline: float) -> AsyncIterator[None]:
        """A slot until the block ends; :class:`Refused` (503) if none frees up before ``deadline``."""
        semaphore = self._sem()
        self.waiting += 1
        try:
            await asyncio.wait_for(semaphore.acquire(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            busy = f"busy: {self.held} {self.what} in progress and {self.waiting - 1} waiting; try again shortly"
            raise Refused(503, busy) from None
        finally:
            self.waiting -= 1
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1
            semaphore.release()


@dataclass
class _Key:
    slots: Slots
    tokens: float
    at: float
    users: int = field(default=0)


class KeyLimits:
    """Per key: at most ``concurrency`` requests at once, started at ``rate`` per second on average
    with bursts of ``burst`` (a token bucket). A key's excess waits; other keys are not held up.

    Keys are any strings (an API key's name, or a client's address when keys are off); a key's
    bookkeeping is dropped when it has no request in flight and a full bucket.
    """

    def __init__(self, concurrency: int, rate: float, burst: int) -> None:
        if concurrency < 1 or burst < 1 or not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"need concurrency >= 1, burst >= 1, rate > 0; got {concurrency}, {burst}, {rate}")
        self.concurrency = concurrency
        self.rate = float(rate)
        self.burst = int(burst)
        self._keys: dict[str, _Key] = {}

    def _key(self, who: str, now: float) -> _Key:
        key = self._keys.get(who)
        if key is None:
            if len(self._keys) >= SWEEP_AT:
                self.sweep()
            key = self._keys[who] = _Key(Slots(self.concurrency, "requests of this key"), float(self.burst), now)
        key.tokens = min(float(self.burst), key.tokens + (now - key.at) * self.rate)
        key.at = now
        return key

    @asynccontextmanager
    async def hold(self, who: str, deadline: float) -> AsyncIterator[None]:
        """The key's token and one of its slots until the block ends.

        Raises:
            Refused: 429 when the key's rate would delay the start past ``deadline``; 503 when
                none of its slots frees up in time.
        """
        now = time.monotonic()
        key = self._key(who, now)
        key.tokens -= 1.0  # taken now, even if it is owed: later requests queue behind this one
        wait = -key.tokens / self.rate if key.tokens < 0 else 0.0
        if now + wait > deadline:
            key.tokens += 1.0
            raise Refused(
                429,
                f"too many requests with this key: at most {self.rate:g} a second (bursts of {self.burst})",
                retry_after=math.ceil(wait),
            )
        key.users += 1
        try:
            if wait > 0:
                await asyncio.sleep(wait)
            async with key.slots.hold(deadline):
                yield
        finally:
            key.users -= 1
            if key.users == 0 and self._key(who, time.monotonic()).tokens >= self.burst:
                self._keys.pop(who, None)

    def sweep(self) -> None:
        """Drop the bookkeeping of keys with nothing in flight whose bucket has refilled."""
        now = time.monotonic()
        for who in [w for w, k in self._keys.items() if k.users == 0]:
            if self._key(who, now).tokens >= self.burst:
                del self._keys[who]

    def __len__(self) -> int:
        """Keys with bookkeeping now (for tests: it must not grow without bound)."""
        return len(self._keys)
