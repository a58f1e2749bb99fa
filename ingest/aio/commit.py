"""Commit: gather results into batches and publish them from a thread.

Many small files become one part file: a batch is flushed when it holds
`target_file_mb`, when its oldest entry is `flush_s` old, when the byte budget
has a reader waiting, or at drain. One flush runs at a time, in a thread, and
every ledger write of the application goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..config import Config
from ..crashpoints import CrashPlan
from ..dispose import after_success, quarantine
from ..files import DropFile
from ..jobs import Failure
from ..layout import Layout
from ..ledger import FileRecord, Ledger
from ..parts import Accepted, Published, publish

log = logging.getLogger("ingest.commit")

MAX_BACKOFF_S = 30.0
PRESSURE_POLL_S = 0.05


@dataclass
class Aside:
    """A file resolved without rows of its own: a duplicate or a quarantined input."""

    file: DropFile
    sha256: str
    state: str  # "duplicate" | "quarantined"
    duplicate_of: str | None = None
    failure: Failure | None = None
    attempts: int = 1

    def record(self) -> FileRecord:
        failure = self.failure
        return FileRecord(
            path=self.file.rel, size=self.file.size, mtime_ns=self.file.mtime_ns,
            sha256=self.sha256, state=self.state, duplicate_of=self.duplicate_of,
            error=failure.error if failure else None,
            message=failure.message if failure else None,
            attempts=self.attempts, seen_at=self.file.seen_at, done_at=time.time(),
        )


@dataclass
class Batch:
    accepted: list[Accepted] = field(default_factory=list)
    aside: list[Aside] = field(default_factory=list)
    nbytes: int = 0
    oldest: float | None = None

    def __bool__(self) -> bool:
        return bool(self.accepted or self.aside)

    def note(self, nbytes: int) -> None:
        self.nbytes += nbytes
        if self.oldest is None:
            self.oldest = time.monotonic()


Resolved = Callable[[DropFile, str, dict[str, object]], Awaitable[None]]


class Committer:
    def __init__(
        self,
        ledger: Ledger,
        layout: Layout,
        config: Config,
        on_resolved: Resolved,
        pressure: Callable[[], bool],
        crash: CrashPlan,
    ):
        self.ledger = ledger
        self.layout = layout
        self.config = config
        self.on_resolved = on_resolved
        self.pressure = pressure
        self.crash = crash
        self._batch = Batch()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._backoff = 0.0

    def add(self, entry: Accepted) -> None:
        self._batch.accepted.append(entry)
        self._batch.note(entry.nbytes)
        self._wake.set()

    def set_aside(self, aside: Aside) -> None:
        self._batch.aside.append(aside)
        self._batch.note(0)
        self._wake.set()

    def _due(self) -> float:
        """Seconds until the batch must be flushed; <= 0 means now."""
        batch = self._batch
        if batch.oldest is None:
            return float("inf")
        out = self.config.output
        if batch.nbytes >= out.target_file_mb * 1024 * 1024 or self.pressure():
            return 0.0
        return batch.oldest + out.flush_s - time.monotonic()

    async def run(self) -> None:
        """Forever: flush each batch when it is due."""
        while True:
            due = self._due()
            if due <= 0:
                await self.flush()
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(due, PRESSURE_POLL_S))

    async def flush(self) -> None:
        async with self._flushing:
            batch, self._batch = self._batch, Batch()
            if not batch:
                return
            try:
                published = await asyncio.to_thread(self._commit, batch)
            except Exception as exc:
                self._backoff = min(MAX_BACKOFF_S, max(0.5, self._backoff * 2))
                log.error(
                    "commit of %d files failed: %s; inputs stay pending, retrying in %.1fs",
                    len(batch.accepted) + len(batch.aside), exc, self._backoff,
                )
                self._restore(batch)
                await asyncio.sleep(self._backoff)
                return
            self._backoff = 0.0
            await self._report(batch, published)

    async def drain(self) -> None:
        """Flush until nothing is left in the batch."""
        while self._batch:
            await self.flush()

    def _restore(self, batch: Batch) -> None:
        # Failed entries go back in front, keeping their age, so the retry includes them.
        self._batch.accepted[:0] = batch.accepted
        self._batch.aside[:0] = batch.aside
        self._batch.nbytes += batch.nbytes
        self._batch.oldest = batch.oldest

    def _commit(self, batch: Batch) -> Published:
        """Called in a thread: publish, then dispose of the inputs (after the ledger commit)."""
        keep = self.config.watch.on_success == "keep"
        published = publish(
            self.ledger, self.layout, self.config.output.compression,
            batch.accepted, [a.record() for a in batch.aside], self.crash,
        )
        for entry in published.committed:
            after_success(self.layout, entry.file, entry.sha256, self.config.watch.on_success)
            self.crash.reached("input-disposed")
        for aside in batch.aside:
            if aside.failure is not None:
                self.crash.reached("quarantine-recorded")
                quarantine(self.layout, aside.file, aside.sha256, aside.failure,
                           aside.attempts, keep)
            else:
                after_success(self.layout, aside.file, aside.sha256, self.config.watch.on_success)
        return published

    async def _report(self, batch: Batch, published: Published) -> None:
        part = published.part_id
        for entry in published.committed:
            await self.on_resolved(entry.file, "ingested",
                                   {"rows": entry.rows, "sha256": entry.sha256, "part": part})
        for entry in published.changed:
            await self.on_resolved(entry.file, "changed", {"sha256": entry.sha256})
        for aside in batch.aside:
            fields: dict[str, object] = {"sha256": aside.sha256}
            if aside.failure is not None:
                fields.update(error=aside.failure.error, reason=aside.failure.message,
                              attempts=aside.attempts)
                if aside.failure.line is not None:
                    fields["line"] = aside.failure.line
            else:
                fields["duplicate_of"] = aside.duplicate_of
            await self.on_resolved(aside.file, aside.state, fields)
