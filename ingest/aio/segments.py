"""Shared-memory segments no file holds any more, kept to be filled again.

A new segment's pages are reserved and zeroed by the kernel for the main process
(`shared.create`), and its mapping faults them in as a file is read into it:
about 0.6 ms of the main process's CPU per MB, more than the read itself. A
segment kept once its files are resolved is filled again without that cost.

What is kept is charged to the byte budget, so `memory_mb` bounds it with the
rest; a request the budget cannot meet takes those bytes back first
(`ByteBudget.reclaim`), and nothing is kept while a request waits. Runs on the
event loop; removal goes to a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from multiprocessing.shared_memory import SharedMemory
from typing import Any

from .. import shared
from .budget import ByteBudget

# At most this share of memory_mb is kept idle.
KEEP_SHARE = 4


class IdleSegments:
    def __init__(
        self, budget: ByteBudget, spawn: Callable[[Coroutine[Any, Any, None]], None],
        draining: Callable[[], bool] = lambda: False,
    ):
        self.budget = budget
        self._draining = draining
        self.limit = budget.limit // KEEP_SHARE
        self.bytes = 0
        self._spawn = spawn
        self._idle: list[SharedMemory] = []
        budget.reclaim = self.reclaim

    def take(self, size: int) -> SharedMemory | None:
        """The smallest kept segment of at least `size` bytes and at most twice that."""
        fits = [s for s in self._idle if size <= s.size <= 2 * max(size, 1)]
        if not fits:
            return None
        best = min(fits, key=lambda s: s.size)
        self._idle.remove(best)
        self.bytes -= best.size
        self.budget.release(best.size)  # the bytes are the file's now, charged as its own
        return best

    def keep(self, segment: SharedMemory) -> None:
        """Keep a segment no file holds, if its bytes fit the budget now and the service is
        not draining; else remove it."""
        if (
            not self._draining() and self.bytes + segment.size <= self.limit
            and self.budget.take_now(segment.size)
        ):
            self._idle.append(segment)
            self.bytes += segment.size
        else:
            self.remove(segment)

    def reclaim(self, size: int) -> None:
        """Remove kept segments, oldest first, until `size` more bytes fit the budget."""
        while self._idle and self.budget.used + size > self.budget.limit:
            segment = self._idle.pop(0)
            self.bytes -= segment.size
            self.budget.release(segment.size)
            self.remove(segment)

    def clear(self) -> list[SharedMemory]:
        """Let go of every kept segment, for the caller to remove (at shutdown)."""
        idle, self._idle = self._idle, []
        self.budget.release(self.bytes)
        self.bytes = 0
        return idle

    def remove(self, segment: SharedMemory) -> None:
        """Remove a segment in a thread."""
        self._spawn(asyncio.to_thread(shared.remove, segment))
