"""Following the drop folder: watchfiles events, and what to do when they stop coming.

The follower arms one watcher at a time on the drop folder and offers every
path it reports to the `Watcher`. It notices when it goes deaf, and says so
(in the log, and to `Health` for /healthz, the metrics and `ingest status`):

- the drop folder removed, replaced or unmounted: it waits for a folder to be
  there again, arms a new watcher on it (inotify watches an inode, not a name)
  and scans it at once;
- events that cannot start or stop (inotify's limits) or never come (the canary's
  event is missing): it polls instead.

Runs on the event loop; stats and writes run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import stat
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

import watchfiles

from ..store.watch_mode import WatchMode
from .canary import MISSES, Canary
from .waiting import wait_set
from .watch import OFFER_BATCH, Watcher

log = logging.getLogger("ingest.watch")

# watchfiles groups events for `debounce` ms and polls its Rust side every `step` ms.
# Its defaults (1600, 50) hold a renamed-in file back by up to 1.6 s; completeness is
# the settler's job, so the watcher only needs to be prompt. Each step wakes watchfiles'
# Rust loop and takes the GIL: at 1 ms an idle service spent 22 ms of CPU a second, at 5
# ms 9, with drop-to-visible unchanged (bench/README.md).
DEBOUNCE_MS = 5
STEP_MS = 5
# The watcher hands back control at least this often, even with nothing to report, so that
# the drop folder's identity and the canary are checked while all is quiet.
TICK_MS = 1000
# How often the drop folder is checked to be the one being watched (one stat, in a thread).
FOLDER_CHECK_S = 1.0
POLL_DELAY_MS = 100
# watchfiles' error for an event naming a file whose name is not UTF-8 (a Latin-1 name),
# in events and polling alike: the batch of events it was in is lost. A new watcher, and
# a scan, which reads such names as they are, find every file of that batch; restarts in
# a row back off, to one every UNDECODABLE_MAX_S, until a watcher lasts
# UNDECODABLE_RESET_S. A folder so named fails each new events watcher as it starts,
# naming the folder: the drop folder is polled instead, which starts.
UNDECODABLE = "Unable to decode path"
UNDECODABLE_MAX_S = 30.0
UNDECODABLE_RESET_S = 60.0

Changes = set[tuple[watchfiles.Change, str]]
# The shape of watchfiles.awatch: a stand-in (a test's deaf watcher) can take its place.
EventSource = Callable[..., AsyncGenerator[Changes, None]]
Report = Callable[[WatchMode], Awaitable[None]]


class Ended(enum.Enum):
    """Why one armed watcher stopped."""

    STOPPED = "stopped"  # the service is stopping
    GONE = "gone"  # the drop folder was removed or replaced
    RETRY = "retry"  # the canary was missed once, or a name was not UTF-8: a new watcher
    UNHEARD = "unheard"  # events cannot start or never come: poll
    FAILED = "failed"  # polling failed: try again


class Follower:
    def __init__(
        self, watcher: Watcher, report: Report | None = None, events: EventSource | None = None
    ):
        self.watcher = watcher
        self.drop = watcher.drop
        self.force_polling = watcher.watch.force_polling
        self.report = report  # told each change of mode
        self.events = events or watchfiles.awatch  # polling is always watchfiles'
        self.canary = Canary(
            self.drop, writable=watcher.watch.on_success != "keep",
            wait_s=watcher.watch.canary_wait_s,
        )
        self.mode: WatchMode | None = None
        self._poll_reason: str | None = None
        self._scan: asyncio.Task[int] | None = None  # the one walk of the folder running
        self._scan_again = False  # a scan was asked for while one walked the folder
        self.armed = asyncio.Event()  # set once the first watcher hears the folder
        self._undecodable = 0  # watchers ended in a row by a name that is not UTF-8
        # The watcher now armed has delivered a batch (an event, or its first quiet tick,
        # TICK_MS in): it started, and a failure from then on is one while watching.
        self._delivered = False

    def _filter(self, change: watchfiles.Change, path: str) -> bool:
        # A deleted input needs nothing; a deleted drop folder needs a new watcher.
        return change != watchfiles.Change.deleted or path == str(self.drop)

    async def run(self, stop: asyncio.Event) -> None:
        """Offer each path the watcher reports, until `stop` is set. A new drop folder gets
        a new watcher and a scan; events that cannot start or never come give way to polling."""
        polling, rescan = self.force_polling, False
        await self.canary.remove()  # one a killed service left
        try:
            while not stop.is_set():
                identity = await self._identity()
                if identity is None:
                    await self._await_folder(polling, stop)
                    polling, rescan = self.force_polling, True
                    continue
                self.watcher.armed()
                ended = await self._listen(identity, polling, stop, rescan)
                rescan = True  # whatever ends a watcher, files may have come unheard
                if ended is Ended.GONE:
                    polling = self.force_polling  # a new folder: try events again
                    self.canary.misses = 0
                elif ended is Ended.UNHEARD:
                    polling = True
                elif ended is Ended.FAILED:
                    await _sleep_unless(stop, FOLDER_CHECK_S)
        finally:
            self._scan_again = False
            if self._scan is not None:
                self._scan.cancel()
            await self.canary.remove()

    async def _listen(
        self, identity: tuple[int, int], polling: bool, stop: asyncio.Event, rescan: bool
    ) -> Ended:
        """Arm one watcher on the drop folder and offer what it reports until it ends."""
        if polling:
            reason = self._poll_reason or "[watch] force_polling = true"
            await self._set_mode(WatchMode("polling", reason=reason))
        else:
            await self._set_mode(WatchMode("events"))
            self.canary.arm()
        source = watchfiles.awatch if polling else self.events
        started = time.monotonic()
        self._delivered = False
        changes = source(
            self.drop, watch_filter=self._filter, debounce=DEBOUNCE_MS, step=STEP_MS,
            stop_event=stop, force_polling=polling, poll_delay_ms=POLL_DELAY_MS, recursive=True,
            ignore_permission_denied=True, rust_timeout=TICK_MS, yield_on_timeout=True,
        )
        try:
            async with contextlib.aclosing(changes):
                # Once the loop is next free, the first step of the iteration below has
                # armed the watcher: a scan from then on finds every file it does not hear.
                if rescan:
                    self._spawn_scan()
                asyncio.get_running_loop().call_soon(self.armed.set)
                return await self._hear(changes, identity, polling)
        except (OSError, RuntimeError, ExceptionGroup) as caught:
            # WatchfilesRustInternalError is a RuntimeError; one raised while watching comes
            # out of an anyio task group, wrapped.
            exc = _unwrapped(caught)
            if not isinstance(exc, OSError | RuntimeError):
                raise
            if UNDECODABLE in str(exc):
                return await self._undecodable_name(exc, time.monotonic() - started, polling, stop)
            if isinstance(exc, FileNotFoundError) or await self._identity() != identity:
                return Ended.GONE
            return await self._failed(exc, polling)

    async def _undecodable_name(
        self, exc: Exception, lasted: float, polling: bool, stop: asyncio.Event
    ) -> Ended:
        """Poll if it names a folder (events watchers cannot start); else wait before the
        next watcher: at once the first time, longer each time in a row."""
        named = _named_path(str(exc))
        if not polling and named and await asyncio.to_thread(os.path.isdir, named):
            self._poll_reason = (
                f"the file watcher fails as it starts, on a name that is not UTF-8 ({exc})"
            )
            log.warning("the file watcher fails as it starts, on a name that is not UTF-8 (%s),"
                        " as a folder so named makes it: polling %s every %d ms instead",
                        exc, self.drop, POLL_DELAY_MS)
            return Ended.UNHEARD
        if lasted >= UNDECODABLE_RESET_S:
            self._undecodable = 0
        self._undecodable += 1
        delay = _undecodable_delay(self._undecodable)
        if self._undecodable == 1:
            log.warning("the file watcher cannot report a name that is not UTF-8 (%s):"
                        " starting a new watcher and scanning the folder", exc)
        elif delay == UNDECODABLE_MAX_S > _undecodable_delay(self._undecodable - 1):
            log.warning("the file watcher keeps failing on names that are not UTF-8 (%s): a"
                        " new one, and a scan, every %g s while it does", exc, delay)
        if delay:
            # No watcher meanwhile: said as deaf (health, metrics, status), not as events.
            await self._set_mode(WatchMode(
                "polling" if polling else "events",
                deaf=f"no file watcher for {delay:g} s, after names that are not UTF-8 in a row"
                " (rescans go on)",
            ))
        await _sleep_unless(stop, delay)
        return Ended.RETRY

    def _spawn_scan(self) -> None:
        if self._scan is not None:
            # Watchers started in a row (each restart asks for a scan) would otherwise walk
            # a large folder side by side. One more walk after this one finds what the
            # newest watcher was armed too late to hear.
            self._scan_again = True
            return
        self._scan = asyncio.create_task(self.watcher.scan())
        self._scan.add_done_callback(self._scanned)

    def _scanned(self, task: asyncio.Task[int]) -> None:
        self._scan = None
        if task.cancelled():
            return
        if task.exception() is not None:
            # Not fatal: the next rescan walks the folder again.
            log.error("scanning %s failed", self.drop, exc_info=task.exception())
        else:
            log.info("scanned %s: %d inputs", self.drop, task.result())
        if self._scan_again:
            self._scan_again = False
            self._spawn_scan()

    async def _hear(
        self, changes: AsyncGenerator[Changes, None], identity: tuple[int, int], polling: bool
    ) -> Ended:
        check_at = 0.0
        async for batch in changes:
            self._delivered = True
            now = time.monotonic()
            itself = await self._offer_all(batch)
            if itself is not None:
                check_at = now
            if now >= check_at:
                check_at = now + FOLDER_CHECK_S
                # A folder made again at once may reuse the old one's inode number: its
                # deletion event is what tells them apart.
                if itself == watchfiles.Change.deleted or await self._identity() != identity:
                    log.warning("the drop folder %s was removed or replaced: starting a new"
                                " watcher", self.drop)
                    return Ended.GONE
            if polling:
                continue
            if self.canary.overdue(now):
                return await self._canary_missed()
            await self.canary.tend(now)
        return Ended.STOPPED

    async def _canary_missed(self) -> Ended:
        if not await self.canary.missed():
            log.warning("no event for the canary %s arrived within %g s: starting a new"
                        " watcher and scanning the folder", self.canary.path, self.canary.wait_s)
            return Ended.RETRY
        self._poll_reason = (
            f"the canary's event did not arrive within {self.canary.wait_s:g} s,"
            f" {MISSES} times in a row"
        )
        log.warning(
            "no event for the canary %s arrived within %g s, from a new watcher either: this"
            " folder sends no events here (a network share, some container bind mounts), or"
            " inotify's limits are reached; polling it every %d ms instead. %s",
            self.canary.path, self.canary.wait_s, POLL_DELAY_MS,
            await asyncio.to_thread(_limits),
        )
        return Ended.UNHEARD

    async def _offer_all(self, batch: Changes) -> watchfiles.Change | None:
        """Offer each input in `batch`; return the change to the drop folder itself, if any."""
        if batch:
            # Any event shows the watcher hears: the canary's own event may be the one an
            # inotify queue overflowing in a flood of files lost.
            await self.canary.heard()
        itself = None
        folders = False
        for count, (change, name) in enumerate(batch, 1):
            if name == self.canary.name:
                continue
            if name == str(self.drop):
                itself = change if itself is None else max(itself, change)  # deleted outranks
            else:
                folders |= self.watcher.offer(name)
            if count % OFFER_BATCH == 0:
                await asyncio.sleep(0)
        if folders:
            self._spawn_scan()  # a folder made or moved in: its files send no event
        return itself

    async def _failed(self, exc: Exception, polling: bool) -> Ended:
        if polling:
            log.warning("polling the drop folder %s failed (%s): starting again", self.drop, exc)
            return Ended.FAILED
        # A watcher that ran and then failed most often met inotify's watch limit on a new
        # subfolder (a recursive watcher adds a watch for each).
        what = "stopped" if self._delivered else "cannot start"
        self._poll_reason = f"the file watcher {what}: {exc}"
        log.warning("the file watcher %s (%s): polling %s every %d ms instead. %s",
                    what, exc, self.drop, POLL_DELAY_MS, await asyncio.to_thread(_limits))
        return Ended.UNHEARD

    async def _await_folder(self, polling: bool, stop: asyncio.Event) -> None:
        """The drop folder is missing (removed, or its mount gone): wait for it to be back."""
        log.warning("the drop folder %s is missing: waiting for it to come back", self.drop)
        mode = "polling" if polling else "events"
        await self._set_mode(WatchMode(mode, deaf=f"the drop folder {self.drop} is missing"))
        while not stop.is_set() and await self._identity() is None:
            await _sleep_unless(stop, FOLDER_CHECK_S)
        if not stop.is_set():
            log.warning("the drop folder %s is back: watching it and scanning it", self.drop)

    async def _identity(self) -> tuple[int, int] | None:
        """The drop folder's (device, inode), or None if there is no folder there."""
        try:
            st = await asyncio.to_thread(os.stat, self.drop)
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None

    async def _set_mode(self, mode: WatchMode) -> None:
        if mode != self.mode:
            self.mode = mode
            if self.report is not None:
                await self.report(mode)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    await wait_set(stop, seconds)


def _limits() -> str:
    """How to raise inotify's limits, with their values now. Reads /proc: call in a thread."""
    now = []
    for name in ("max_user_watches", "max_user_instances"):
        with contextlib.suppress(OSError):
            now.append(f"{name} = {Path('/proc/sys/fs/inotify', name).read_text().strip()}")
    return (
        "To raise inotify's limits" + (f" (now {', '.join(now)})" if now else "")
        + ": sysctl -w fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=1024,"
        " and the same in /etc/sysctl.d/ to keep them"
    )


def _unwrapped(exc: BaseException) -> BaseException:
    """The one error inside `exc`, however many groups of one it is wrapped in."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _undecodable_delay(in_a_row: int) -> float:
    return 0.0 if in_a_row <= 1 else min(UNDECODABLE_MAX_S, 0.25 * 2**in_a_row)


_RUST_PATH = re.compile(UNDECODABLE + r' "(.*)" to string')
_RUST_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u\{[0-9A-Fa-f]+\}|.)")
_RUST_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}


def _named_path(message: str) -> str | None:
    """The path in watchfiles' undecodable-name error, back from Rust's debug quoting."""
    found = _RUST_PATH.search(message)
    if found is None:
        return None
    raw, text, last = bytearray(), found[1], 0
    for escape in _RUST_ESCAPE.finditer(text):
        raw += text[last:escape.start()].encode()
        code = escape[1]
        if code[0] == "x" and len(code) == 3:
            raw.append(int(code[1:], 16))
        elif code[0] == "u" and len(code) > 1:
            raw += chr(int(code[2:-1], 16)).encode()
        else:
            raw += _RUST_SIMPLE.get(code, code).encode()
        last = escape.end()
    raw += text[last:].encode()
    return os.fsdecode(bytes(raw))
