"""Dispatch: group queued files into tasks, run them through the one door, hand results on.

A task takes a fair share of the files known to be on their way (queued, being
read, settling), split across the workers, up to `TASK_BYTES` of input: a
backlog of a thousand small files makes a handful of tasks, and so of part
files, spread over every core. A file that arrives alone waits at most
`flush_s` for company, so a trickle still makes few part files.

After a worker dies, every file of the task that was running is a suspect.
Each suspect runs again with the pool to itself: a crash there has one cause.
A file that kills a worker `retries + 1` times is quarantined as poison.
A task that fails in a way no one foresaw (an exception from the worker's own
code, not from a file's verdict) has its files run alone too, and a file that
fails that way again alone is quarantined with the exception: the service goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import aiorwlock

from ..config import Config
from ..dialect import Dialect
from ..errors import ClusterLost, PoolStopped, TaskTimeout, WorkerCrashed
from ..files import DropFile
from ..jobs import NOT_AS_SEEN, Failure, Job, Task, TaskResult, WrittenPart
from ..logs import shown
from ..store.layout import Layout
from ..store.parts import Accepted, StagedPart
from .commit import Aside, Committer, TaskOutput
from .to_compute import Compute
from .waiting import get_within

log = logging.getLogger("ingest.dispatch")

# Input bytes per task, as they are in memory (a .csv.gz decompressed), or target_file_mb,
# if smaller. Big enough that encoding and per-task costs are amortised and part files are
# not tiny; small enough that a large backlog splits into several tasks per worker, so one
# slow task is not the tail. A worker holds about 8 times its task's input at its peak
# (the text, the parsed table, the records with their source columns, the Parquet): at
# 16 MB the whole service peaked 185 MB higher on the `small` benchmark than at 8 MB, for
# 1% less time.
TASK_BYTES = 8 * 1024 * 1024
TASK_FILES = 2000
# A task's wait for company is taken in slices this long, each after a look at whether
# the service has begun to drain: a flush_s of a minute held a stop's files past drain_s.
COMPANY_SLICE_S = 0.1

R = TypeVar("R")


@dataclass  # not frozen: made for every input (`files.DropFile`)
class Queued:
    file: DropFile
    job: Job
    in_memory: int  # what the file becomes in memory (a .csv.gz: decompressed); tasks by this


class Upstream(Protocol):
    """What the dispatcher needs from the files in flight (`inflight.InFlight`)."""

    def more_coming(self) -> bool:
        """Whether a task being assembled should wait flush_s for more files."""

    def draining(self) -> bool:
        """Whether the service drains: no task waits for more files."""

    def backlog(self) -> int:
        """Files known to be on their way to the queue, or in it, that no task holds yet."""

    def taken(self, item: Queued) -> bool:
        """A dispatcher took the file off the queue; False if it is let go (a drain)."""

    def free_shared_memory(self, items: Iterable[Queued]) -> None:
        """The files' results are final: the shared memory their worker read can go."""

    async def originals(self, digests: Iterable[str]) -> Mapping[str, str]:
        """For `claim`: the path first ingested with each digest the ledger holds and
        memory does not (empty, at once, while memory holds every one)."""

    def claim(self, rel: str, digest: str, originals: Mapping[str, str]) -> bool:
        """The worker hashed the file: True if it is to be committed; False if the same
        bytes are committed already (set aside as a duplicate) or held by a file in flight
        (it waits for that one). Its rows are then taken out of the task's parts."""

    def not_as_seen(self, item: Queued, failure: Failure) -> None:
        """A worker read the file's path and found it changed, vanished or unreadable
        (`failure.error` is in `jobs.NOT_AS_SEEN`): resolve it so, and look again."""


class Dispatcher:
    def __init__(
        self,
        config: Config,
        compute: Compute,
        queue: asyncio.Queue[Queued],
        committer: Committer,
        upstream: Upstream,
    ):
        self.config = config
        self.compute = compute
        self.queue = queue
        self.committer = committer
        self.upstream = upstream
        # Workers that see the output folder write their part files where the committer
        # renames them; the others return the parts' bytes, which the committer writes.
        self._stage_dir = Layout.of(config).tmp if compute.sees_output else None
        # A local worker says which it is, for the backstop to kill it alone if it hangs.
        self._beacons = compute.shares_memory
        self._assembling = asyncio.Lock()
        self._isolation = aiorwlock.RWLock()  # shared: tasks; exclusive: a suspect alone
        self._described: dict[Dialect, str] = {}
        self._last_described: tuple[Dialect, str] | None = None

    async def run(self) -> None:
        while True:
            items = await self._assemble()
            if items:
                await self._run(items)

    def _take_now(self) -> Queued | None:
        """A file waiting in the queue, if any: no coroutine for it, as this runs per file."""
        try:
            item = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        return item if self.upstream.taken(item) else None

    async def _take(self, timeout: float) -> Queued | None:
        item = await get_within(self.queue, timeout)
        return item if item is not None and self.upstream.taken(item) else None

    async def _assemble(self) -> list[Queued]:
        """The next task: the files waiting now, or within flush_s of the first one."""
        async with self._assembling:
            first = await self.queue.get()
            if not self.upstream.taken(first):
                return []
            items, size = [first], first.in_memory
            deadline = time.monotonic() + self.config.output.flush_s
            limit = min(TASK_BYTES, self.config.output.target_file_mb * 1024 * 1024)
            while size < limit and len(items) < TASK_FILES:
                known = self.upstream.backlog()
                fair_share = -(-(len(items) + known) // self.compute.workers)
                if known and len(items) >= fair_share:
                    break  # the rest is for the other workers
                item = self._take_now() or await self._company(deadline)
                if item is None:
                    break
                items.append(item)
                size += item.in_memory
            return items

    async def _company(self, deadline: float) -> Queued | None:
        """A file that arrives by the monotonic `deadline`, while one is coming (on its way
        to the queue, or still to be found) and the service is not draining; else None."""
        upstream = self.upstream
        while not upstream.draining() and (upstream.backlog() or upstream.more_coming()):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            item = await self._take(min(left, COMPANY_SLICE_S))
            if item is not None:
                return item
        return None

    def _task(self, items: list[Queued]) -> Task:
        stage = beacon = None
        if self._stage_dir is not None:
            stage = str(self._stage_dir / f"task-{secrets.token_hex(8)}")
            if self._beacons:
                beacon = f"{stage}-worker"  # removed with the stage's parts if the task fails
        return Task(
            tuple(i.job for i in items), self.config.features, self.config.output.tables,
            self.config.output.compression, self.config.pipeline.task_timeout_s, stage,
            self.committer.schemas.specs({i.job.table for i in items}), beacon,
            self.config.pipeline.memory_mb,
        )

    async def _compute(self, task: Task) -> TaskResult:
        """Run a task; if it did not return, remove what its worker had written."""
        try:
            return await self.compute.run(task)
        except Exception:
            if task.stage is not None:
                await asyncio.to_thread(_remove_staged, Path(task.stage))
            raise

    async def _run(self, items: list[Queued]) -> None:
        try:
            result = await self._beside_others(items)
        except WorkerCrashed as exc:
            log.warning("%s; retrying each of its files alone", exc)
            for item in items:
                await self._run_alone(item, crashes=1)
            return
        except TaskTimeout as exc:
            if len(items) == 1:
                self._quarantine(items[0], Failure("TaskTimeout", str(exc)), 1)
                return
            for item in items:
                await self._run_alone(item, crashes=0)
            return
        except ClusterLost:
            raise  # no file's doing: the service stops
        except Exception as exc:
            # Not a file's verdict (those come back as data): one of them may still be the
            # cause, so each runs alone, as after a crash, but none is charged one.
            log.error("%s failed unexpectedly; retrying each of its files alone", _what(items),
                      exc_info=exc)
            for item in items:
                await self._run_alone(item, crashes=0)
            return
        await self._deliver(items, result, attempts=1)

    async def _beside_others(self, items: list[Queued]) -> TaskResult:
        """Run a task while others run; again if it was lost with a pool stopped for another."""
        while True:
            try:
                async with self._isolation.reader_lock:
                    return await self._compute(self._task(items))
            except PoolStopped as exc:
                log.info("%s; running it again", exc)

    async def _run_alone(self, item: Queued, crashes: int) -> None:
        retries = self.config.pipeline.retries
        while True:
            try:
                async with self._isolation.writer_lock:
                    result = await self._compute(self._task([item]))
            except PoolStopped:
                continue  # lost with a pool stopped for a hung call: not its doing
            except WorkerCrashed as exc:
                crashes += 1
                if crashes > retries:
                    message = f"{exc}; it killed a worker {crashes} times, alone in the pool"
                    self._quarantine(item, Failure("WorkerCrashed", message), crashes)
                    return
                log.warning("%s (%d of %d attempts)", exc, crashes, retries + 1)
                continue
            except TaskTimeout as exc:
                self._quarantine(item, Failure("TaskTimeout", str(exc)), crashes + 1)
                return
            except ClusterLost:
                raise
            except Exception as exc:
                log.error("%s failed unexpectedly, alone", item.file.rel, exc_info=exc)
                failure = Failure(type(exc).__name__, f"processing it failed unexpectedly: {exc}")
                self._quarantine(item, failure, crashes + 1)
                return
            await self._deliver([item], result, attempts=crashes + 1)
            return

    async def retrying(self, call: Callable[[], Awaitable[R]]) -> R:
        """Run one piece of a streamed file beside the tasks; after a crash, again alone.

        Raises WorkerCrashed once it has killed a worker `retries + 1` times.
        """
        while True:
            try:
                async with self._isolation.reader_lock:
                    return await call()
            except PoolStopped:
                continue  # lost with a pool stopped for another call's hang: not its doing
            except WorkerCrashed as exc:
                log.warning("%s; retrying it alone", exc)
                break
        crashes = 1
        while True:
            try:
                async with self._isolation.writer_lock:
                    return await call()
            except PoolStopped:
                continue
            except WorkerCrashed as exc:
                crashes += 1
                if crashes > self.config.pipeline.retries:
                    raise WorkerCrashed(
                        f"{exc}; it killed a worker {crashes} times, alone in the pool"
                    ) from None
                attempts = self.config.pipeline.retries + 1
                log.warning("%s (%d of %d attempts)", exc, crashes, attempts)

    def _quarantine(
        self, item: Queued, failure: Failure, attempts: int, digest: str | None = None
    ) -> None:
        """Set the file aside as quarantined. Its sha256 is the worker's; a file that
        killed or hung its worker has none, and is hashed by its committer."""
        self.upstream.free_shared_memory((item,))
        digest = digest or item.job.sha256
        self.committer.set_aside(Aside(
            item.file, digest, "quarantined", failure=failure, attempts=attempts,
            table=item.job.table, hash_on_commit=not digest,
        ))

    def _describe(self, dialect: Dialect | None) -> str | None:
        """A dialect's text for the ledger, made once per dialect: a task's files share a
        handful of them, and this runs on the event loop for every file. A task's result
        most often holds one object for the files of one dialect (pickle keeps them one):
        that object is checked first, as hashing a dialect is itself most of the cost."""
        if dialect is None:
            return None
        last = self._last_described
        if last is not None and last[0] is dialect:
            return last[1]
        text = self._described.get(dialect)
        if text is None:
            text = self._described[dialect] = dialect.describe()
        self._last_described = (dialect, text)
        return text

    async def _deliver(self, items: list[Queued], result: TaskResult, attempts: int) -> None:
        accepted: list[Accepted] = []
        dropped: set[str] = set()  # files whose rows are in the parts but not to be committed
        originals = await self.upstream.originals(
            o.sha256 for o in result.outcomes if o.failure is None
        )
        self.upstream.free_shared_memory(items)
        for item, outcome in zip(items, result.outcomes, strict=True):
            dialect = outcome.dialect
            described = self._describe(dialect)
            if described is not None and log.isEnabledFor(logging.DEBUG):
                log.debug("%s: read as %s", shown(item.file.rel), described)
            failure = outcome.failure
            if failure is not None and failure.error in NOT_AS_SEEN:
                if NOT_AS_SEEN[failure.error] == "vanished":
                    self.committer.vanished(item.file)  # a fact for `ingest explain`
                self.upstream.not_as_seen(item, failure)  # no rows of it in the parts
                continue
            if failure is not None:
                self._quarantine(item, failure, attempts, outcome.sha256)
                continue
            if not self.upstream.claim(item.file.rel, outcome.sha256, originals):
                dropped.add(item.file.rel)
                continue
            table = item.job.table
            if dialect is not None:
                self.committer.schemas.pin(table, dialect, item.file.rel)
            accepted.append(Accepted(
                item.file, outcome.sha256, outcome.rows, attempts, table, described
            ))
        parts = [StagedPart.written(p) if isinstance(p, WrittenPart) else p for p in result.parts]
        if accepted or parts:
            self.committer.add(TaskOutput(accepted, parts, dropped))


def _what(items: list[Queued]) -> str:
    first = items[0].file.rel
    return first if len(items) == 1 else f"the task of {first} and {len(items) - 1} other files"


def _remove_staged(stage: Path) -> None:
    """The part files a task's worker wrote before it died or was stopped."""
    for temp in stage.parent.glob(f"{stage.name}-*"):
        with contextlib.suppress(OSError):
            temp.unlink()
