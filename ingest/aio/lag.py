"""A probe that measures how late the event loop wakes a sleeping task.

If anything blocks the loop, every task is late by the same amount, so one
probe measures it for all of them.
"""

from __future__ import annotations

import asyncio
import collections
import time

from ..metrics import Metrics

INTERVAL_S = 0.01


class LagProbe:
    def __init__(self, metrics: Metrics | None = None, keep: int = 100_000):
        self.metrics = metrics
        self.samples: collections.deque[float] = collections.deque(maxlen=keep)
        self._beat: float | None = None  # monotonic time the probe last woke, once it runs

    async def run(self) -> None:
        while True:
            start = time.perf_counter()
            self._beat = time.monotonic()
            await asyncio.sleep(INTERVAL_S)
            lag = max(0.0, time.perf_counter() - start - INTERVAL_S)
            self.samples.append(lag)
            if self.metrics is not None:
                self.metrics.loop_lag.observe(lag)

    def stalled(self) -> float:
        """Seconds the loop is late now: a blocked loop shows here before its lag is sampled.
        Safe to call from another thread (the /healthz server's)."""
        beat = self._beat
        return 0.0 if beat is None else max(0.0, time.monotonic() - beat - INTERVAL_S)

    def quantile(self, q: float) -> float:
        """The q-quantile of recent lag, in seconds (0 with no samples), interpolated as
        numpy's default does. Plain Python: numpy's first quantile costs tens of ms of
        lazy set-up, at the exit of every `ingest once`."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
