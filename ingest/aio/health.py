"""Whether the service hears its drop folder, its loop runs and its commits go through: for
/healthz, the metrics and `ingest status`.

The watcher reports each change of its mode on the event loop; the /healthz
server asks `problem()` from its own thread, reading what the loop last wrote.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..metrics import Metrics
from ..store import watch_mode
from ..store.watch_mode import WatchMode
from .lag import LagProbe

log = logging.getLogger("ingest.watch")

# A loop this late is not serving files: a supervisor may restart the service. Far above
# the ~10 ms the loop is held to, so that a busy machine is not mistaken for a hung one.
LAG_LIMIT_S = 1.0
# Commits failing for the machine's reason (a full disk, an unwritable output) this long
# make the service unhealthy: files wait in the drop folder, and someone must act. A
# blip that the next retry mends does not.
COMMITS_FAILING_S = 10.0
MODES = ("events", "polling")


class Health:
    def __init__(self, state_dir: Path, metrics: Metrics, lag: LagProbe):
        self.state_dir = state_dir
        self.metrics = metrics
        self.lag = lag
        self.mode: WatchMode | None = None  # None until the watcher follows the folder
        self._writes = asyncio.Lock()  # in order: the last write is the last mode
        self._written = False
        # Since when commits have failed and why (`Committer.failing`), once there is one.
        self.commits_failing: Callable[[], tuple[float, str] | None] = lambda: None

    async def watching(self, mode: WatchMode) -> None:
        """Called on the loop by the watcher when its mode changes: export and persist it."""
        self.mode = mode
        for name in MODES:
            self.metrics.watch_mode.labels(name).set(1 if name == mode.mode else 0)
        self.metrics.watch_deaf.set(1 if mode.deaf else 0)
        async with self._writes:
            if self.mode is not mode:
                return  # a later change is on its way
            try:
                await asyncio.to_thread(watch_mode.write, self.state_dir, mode, os.getpid())
            except OSError as exc:  # a full disk must not stop the watcher
                log.warning("cannot record the watch mode for `ingest status`: %s", exc)
            self._written = True

    async def close(self) -> None:
        """Called as the service stops: `status` no longer shows a watcher."""
        if self._written:
            await asyncio.to_thread(watch_mode.remove, self.state_dir, os.getpid())

    def problem(self) -> str | None:
        """Why the service is unhealthy, or None. Called in the /healthz server's thread."""
        mode = self.mode
        if mode is not None and mode.deaf:
            return f"watcher deaf: {mode.deaf}"
        stalled = self.lag.stalled()
        if stalled > LAG_LIMIT_S:
            return f"event loop lag: {stalled:.1f} s, over {LAG_LIMIT_S:g} s"
        failing = self.commits_failing()
        if failing is not None and (since := time.monotonic() - failing[0]) >= COMMITS_FAILING_S:
            return f"commits failing for {since:.0f} s: {failing[1]}"
        return None
