"""Finding inputs: a start-up scan, watchfiles events, and periodic rescans.

The watcher is a hint, not the truth: inotify queues overflow and network
shares send no events at all, so a full rescan every `rescan_s` catches
whatever the events missed. Every path found either way is offered to the
settler, which decides when it is complete. `follow.py` keeps the events
coming, or says why they do not.

Runs on the event loop; directory walks run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ..config import Watch
from ..selection import matches, regular_file, scan, unreadable
from .settle import Settler

log = logging.getLogger("ingest.watch")

# Offers made between returns to the event loop: 20,000 files found at once would hold it
# for 150 ms, and 256 for up to 5 ms.
OFFER_BATCH = 64
IN_LINKED_FOLDER = "inside a symlinked folder (a scan enters none)"


class Watcher:
    def __init__(self, drop: Path, watch: Watch, settler: Settler):
        self.drop = drop
        self.watch = watch
        self.settler = settler
        # What each path skipped was said to be: said once, not at every rescan. A whole
        # scan keeps only what it found again, so a path gone is forgotten (a service
        # that runs for months holds no path it saw once), and is said again if it
        # comes back.
        self._warned: set[tuple[str, str]] = set()
        self.unread: set[str] = set()  # inputs, or folders of them, that cannot be read
        self._real_drop: str | None = None  # where the drop folder is, as last armed
        self._prefix = str(drop).rstrip("/") + "/"
        self._scanned = False  # the first scan is done (or under way)

    def _skipped(self, path: str, reason: str) -> None:
        """Say once, not at every rescan, why a file named like an input is not read."""
        if (path, reason) not in self._warned:
            self._warned.add((path, reason))
            log.warning("skip %s: %s", path, reason)
        if unreadable(reason):
            self.unread.add(path)

    def offer(self, path: str) -> bool:
        """A path an event named: offered to the settler if it is an input. True if it is
        a folder, made or moved in: the files a folder held as it was moved in, or that
        were written before its own watch began, send no event, and a scan finds them."""
        # Its folders below the drop folder, from the text: this runs for every event.
        below = path[len(self._prefix):] if path.startswith(self._prefix) else ""
        folders, _, name = below.rpartition("/")
        if folders.startswith(".") or "/." in folders:
            # Inside a hidden folder (an uploader's staging area): never an input, as no
            # scan enters one. It becomes one when it is moved out, as that names it.
            log.debug("skip %s: inside a hidden folder", path)
            return False
        name = name or os.path.basename(path)
        if not matches(name, self.watch.patterns):
            if not name.startswith(".") and _is_folder(path):
                return True
            log.debug("skip %s: name does not match the patterns", path)
            return False
        if not self._below_drop(path, folders):
            self._skipped(path, IN_LINKED_FOLDER)
            return False
        st = regular_file(path, self.drop, self._skipped)
        if st is not None:
            self.settler.offer(path, st)
            return False
        return _is_folder(path)  # a folder named like an input (`batch.csv/`), moved in

    def _below_drop(self, path: str, folders: str) -> bool:
        """Is the file's folder the drop folder, or one below it reached through no
        symlinked folder? The watcher hears events through a linked folder, which may
        lead out of the drop folder: its files would be read, and archived or deleted
        where they really are."""
        if not folders and os.path.dirname(path) == self._prefix[:-1]:
            return True
        real = os.path.realpath(os.path.dirname(path))
        real_drop = self._real_drop
        if real_drop is None:
            real_drop = self._real_drop = os.path.realpath(self.drop)
        if folders:
            return real == os.path.join(real_drop, folders)
        return real == real_drop or real.startswith(real_drop + "/")

    def armed(self) -> None:
        """A watcher is armed on the drop folder anew: it may be elsewhere now (a symlink
        to it pointed at another folder)."""
        self._real_drop = None

    async def scan(self) -> int:
        """Offer every input now in the drop folder; the walk runs in a thread."""
        again = self._scanned
        self.settler.scan_began()
        whole = False
        skips: list[tuple[str, str]] = []
        said = set(self._warned)  # what this scan may forget: not what events say meanwhile
        try:
            found = await asyncio.to_thread(
                lambda: list(scan(self.drop, self.watch.patterns, _appender(skips)))
            )
            self._found_skipped(skips, said)
            for count, (path, st) in enumerate(found, 1):
                self.settler.offer(path, st, scanned=True, again=again)
                if count % OFFER_BATCH == 0:
                    await asyncio.sleep(0)
            whole = True
            self._scanned = True
        finally:
            self.settler.scan_ended(whole)
        return len(found)

    def _found_skipped(self, skips: list[tuple[str, str]], said: set[tuple[str, str]]) -> None:
        """What a whole scan skipped, each said if it is new; of what was said before it
        began, what it could have found and did not is forgotten (a file in a symlinked
        folder, which no scan enters, is not)."""
        found = set(skips)
        self._warned -= {key for key in said - found if key[1] != IN_LINKED_FOLDER}
        self.unread = {path for path, reason in found if unreadable(reason)}
        for path, reason in skips:
            self._skipped(path, reason)

    async def rescans(self) -> None:
        while True:
            await asyncio.sleep(self.watch.rescan_s)
            count = await self.scan()
            log.debug("rescan found %d inputs", count)


def _appender(skips: list[tuple[str, str]]) -> Callable[[str, str], None]:
    """A scan's thread notes what it skips; the loop says it (`Watcher._found_skipped`)."""
    return lambda path, reason: skips.append((path, reason))


def _is_folder(path: str) -> bool:
    """A folder, not a symlink to one: a scan enters neither a hidden nor a linked one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
