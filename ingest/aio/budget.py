"""Backpressure by bytes: the bytes read and not yet resolved stay under `memory_mb`.

The count bound is the asyncio.Queue's maxsize; this is the other half.
"""

from __future__ import annotations

import asyncio


class ByteBudget:
    """An async counting semaphore over bytes."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.waiters = 0
        self._changed = asyncio.Condition()

    @property
    def waiting(self) -> bool:
        """Someone is held back: the committer takes this as a reason to flush early."""
        return self.waiters > 0

    async def acquire(self, size: int) -> None:
        """Wait until `size` more bytes fit. A single oversized request must be refused earlier."""
        async with self._changed:
            self.waiters += 1
            try:
                await self._changed.wait_for(lambda: self.used + size <= self.limit)
            finally:
                self.waiters -= 1
            self.used += size

    async def release(self, size: int) -> None:
        async with self._changed:
            self.used -= size
            self._changed.notify_all()
