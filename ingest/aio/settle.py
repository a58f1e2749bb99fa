"""Settle: a file is read only once it is complete.

A file is settled when its mtime is at least `settle_ms` old (a file renamed in, or
copied with its time preserved: nothing has written to it since), or when we have
watched it stay unchanged for `settle_ms` and a second look finds the same size and
mtime. An mtime in the future (clock skew, `cp -p` from a fast clock) is ignored in
favour of watching, so it never stalls a file.

A file whose mtime is old enough when it is found is handed out on that one look,
with no second stat a moment later: a backlog of small files was stat'ed three times
each. What the second look would have caught, a write after the first, is caught
as surely later: the read must return exactly the size seen, and the commit checks
the size and mtime once more (`store.parts.unchanged`); either way the file is
resolved as changed and looked at again: after a pause that doubles each time it is so
resolved in a row (`changed`), and never on one look.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..files import DropFile, mtime_ns
from .waiting import wait_set

# Due files looked at between returns to the event loop.
LOOK_BATCH = 256
# A file resolved as changed is looked at again after a pause, which doubles each time
# in a row from settle_ms (at least the first of these) up to the second. The service saw
# it unchanged and a worker did not: a shared mount whose cache shows the worker another
# size, a file rewritten in place with its mtime put back. Each look reads it whole.
CHANGED_PAUSE_S = (0.1, 60.0)
# Second looks made on the loop itself, a few stats of some µs each: a hop to a thread
# costs the service ~200 µs of CPU, which a trickle of files would pay one by one.
INLINE_LOOKS = 32


@dataclass
class _Pending:
    path: str
    rel: str
    size: int
    mtime_ns: int
    stable_since: float  # monotonic time this (size, mtime) was first seen
    seen_at: float
    seen_mono: float
    # When its one live entry in the settler's heap comes due; older entries are stale.
    due: float = 0.0

    def file(self) -> DropFile:
        """The file as last seen."""
        return DropFile(self.path, self.rel, self.size, self.mtime_ns, self.seen_at, self.seen_mono)


class Ready(asyncio.Queue[DropFile]):
    """Settled files, in the order they settled; the intake may look at those behind
    the first (to ask the ledger about many in one hop)."""

    def _init(self, maxsize: int) -> None:
        # asyncio.Queue's own storage (its subclasses' documented hook), typed here.
        self._queue: collections.deque[DropFile] = collections.deque()

    def upcoming(self, limit: int) -> list[DropFile]:
        return list(itertools.islice(self._queue, limit))


class Settler:
    """Holds files until they settle, then hands them to `ready` one by one."""

    def __init__(
        self,
        settle_ms: int,
        relative: Callable[[str], str],
        vanished: Callable[[DropFile], None],
        remember: int = 0,
    ):
        self.settle_s = settle_ms / 1000
        self.relative = relative
        self.vanished = vanished  # a file gone before it settled, as last seen
        self.ready = Ready()
        self._pending: dict[str, _Pending] = {}
        # Those of them seen to change since they were found, or paused after `changed`:
        # not expected to settle soon (`settling`).
        self._changing: set[str] = set()
        self._heap: list[tuple[float, str]] = []
        # Handed out, not yet resolved: the (size, mtime) each was handed out at.
        self._busy: dict[str, tuple[int, int]] = {}
        self._dirty: set[str] = set()  # seen again while busy: look once more when resolved
        self._wake = asyncio.Event()
        # With on_success = "keep" a resolved file stays where it is, and every rescan
        # finds it again: remembered as resolved (size, mtime), it is not offered again
        # until it changes. Those no full scan finds any more are forgotten. At most
        # `remember` (known_files) are: past that, a file is asked of the ledger again.
        self._remember = remember
        # Files resolved as changed: how many times in a row, and the monotonic time before
        # which they are not handed out again, however they are offered (`changed`).
        self._changes: dict[str, tuple[int, float]] = {}
        self._resolved: dict[str, tuple[int, int]] = {}
        self._scans = 0  # full scans under way
        # Handed out by a scan after the first whole one, not yet resolved: a file found recorded
        # already is one that memory let go of (past known_files), asked of the ledger
        # again, not news (`found_again`).
        self._again: set[str] = set()
        self._found: set[str] = set()  # resolved files found again since the first began
        self._cut_short = False  # one of those scans did not finish
        self._closed = False  # the service stops: nothing new is taken in

    def close(self) -> None:
        """The service stops: a file offered from now on (a rescan, an event during the
        drain) is the next run's, and is not taken in, nor told left, again and again."""
        self._closed = True

    def __len__(self) -> int:
        return len(self._pending)

    def settling(self) -> int:
        """The files held that may settle soon: not seen to change since they were found.
        A task waits for these (`InFlight.backlog`), and `once` its failing commits; not for
        files still changing."""
        return len(self._pending) - len(self._changing)

    @property
    def busy(self) -> int:
        return len(self._busy)

    def busy_settled(self) -> bool:
        """Whether a file handed out is at work that is not a look again at one found
        changed (those are still changing, as far as `once` can tell)."""
        return any(rel not in self._changes for rel in self._busy)

    def changed(self, rel: str) -> None:
        """`rel` was resolved as changed: it is not handed out again before a pause."""
        times, _ = self._changes.get(rel, (0, 0.0))
        shortest, longest = CHANGED_PAUSE_S
        pause = min(max(self.settle_s, shortest) * (1 << min(times, 32)), longest)
        self._changes[rel] = (times + 1, time.monotonic() + pause)

    def forget_changes(self, rel: str) -> None:
        """`rel` was resolved otherwise, or is gone: its next change pauses from the start."""
        if self._changes:  # called for every file resolved; nearly always empty
            self._changes.pop(rel, None)

    def offer(
        self, path: str, st: os.stat_result, scanned: bool = False, seen: DropFile | None = None,
        again: bool = False,
    ) -> None:
        """A hint that `path` exists and may be new. Cheap; safe to call for every event.
        `scanned`: found by a full scan, not named by an event; `again`: by a scan after the
        first whole one. `seen`: the file as the service saw it first, if this is that
        version offered again."""
        if self._closed:
            return
        rel = self.relative(path)
        mtime = mtime_ns(st)
        busy = self._busy.get(rel)
        if busy is not None:
            # An event says something touched it (a write, a chmod that makes it readable,
            # a move away and back): look again once it is resolved. A scan only finds it,
            # and it deserves another look only if it is not as it was handed out.
            if not scanned or busy != (st.st_size, mtime):
                self._dirty.add(rel)
            return
        resolved = self._resolved.get(rel)
        if resolved is not None:
            if resolved == (st.st_size, mtime):
                if self._scans:
                    self._found.add(rel)
                return
            del self._resolved[rel]
        now = time.monotonic()
        entry = self._pending.get(rel)
        if entry is not None and (entry.size, entry.mtime_ns) == (st.st_size, mtime):
            return
        wall = time.time()
        paused_until = self._changes[rel][1] if rel in self._changes else 0.0
        first = entry or seen
        seen_at, seen_mono = (first.seen_at, first.seen_mono) if first else (wall, now)
        # Found changed before: never handed out on this look alone.
        if not paused_until and wall - st.st_mtime_ns / 1e9 >= self.settle_s:
            # Quiet: handed out on this look, not through the heap (a backlog's every file).
            if entry is not None:
                self._forget(rel)  # its heap entry is stale now, and dropped when due
            self._busy[rel] = (st.st_size, mtime)
            if again:
                self._again.add(rel)
            self.ready.put_nowait(DropFile(path, rel, st.st_size, mtime, seen_at, seen_mono))
            return
        fresh = self._pending[rel] = _Pending(path, rel, st.st_size, mtime, now, seen_at, seen_mono)
        if paused_until or entry is not None:
            self._changing.add(rel)
        self._schedule(fresh, max(self._due(fresh, now), paused_until))

    def done(self, rel: str, stays: DropFile | None = None) -> bool:
        """The service resolved `rel`. True if it changed meanwhile and deserves another look.
        `stays`: the file as resolved, if its fate leaves it in the drop folder as it is."""
        self._busy.pop(rel, None)
        self._again.discard(rel)
        if rel in self._dirty:
            self._dirty.discard(rel)
            return True
        if stays is not None and len(self._resolved) < self._remember:
            self._resolved[rel] = (stays.size, stays.mtime_ns)
            if self._scans:
                self._found.add(rel)
        return False

    def leave_unsettled(self) -> list[DropFile]:
        """The service ends (`once` done waiting, or a signal) with these files not yet
        settled: each as last seen, let go of here. They stay in the drop folder for the
        next run."""
        left = [entry.file() for entry in self._pending.values()]
        self._pending.clear()  # their heap entries are stale now, and dropped when due
        self._changing.clear()
        return left

    def scan_began(self) -> None:
        self._scans += 1

    def found_again(self, rel: str) -> bool:
        """Was the file, now handed out, found by a scan after the first?"""
        return rel in self._again

    def scan_ended(self, whole: bool) -> None:
        """Forget the resolved files that no scan since the first of those under way found
        (nor were resolved meanwhile): they are gone from the drop folder. `whole`: this
        scan offered every file it found; after one that did not, nothing is forgotten."""
        self._scans -= 1
        self._cut_short |= not whole
        if self._scans == 0:
            if not self._cut_short:
                found = {r: k for r, k in self._resolved.items() if r in self._found}
                if len(found) < len(self._resolved):
                    self._resolved = found
            self._found = set()
            self._cut_short = False

    def _due(self, entry: _Pending, now: float) -> float:
        """When `entry` may be settled, as a monotonic time."""
        watched = entry.stable_since + self.settle_s
        age = time.time() - entry.mtime_ns / 1e9
        if age >= 0:  # a future mtime says nothing; only watching counts then
            return min(watched, now + max(0.0, self.settle_s - age))
        return watched

    def _schedule(self, entry: _Pending, due: float) -> None:
        entry.due = due
        heapq.heappush(self._heap, (due, entry.rel))
        self._wake.set()

    def _due_now(self, rel: str, due: float, now: float) -> _Pending | None:
        """A file whose time has come: put back if its time moved on, or returned for its
        second look. An entry the file was offered again since (it changed) is dropped:
        put back, each change of a file that never settles would stay in the heap, and
        all of them be popped and pushed again every settle_ms."""
        entry = self._pending.get(rel)
        if entry is None or entry.due != due:
            return None
        due = self._due(entry, now)
        if due > now:
            self._schedule(entry, due)
            return None
        return entry

    def _looked(self, entry: _Pending, st: os.stat_result | OSError, now: float) -> None:
        """The second look at `entry`: settled if it is as it was, else watched again."""
        if isinstance(st, FileNotFoundError):
            self._forget(entry.rel)
            self.forget_changes(entry.rel)
            self.vanished(entry.file())
            return
        if isinstance(st, OSError):
            self._forget(entry.rel)  # unreadable before it settled; a rescan tries again
            self.forget_changes(entry.rel)
            return
        mtime = mtime_ns(st)
        if (st.st_size, mtime) != (entry.size, entry.mtime_ns):
            entry.size, entry.mtime_ns, entry.stable_since = st.st_size, mtime, now
            self._changing.add(entry.rel)
            self._schedule(entry, self._due(entry, now))
            return
        self._forget(entry.rel)
        self._hand_out(entry)

    def _forget(self, rel: str) -> None:
        del self._pending[rel]
        self._changing.discard(rel)

    def _hand_out(self, entry: _Pending) -> None:
        self._busy[entry.rel] = (entry.size, entry.mtime_ns)
        self.ready.put_nowait(entry.file())

    async def run(self) -> None:
        """Forever: sleep until the next files are due, then look at them again, a batch at
        a time, the stats of more than a few in a thread: 20,000 files copied in at once
        held the loop for their 20,000 stats in one pass."""
        while True:
            now = time.monotonic()
            # By name: a file offered again as it grew is in the heap more than once, and
            # two looks at it with one stat would take the second for a quiet second look.
            looks: dict[str, _Pending] = {}
            handled = 0
            while self._heap and self._heap[0][0] <= now and handled < LOOK_BATCH:
                due_at, rel = heapq.heappop(self._heap)
                handled += 1
                if rel not in looks and (entry := self._due_now(rel, due_at, now)) is not None:
                    looks[rel] = entry
            if looks:
                due = list(looks.values())
                paths = [entry.path for entry in due]
                if len(due) <= INLINE_LOOKS:
                    stats = _stat_all(paths)
                else:
                    stats = await asyncio.to_thread(_stat_all, paths)
                now = time.monotonic()
                for entry, st in zip(due, stats, strict=True):
                    # Offered anew while it was looked at: that entry stands, this look not.
                    if self._pending.get(entry.rel) is entry:
                        self._looked(entry, st, now)
            if handled:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            await wait_set(self._wake, self._heap[0][0] - now if self._heap else None)


def _stat_all(paths: list[str]) -> list[os.stat_result | OSError]:
    found: list[os.stat_result | OSError] = []
    for path in paths:
        try:
            found.append(os.stat(path))
        except OSError as exc:
            found.append(exc.with_traceback(None))
    return found
