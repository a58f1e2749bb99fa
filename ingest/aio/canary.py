"""The canary: a hidden file made in the drop folder now and then, whose event must
arrive. A watcher that started and yet hears nothing is found out by its silence.

Runs on the event loop; the file is written and removed in threads. It lives only
until it is heard (milliseconds) or found overdue, so the drop folder empties as
its owner expects. Its name is hidden: the scanner never takes it for an input.
In keep mode the drop folder is read-only to us, and there is no canary.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger("ingest.watch")

NAME = ".ingest-canary"
# Made this often while the watcher is in events mode. A touch costs one small write;
# a watcher that goes deaf later than its first minutes is rare, and the rescan still
# finds every file meanwhile.
EVERY_S = 30.0
# Canaries missed in a row before events are given up for polling. The first miss gets a
# new watcher and a scan, which is cheap; polling a large folder every 100 ms is not, so
# it waits for a new watcher to miss the canary too.
MISSES = 2
# Errors that say the drop folder is not ours to write to.
READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


class Canary:
    def __init__(self, drop: Path, writable: bool, wait_s: float):
        self.path = drop / NAME
        self.wait_s = wait_s  # [watch] canary_wait_s: its event must arrive within this
        self.name = str(self.path)
        self.usable = writable
        self._touched: float | None = None  # monotonic time of the touch not yet heard
        self._next = 0.0
        self.misses = 0  # in a row
        if not writable:
            log.info("keep mode: the drop folder is read-only to us, so no canary checks"
                     " that its events arrive; rescans still find every file")

    def arm(self) -> None:
        """A new watcher: touch the canary at the first chance."""
        self._touched = None
        self._next = 0.0

    async def heard(self) -> None:
        """The watcher heard an event: the canary, if one is out, has done its work."""
        self.misses = 0
        if self._touched is not None:
            self._touched = None
            await self.remove()

    async def missed(self) -> bool:
        """Count the overdue canary; True once events are to be given up."""
        self._touched = None
        self.misses += 1
        await self.remove()
        return self.misses >= MISSES

    def overdue(self, now: float) -> bool:
        return self._touched is not None and now - self._touched > self.wait_s

    async def tend(self, now: float) -> None:
        """Make the canary if it is due and the last one was heard."""
        if not self.usable or self._touched is not None or now < self._next:
            return
        self._next = now + EVERY_S
        try:
            await asyncio.to_thread(self._write)
        except OSError as exc:
            if exc.errno in READ_ONLY:
                self.usable = False
                log.info("cannot write the canary %s (%s): no canary checks that the drop"
                         " folder's events arrive; rescans still find every file",
                         self.path, exc.strerror)
            else:
                log.debug("cannot write the canary %s: %s", self.path, exc)
            return
        self._touched = now

    def _write(self) -> None:
        self.path.write_text(f"{os.getpid()}\n")

    async def remove(self) -> None:
        """Leave the drop folder as we found it (also a canary a killed service left)."""
        if self.usable:
            await asyncio.to_thread(self._unlink)

    def _unlink(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
