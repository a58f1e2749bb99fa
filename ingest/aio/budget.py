"""Backpressure by bytes: the bytes read and not yet resolved stay under `memory_mb`.

The count bound is the asyncio.Queue's maxsize; this is the other half.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class ByteBudget:
    """An async counting semaphore over bytes.

    Taking bytes that fit, with no one waiting, and giving bytes back do not await:
    the intake and the committer do both for every file, and a lock's round trip per
    file was a measurable part of the main process's cost on many small files. A
    waiter is woken as soon as its request fits, whatever its place in line, as a
    condition's `wait_for` would wake it.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # Gives back bytes held for later use (`segments.IdleSegments`) when a request
        # does not fit: called with the request's size before it waits.
        self.reclaim: Callable[[int], None] | None = None

    @property
    def waiters(self) -> int:
        return len(self._waiters)

    @property
    def waiting(self) -> bool:
        """Someone is held back: the committer takes this as a reason to flush early."""
        return bool(self._waiters)

    async def acquire(self, size: int) -> None:
        """Wait until `size` more bytes fit. A single oversized request must be refused earlier."""
        if self.reclaim is not None and not self._waiters and self.used + size > self.limit:
            self.reclaim(size)
        if self.take_now(size):
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(size)  # granted as it was cancelled: give the bytes back
            else:
                self._waiters = [w for w in self._waiters if w[1] is not granted]
                self._wake()  # it may have held back a smaller request that fits now
            raise

    def take_now(self, size: int) -> bool:
        """Take `size` bytes if they fit now and no one is waiting; never waits."""
        if self._waiters or self.used + size > self.limit:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        waiting = []
        for size, granted in self._waiters:
            if not granted.done() and self.used + size <= self.limit:
                self.used += size
                granted.set_result(None)
            elif not granted.done():
                waiting.append((size, granted))
        self._waiters = waiting
