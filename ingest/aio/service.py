"""The service: owns the loop's tasks, the ledger and the one executor.

    Watcher ─offer─> Settler ─ready─> intake ─budget─> read ─queue─> dispatch ─> Committer
                                                        (bytes)    (files)   (to_compute)

`serve()` is the whole life of the application: open the ledger and repair
what a crash left, start the executor, ingest the backlog, then either stop
(`once`) or follow the folder until a signal (`run`), drain, and shut down.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from typing import Any

from .. import logs, shared
from ..config import Config
from ..errors import LedgerError
from ..files import DropFile
from ..jobs import Failure, Job
from ..metrics import Metrics
from ..progress import Progress
from ..selection import regular_file
from ..store.autocompact import Compactor
from ..store.crashpoints import CrashPlan
from ..store.dispose import after_success, quarantine
from ..store.layout import Layout
from ..store.ledger import Known, Ledger
from ..store.parts import Accepted, reconcile
from ..store.schema import Schemas, adopt
from .budget import ByteBudget
from .commit import Aside, Committer, TaskOutput
from .dispatch import Dispatcher, Queued
from .follow import EventSource, Follower
from .health import Health
from .lag import LagProbe
from .read import read_bytes, read_into, sha256, sha256_of_file
from .settle import Settler
from .sizing import BLOCKS, REFUSED, plan
from .stream import CHANGED, DEFERRED, StagingFailed, Streamed, Streamer
from .to_compute import Compute
from .watch import Watcher

log = logging.getLogger("ingest.service")

# Reads in flight at once: enough to hide per-open latency, few enough to keep fds modest.
READ_CONCURRENCY = 16
# How long the start-up scan waits for the watcher to be armed (a missing drop folder
# arms none until it is there).
ARM_WAIT_S = 5.0
ONCE_POLL_S = 0.02


@dataclass
class Summary:
    """What one run did, for the exit line and the exit code."""

    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    rows: int = 0
    started: float = field(default_factory=time.monotonic)
    lag_p99_ms: float = 0.0
    failed: str | None = None  # an internal task failed and stopped the service: why

    def line(self) -> str:
        o = self.outcomes
        return (
            f"ingested {o['ingested']} files ({self.rows} rows), {o['duplicate']} duplicates,"
            f" {o['quarantined']} quarantined, {o['skipped']} already known,"
            f" {o['vanished']} vanished, {o['deferred']} left for the next run"
            f" in {time.monotonic() - self.started:.1f}s"
            f" (loop lag p99 {self.lag_p99_ms:.1f} ms)"
        )


def open_ledger(layout: Layout) -> tuple[Ledger, Known]:
    """Called in a thread at start-up: open the ledger, repair, and load what it knows."""
    layout.make_dirs()
    if not layout.ledger.exists():
        existing = [
            p for t in layout.tables() for p in (layout.output / t).glob("ingest_date=*/*.parquet")
        ]
        if existing:
            raise LedgerError(
                f"{layout.ledger} is missing but {layout.output} holds {len(existing)} part files;"
                " refusing to ingest everything again. Restore the ledger, or run"
                " `ingest ledger rebuild` to rebuild it from the part files"
            )
    ledger = Ledger(layout.ledger)
    swept = shared.sweep(shared.prefix_for(layout.output))
    if swept:
        log.warning("start-up repair: %d shared memory segments of a stopped run removed", swept)
    try:
        reconcile(ledger, layout)
        adopt(ledger, layout)
        return ledger, ledger.known()
    except sqlite3.DatabaseError as exc:
        ledger.close()
        raise LedgerError(
            f"{layout.ledger}: the ledger is damaged ({exc}); run `ingest ledger rebuild`"
            " to rebuild it from the part files"
        ) from None


class Service:
    def __init__(
        self,
        config: Config,
        mode: str = "run",
        progress: Progress | None = None,
        early_signals: list[int] | None = None,
        events: EventSource | None = None,
    ):
        self.config = config
        self.mode = mode
        self.layout = Layout.of(config)
        self.progress = progress
        self.metrics = Metrics()
        self.summary = Summary()
        self.compute = Compute(
            config.pipeline.executor, config.workers, config.pipeline.task_timeout_s,
            plugins=config.features.plugins,
        )
        self.lag = LagProbe(self.metrics)
        self.health = Health(self.layout.state, self.metrics, self.lag)
        self._events = events  # what hears the drop folder's events; watchfiles' by default
        self.crash = CrashPlan.from_env()
        self.stop = asyncio.Event()
        self.draining = False
        self._held: dict[str, int] = {}  # rel -> bytes taken from the budget
        self._segments: dict[str, SharedMemory] = {}  # rel -> the shared memory holding it
        self._shm_prefix = shared.prefix_for(self.layout.output)
        self._upstream: set[str] = set()  # admitted, not yet handed to the committer
        self._claimed: dict[str, str] = {}  # sha256 -> rel of the file in flight with it
        self._waiting: dict[str, list[DropFile]] = collections.defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()
        self._early_signals = early_signals if early_signals is not None else []

    # ---- start and stop -------------------------------------------------

    async def serve(self) -> Summary:
        # First of all: a SIGTERM during start-up must still mean "drain and exit 0".
        self._install_signals()
        for signum in self._early_signals[:1]:
            self._on_signal(signum)
        self.ledger, self.known = await asyncio.to_thread(open_ledger, self.layout)
        pipeline = self.config.pipeline
        self.budget = ByteBudget(pipeline.memory_mb * 1024 * 1024)
        self.queue: asyncio.Queue[Queued] = asyncio.Queue(pipeline.queue_files)
        self.settler = Settler(self.config.watch.settle_ms, self.layout.relative, self._vanished)
        self.watcher = Watcher(self.layout.drop, self.config.watch, self.settler)
        self.follower = Follower(self.watcher, self.health.watching, self._events)
        self.committer = Committer(
            self.ledger, self.layout, self.config, self._resolved,
            lambda: not self._more_coming(), self.crash,
            schemas=Schemas(self.config, self.known.schemas, self.known.dialects),
            compactor=Compactor(
                self.layout, self.crash, self.config.output.target_file_mb * 1024 * 1024,
                self.config.output.compression,
            ) if self.mode == "run" else None,
        )
        self.dispatcher = Dispatcher(
            self.config, self.compute, self.queue, self.committer, self.metrics,
            self._more_coming, self._taken, self._backlog,
            lambda item: self._free_input(item.file.rel),
        )
        self._read_slots = asyncio.Semaphore(READ_CONCURRENCY)
        self._streams = asyncio.Semaphore(1)
        self.streamer = Streamer(
            self.config, self.layout, self.compute, self.budget, self.dispatcher, self.crash,
            lambda: self.draining,
        )
        if self.config.metrics.port:
            self.metrics.serve(
                self.config.metrics.port, self.config.metrics.host, health=self.health.problem
            )
        starting = self.compute.start_soon()
        try:
            self._spawn(self.lag.run(), self.settler.run(), self.committer.run(), self._intake())
            for _ in range(self.config.workers * 2):
                self._spawn(self.dispatcher.run())
            await self._ingest(starting)
        finally:
            await self._shutdown()
        return self.summary

    async def _ingest(self, starting: asyncio.Future[None]) -> None:
        if self.mode != "once":
            # Armed before the start-up scan, so that a file dropped meanwhile is heard
            # or found, not left to the next rescan.
            self._spawn(self.follower.run(self.stop))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.follower.armed.wait(), ARM_WAIT_S)
        found = await self.watcher.scan()
        log.info("%d files in %s at start-up", found, self.layout.drop)
        if self.progress is not None:
            self.progress.start(found)
        await starting  # a pool that cannot start is a failure to report, not to wait on
        if self.mode == "once":
            await self._until_idle()
        else:
            self._spawn(self.watcher.rescans())
            log.info("watching %s (Ctrl-C to stop)", self.layout.drop)
            await self.stop.wait()
        await self._drain()

    def _spawn(self, *coroutines: Coroutine[Any, Any, None]) -> None:
        for coroutine in coroutines:
            task = asyncio.create_task(coroutine)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("internal task failed; stopping", exc_info=exc)
            if self.summary.failed is None:
                self.summary.failed = f"{type(exc).__name__}: {exc}"
            self.stop.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set() or self.draining:
            # Safe at any instant: a commit is atomic through the ledger, like a kill -9.
            # Written directly: the log thread may not get to run again before _exit.
            print(
                f"ingest: {name} again: exiting now; uncommitted files will be read on restart",
                file=sys.stderr, flush=True,
            )
            for child in multiprocessing.active_children():
                child.kill()
            os._exit(128 + signum)
        log.info("%s: stopping intake and draining in-flight files (again to exit now)", name)
        self.stop.set()
        self.draining = True

    async def _until_idle(self) -> None:
        while not self.stop.is_set():
            if not len(self.settler) and not self.settler.busy and self.settler.ready.empty():
                return
            await asyncio.sleep(ONCE_POLL_S)

    async def _drain(self) -> None:
        self.draining = True
        deadline = time.monotonic() + self.config.pipeline.drain_s
        # After an internal failure, files held may never be resolved: none is waited for.
        while self._held and self.summary.failed is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._held:
            log.warning(
                "drain_s = %g passed with files still in flight: %d; they will be read on restart",
                self.config.pipeline.drain_s, len(self._held),
            )
        # Failing commits (a full disk) are retried until the same deadline, not forever.
        left = await self.committer.drain(deadline)
        if left:
            log.warning("%d files could not be committed before drain_s; left for the next run",
                        left)
            self.summary.outcomes["deferred"] += left

    async def _shutdown(self) -> None:
        abandoned = bool(self._held)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.health.close()
        await asyncio.to_thread(self.compute.shutdown, not abandoned)
        for segment in self._segments.values():  # files left for the next run
            shared.remove(segment)
        self.ledger.close()
        self.summary.lag_p99_ms = self.lag.quantile(0.99) * 1000
        if self.progress is not None:
            self.progress.stop()

    # ---- intake: settled file -> bytes in the queue ---------------------

    async def _intake(self) -> None:
        while True:
            file = await self.settler.ready.get()
            self.crash.fail_here("intake")
            if self.draining:
                self.settler.done(file.rel)
                continue
            await self._admit(file)

    async def _admit(self, file: DropFile) -> None:
        self._upstream.add(file.rel)
        state = self.known.keys.get(file.key)
        if state is not None:
            await self._finish_known(file, state)
            return
        try:
            how = await plan(self.config, file, self.budget.limit)
        except OSError as exc:
            await self._unreadable(file, exc)
            return
        if how.how == BLOCKS:
            self._held[file.rel] = 0  # its blocks take from the budget as they are read
            self._spawn(self._stream(file, how.in_memory))
            return
        if how.how == REFUSED:
            self._held[file.rel] = 0
            self._hand_over(file)
            self.committer.set_aside(
                Aside(file, "", "quarantined", failure=Failure("TooLarge", how.reason))
            )
            return
        # What the file becomes in memory, not its size on disk: a .csv.gz, an .npz.
        await self.budget.acquire(how.in_memory)
        self._held[file.rel] = how.in_memory
        self.metrics.bytes_held.set(self.budget.used)
        if self.draining:
            await self._defer(file)
            return
        # The read's task is made once it has a slot: a backlog of 20,000 small files is
        # then a few tasks at a time, not 20,000 waiting ones, which the garbage collector
        # walked over and over, holding the loop for up to 100 ms.
        await self._read_slots.acquire()
        if self.draining:
            self._read_slots.release()
            await self._defer(file)
            return
        self._spawn(self._read(file))

    async def _finish_known(self, file: DropFile, state: str) -> None:
        """A file the ledger already holds: finish its disposal if a crash cut it short."""
        on_success = self.config.watch.on_success
        if on_success != "keep":
            record = await self.committer.read_ledger(self.ledger.lookup, *file.key)
            if record is not None and state == "quarantined":
                failure = Failure(record.error or "Error", record.message or "")
                await asyncio.to_thread(
                    quarantine, self.layout, file, record.sha256, failure, record.attempts, False
                )
            elif record is not None:
                await asyncio.to_thread(after_success, self.layout, file, record.sha256, on_success)
        await self._resolved(file, "skipped", {"state": state})

    async def _read(self, file: DropFile) -> None:
        # The slot _admit took is held until the queue takes the file: when the queue is
        # full, reading stops, rather than holding up to memory_mb of files that wait for
        # a place in it.
        try:
            read = await self._fetch(file, whole=True)
            if read is not None and await self._claim(file, read[0]):
                digest, data = read
                segment = self._segments.get(file.rel)
                table = self.config.route(file.rel)
                in_memory = self._held.get(file.rel, file.size)
                job = (
                    Job(file.rel, digest, b"", shared=segment.name, table=table,
                        in_memory=in_memory)
                    if segment is not None
                    else Job(file.rel, digest, bytes(data), table=table, in_memory=in_memory)
                )
                await self.queue.put(Queued(file, job, in_memory))
                self.metrics.queued.set(self.queue.qsize())
        finally:
            self._read_slots.release()

    async def _fetch(self, file: DropFile, whole: bool) -> tuple[str, bytes | memoryview] | None:
        """The file's sha256, and its bytes if `whole` (else it is hashed in chunks);
        None once it is resolved as vanished, unreadable or changed. A large file for a
        local worker is read into shared memory, and its bytes are the segment's."""
        data: bytes | memoryview = b""
        try:
            if not whole:
                digest, length = await sha256_of_file(file.path)
            elif segment := await self._segment(file):
                data = shared.view(segment)
                length = await read_into(file.path, data)
            else:
                data = await read_bytes(file.path)
                length = len(data)
        except OSError as exc:
            await self._unreadable(file, exc)
            return None
        if length != file.size:
            await self._resolved(file, "changed", {})
            return None
        if whole:
            digest = await sha256(data)
        return digest, data

    async def _segment(self, file: DropFile) -> SharedMemory | None:
        """Shared memory to read a large file into, for a local worker; see _free_input."""
        if not self.compute.shares_disk or file.size < shared.SHARED_MIN_BYTES:
            return None
        segment = await asyncio.to_thread(shared.create, self._shm_prefix, file.size)
        if segment is not None:
            self._segments[file.rel] = segment
        return segment

    async def _unreadable(self, file: DropFile, exc: OSError) -> None:
        if isinstance(exc, FileNotFoundError):
            await self._resolved(file, "vanished", {})
        else:
            await self._resolved(file, "unreadable", {"reason": exc.strerror})

    async def _claim(self, file: DropFile, digest: str) -> bool:
        """True if the file is to be ingested: its bytes are neither known nor in flight."""
        original = self.known.ingested.get(digest)
        # The bookkeeping comes before any await: between the check and the append, the
        # file holding the claim could be resolved and leave this one waiting forever.
        if original is not None:
            self._hand_over(file)
            self.committer.set_aside(Aside(file, digest, "duplicate", duplicate_of=original))
            await self._release(file.rel)
            return False
        if digest in self._claimed:
            # Same bytes in flight under another name: decide once that one is resolved.
            self._hand_over(file)
            self._waiting[digest].append(file)
            await self._release(file.rel)
            return False
        self._claimed[digest] = file.rel
        return True

    async def _stream(self, file: DropFile, in_memory: int) -> None:
        """A file too big to hold: hashed in one pass, then read and processed in blocks.
        One at a time: each already keeps every worker busy."""
        async with self._streams:
            async with self._read_slots:
                read = await self._fetch(file, whole=False)
            if read is None or not await self._claim(file, read[0]):
                return
            self._hand_over(file)  # not on its way to the queue: batching need not wait for it
            digest = read[0]
            size = f"{file.size / 1e6:.1f} MB"
            if in_memory != file.size:
                size += f" on disk, over {in_memory / 1e6:.1f} MB once decompressed"
            log.info(
                "%s: %s, over a quarter of memory_mb: reading it in blocks of %.1f MB",
                file.rel, size, self.streamer.block_bytes / 1e6,
            )
            try:
                outcome = await self.streamer.ingest(file, digest)
            except StagingFailed as exc:
                log.error("%s: %s; it stays in the drop folder for a later run", file.rel, exc)
                outcome = DEFERRED
            except OSError as exc:
                self._unclaim(digest, file.rel)
                await self._unreadable(file, exc)
                return
            except Exception as exc:  # a bug, or a failure no one foresaw: this file's alone
                log.exception("%s: reading it in blocks failed", file.rel)
                outcome = Failure(type(exc).__name__, str(exc))
        if outcome == DEFERRED:
            self._unclaim(digest, file.rel)
            await self._defer(file)
        elif outcome == CHANGED:
            await self._resolved(file, "changed", {"sha256": digest})
        elif isinstance(outcome, Failure):
            self.committer.set_aside(Aside(file, digest, "quarantined", failure=outcome))
        elif isinstance(outcome, Streamed):
            log.debug("%s: %d rows in %d blocks, staged", file.rel, outcome.rows, outcome.blocks)
            accepted = Accepted(file, digest, outcome.rows, table=self.config.route(file.rel))
            self.committer.add(TaskOutput([accepted], outcome.parts))

    # ---- dispatch: the queue's other end -------------------------------

    async def _taken(self, item: Queued) -> bool:
        """A dispatcher took a file off the queue; False if it is to be let go (a drain)."""
        if self.draining:
            # Not yet in a worker: leave it for the next run rather than hold up the exit.
            self._unclaim(item.job.sha256, item.file.rel)
            await self._defer(item.file)
            return False
        self._hand_over(item.file)
        return True

    def _backlog(self) -> int:
        """Files on their way to the queue or in it, that no task holds yet."""
        return len(self._upstream) + len(self.settler) + self.settler.ready.qsize()

    def _more_coming(self) -> bool:
        """Whether a task being assembled should wait flush_s for more files."""
        if self.draining or self.budget.waiting:
            return False
        # `once` with nothing left upstream: no more files are coming for this task.
        return not (self.mode == "once" and not self._upstream and not len(self.settler)
                    and self.settler.ready.empty())

    # ---- resolution ------------------------------------------------------

    def _hand_over(self, file: DropFile) -> None:
        self._upstream.discard(file.rel)

    async def _defer(self, file: DropFile) -> None:
        """Let go of a file during a drain; it stays in the drop folder, unrecorded."""
        await self._release(file.rel)
        self._hand_over(file)
        self.settler.done(file.rel)
        self.summary.outcomes["deferred"] += 1
        log.debug("deferred %s to the next run", file.rel)

    async def _release(self, rel: str) -> None:
        self._free_input(rel)
        size = self._held.pop(rel, None)
        if size:
            await self.budget.release(size)
            self.metrics.bytes_held.set(self.budget.used)

    def _free_input(self, rel: str) -> None:
        """The file's shared memory, if any, is no longer needed: remove it in a thread.
        Called once its task's result is final, and again (a no-op) when it is resolved."""
        segment = self._segments.pop(rel, None)
        if segment is not None:
            self._spawn(asyncio.to_thread(shared.remove, segment))

    def _unclaim(self, digest: str, rel: str) -> None:
        """The file that held these bytes is done with: files waiting on them go again."""
        if self._claimed.get(digest) != rel:
            return
        del self._claimed[digest]
        for waiter in self._waiting.pop(digest, []):
            self.settler.done(waiter.rel)
            self._reoffer(waiter)

    async def _resolved(self, file: DropFile, event: str, fields: dict[str, object]) -> None:
        """Called on the loop once a file's fate is committed (or needs no commit)."""
        await self._release(file.rel)
        self._hand_over(file)
        digest = fields.get("sha256")
        if isinstance(digest, str):
            self._unclaim(digest, file.rel)
        if event in ("ingested", "duplicate", "quarantined"):
            self.known.keys[file.key] = event
            if event == "ingested" and isinstance(digest, str):
                self.known.ingested.setdefault(digest, file.rel)
        self.summary.outcomes[event] += 1
        rows = int(fields.get("rows", 0))  # type: ignore[call-overload]
        self.summary.rows += rows
        self.metrics.rows.inc(rows)
        self.metrics.files.labels(event).inc()
        latency_ms = (time.monotonic() - file.seen_mono) * 1000
        if event != "skipped":
            self.metrics.latency.observe(latency_ms / 1000)
            logs.outcome(event, file.rel, latency_ms=latency_ms, **fields)
        if self.progress is not None:
            self.progress.advance(event)
        again = self.settler.done(file.rel)
        if event == "changed" or again:
            self._reoffer(file)

    def _vanished(self, rel: str, seen_mono: float) -> None:
        """A file deleted before it settled: said once, never retried."""
        self.summary.outcomes["vanished"] += 1
        self.metrics.files.labels("vanished").inc()
        logs.outcome("vanished", rel, latency_ms=(time.monotonic() - seen_mono) * 1000)

    def _reoffer(self, file: DropFile) -> None:
        if self.draining:
            return
        st = regular_file(file.path, self.layout.drop)
        if st is not None:
            self.settler.offer(file.path, st)
