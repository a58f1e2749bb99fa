"""Finding inputs: a start-up scan, watchfiles events, and periodic rescans.

The watcher is a hint, not the truth: inotify queues overflow and network
shares send no events at all, so a full rescan every `rescan_s` catches
whatever the events missed. Every path found either way is offered to the
settler, which decides when it is complete.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import watchfiles

from ..config import Watch
from ..selection import matches, regular_file, scan
from .settle import Settler

log = logging.getLogger("ingest.watch")

# watchfiles groups events for `debounce` ms and polls its Rust side every `step` ms.
# Its defaults (1600, 50) hold a renamed-in file back by up to 1.6 s; completeness is
# the settler's job, so the watcher only needs to be prompt.
DEBOUNCE_MS = 5
STEP_MS = 1
# Offers made between returns to the event loop: 20,000 files found at once would hold it
# for 150 ms.
OFFER_BATCH = 256


class Watcher:
    def __init__(self, drop: Path, watch: Watch, settler: Settler):
        self.drop = drop
        self.watch = watch
        self.settler = settler
        self._warned: set[tuple[Path, str]] = set()

    def _skipped(self, path: Path, reason: str) -> None:
        """Say once, not at every rescan, why a file named like an input is not read."""
        if (path, reason) not in self._warned:
            self._warned.add((path, reason))
            log.warning("skip %s: %s", path, reason)

    def _offer(self, path: Path) -> None:
        if not matches(path.name, self.watch.patterns):
            log.debug("skip %s: name does not match the patterns", path)
            return
        st = regular_file(path, self.drop, self._skipped)
        if st is not None:
            self.settler.offer(path, st)

    def _filter(self, change: watchfiles.Change, path: str) -> bool:
        return change != watchfiles.Change.deleted

    async def scan(self) -> int:
        """Offer every input now in the drop folder; the walk runs in a thread."""
        found = await asyncio.to_thread(
            lambda: list(scan(self.drop, self.watch.patterns, self._skipped))
        )
        for count, (path, st) in enumerate(found, 1):
            self.settler.offer(path, st)
            if count % OFFER_BATCH == 0:
                await asyncio.sleep(0)
        return len(found)

    async def follow(self, stop: asyncio.Event) -> None:
        """Offer each path that watchfiles reports, until `stop` is set."""
        async for changes in watchfiles.awatch(
            self.drop,
            watch_filter=self._filter,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=stop,
            force_polling=self.watch.force_polling,
            poll_delay_ms=100,
            recursive=True,
            ignore_permission_denied=True,
        ):
            for count, (_, name) in enumerate(changes, 1):
                self._offer(Path(name))
                if count % OFFER_BATCH == 0:
                    await asyncio.sleep(0)

    async def rescans(self) -> None:
        while True:
            await asyncio.sleep(self.watch.rescan_s)
            count = await self.scan()
            log.debug("rescan found %d inputs", count)
