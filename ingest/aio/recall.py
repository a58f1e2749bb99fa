"""What memory has let go of, asked of the ledger: in batches, from a thread.

`Known` holds the newest inputs' answers; while it holds all of them, nothing here
runs. Past its capacity, an answer memory lacks is looked up here: a file's name,
size and mtime by the intake (with the files settled behind it, one hop for all), a
task's sha256s before their claims. The lookups have a read-only connection of their
own: the committer's is busy with commits, and in WAL mode a reader sees every commit
made before its query began and never holds one up.

A query that fails (an I/O error, a ledger locked past SQLite's timeout) is the
machine's: it is asked again with a growing pause, as a failing commit is, and the
files wait meanwhile; none is let through unchecked.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

from ..errors import LedgerError
from ..store.known import Key, Known
from ..store.lasting import backoff_after
from ..store.ledger import Ledger

log = logging.getLogger("ingest.service")

T = TypeVar("T")
Item = TypeVar("Item")

# A sha256 index the committer could not make (a full disk) is tried again after this.
INDEX_RETRY_S = 60.0


class Recall:
    def __init__(self, known: Known, ledger: Path, make_index: Callable[[], Awaitable[None]]):
        self.known = known
        self._path = ledger
        self._make_index = make_index  # by the committer, whose connection writes
        self._index_at: float | None = None if known.indexed else 0.0  # when to try to make it
        self._reader: Ledger | None = None
        self._lock = asyncio.Lock()  # one query on the connection at a time

    async def states(self, keys: list[Key]) -> dict[Key, str]:
        """The ledger's state of each of `keys` it holds. No file of these names is in
        flight but the one asking: none of them can be recorded while the query runs."""
        if self.known.whole:
            return {}
        async with self._lock:
            return await self._ask(Ledger.states, keys)

    async def originals(self, digests: Iterable[str]) -> dict[str, str]:
        """The path first ingested with each of `digests`, from memory or the ledger."""
        if self.known.whole:
            return {}
        digests = list(digests)
        held = self.known.ingested
        # Memory's answers are taken now: a trim while this waits would let them go.
        found = {d: held[d] for d in digests if d in held}
        missing = [d for d in digests if d not in found]
        if not missing:
            return found
        await self._indexed()
        async with self._lock:
            while True:
                # Memory's sha256s are numbered as they came, and leave in that order: one
                # recorded after the query began is numbered `since` or more.
                since = len(self.known.ingested) + self.known.evicted
                found.update(await self._ask(Ledger.originals, missing))
                # Such a file is in memory now, unless so many have left since that it has
                # too: then the ledger has it for a second query.
                if self.known.evicted <= since:
                    return found

    async def _indexed(self) -> None:
        """Have the committer make the sha256 index, once (a failure is retried later:
        the query is right without it, only slower)."""
        if self._index_at is None or time.monotonic() < self._index_at:
            return
        try:
            await self._make_index()
            self._index_at = None
        except sqlite3.Error as exc:
            log.warning("the ledger's sha256 index could not be made (%s); tried again later",
                        exc)
            self._index_at = time.monotonic() + INDEX_RETRY_S

    async def _ask(self, query: Callable[[Ledger, list[Item]], T], items: list[Item]) -> T:
        """Run `query` in a thread; the caller holds the lock. Waits for the thread even
        when cancelled: the connection is never used by two threads, nor closed under one."""
        backoff = 0.0
        while True:
            work = asyncio.ensure_future(asyncio.to_thread(self._query, query, items))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                await asyncio.wait([work])
                raise
            except (sqlite3.Error, LedgerError) as exc:
                backoff = backoff_after(backoff)
                log.warning("the ledger could not be read (%s); asking again in %.1f s",
                            exc, backoff)
                self._close()
                await asyncio.sleep(backoff)

    def _query(self, query: Callable[[Ledger, list[Item]], T], items: list[Item]) -> T:
        if self._reader is None:
            self._reader = Ledger(self._path, read_only=True)
        return query(self._reader, items)

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def close(self) -> None:
        async with self._lock:
            self._close()
