"""The service: owns the loop's tasks, the ledger and the one executor, and wires the parts.

    Watcher ─offer─> Settler ─ready─> Intake ─queue─> Dispatcher ─> Committer
                                    (intake.py)      (to_compute)   (commit.py)
            each file in flight, from the settler to its resolution: InFlight (inflight.py)

`serve()` is the whole life of the application: open the ledger and repair
what a crash left, start the executor, ingest the backlog, then either stop
(`once`) or follow the folder until a signal (`run`), drain, and shut down.
Everything here runs on the event loop; the ledger opens in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import signal
import sqlite3
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .. import logs, shared
from ..config import Config
from ..errors import ClusterLost, LedgerError, OutputLost
from ..files import DropFile
from ..folders import holds_anything
from ..metrics import Metrics
from ..stop_signals import stop_signals
from ..store.autocompact import Compactor
from ..store.crashpoints import CrashPlan
from ..store.delta_step import Unsettled
from ..store.known import Known
from ..store.layout import Layout
from ..store.ledger import Ledger
from ..store.parts import reconcile
from ..store.schema import Schemas, adopt
from .budget import ByteBudget
from .commit import Committer
from .dispatch import Dispatcher, Queued
from .follow import EventSource, Follower
from .health import Health
from .inflight import InFlight
from .intake import Intake
from .lag import LagProbe
from .outcomes import (
    IN_FLIGHT_AT_FAILURE,
    IN_FLIGHT_AT_STOP,
    UNCOMMITTED_AT_FAILURE,
    UNCOMMITTED_AT_STOP,
    Outcomes,
    Summary,
)
from .recall import Recall
from .settle import Settler
from .stream import Streamer
from .to_compute import Compute
from .waiting import wait_either
from .watch import Watcher

if TYPE_CHECKING:  # rich is imported only where a bar is shown: on a terminal
    from ..progress import Progress

log = logging.getLogger("ingest.service")

# How long the start-up scan waits for the watcher to be armed (a missing drop folder
# arms none until it is there).
ARM_WAIT_S = 5.0
ONCE_POLL_S = 0.02
# Allocations between the cycle collector's youngest passes while the service runs (700
# by default). A backlog keeps tens of thousands of objects alive for a second or so (the
# files settling, in flight and being told), and at 700 each was walked again and again:
# 7 µs of the main process's CPU a file on `tiny`, against 2. What waits for a pass
# is at most this many objects' worth of cycles, a megabyte or so.
GC_YOUNG_THRESHOLD = 10_000


def open_ledger(layout: Layout, known_files: int) -> tuple[Ledger, Known]:
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
        return ledger, ledger.known(known_files)
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
        self.metrics = Metrics(served=bool(config.metrics.port))
        self.summary = Summary()
        self.compute = Compute(
            config.pipeline.executor, config.workers, config.pipeline.task_timeout_s,
            plugins=config.features.plugins,
            shared_output=self.layout.tmp if config.pipeline.shared_output else None,
            on_breakage=self.metrics.breakages.inc,
        )
        self.lag = LagProbe(self.metrics)
        self.health = Health(self.layout.state, self.metrics, self.lag)
        self._events = events  # what hears the drop folder's events; watchfiles' by default
        self.crash = CrashPlan.from_env()
        self.stop = asyncio.Event()
        self.draining = False
        self._signalled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._early_signals = early_signals if early_signals is not None else []

    # ---- start and stop -------------------------------------------------

    async def serve(self) -> Summary:
        # First of all: a SIGTERM during start-up must still mean "drain and exit 0".
        self._install_signals()
        for signum in self._early_signals[:1]:
            self._on_signal(signum)
        thresholds = gc.get_threshold()
        gc.set_threshold(max(GC_YOUNG_THRESHOLD, thresholds[0]), *thresholds[1:])
        try:
            return await self._serve()
        finally:
            gc.set_threshold(*thresholds)

    async def _serve(self) -> Summary:
        self.ledger, self.known = await asyncio.to_thread(
            open_ledger, self.layout, self.config.pipeline.known_files
        )
        if not self.known.whole:
            log.info(
                "the ledger knows more inputs than known_files = %d: memory holds the newest,"
                " older ones are asked of the ledger", self.known.capacity,
            )
        self._assemble()
        if self.config.metrics.port:
            self.metrics.serve(
                self.config.metrics.port, self.config.metrics.host, health=self.health.problem
            )
        # `once` over an empty drop folder, a scheduled run's most common, has nothing to
        # compute: its workers start only if the scan finds a file after all.
        eager = self.mode != "once" or holds_anything(self.layout.drop)
        starting = self.compute.start_soon() if eager else None
        try:
            self._spawn(self.lag.run(), self.settler.run(), self.committer.run(), self.intake.run())
            for _ in range(self.config.workers * 2):
                self._spawn(self.dispatcher.run())
            await self._ingest(starting)
        finally:
            await self._shutdown()
        return self.summary

    def _assemble(self) -> None:
        """Make the parts, once the ledger is open, and wire them together."""
        config = self.config
        self.budget = ByteBudget(config.pipeline.memory_mb * 1024 * 1024)
        self.queue: asyncio.Queue[Queued] = asyncio.Queue(config.pipeline.queue_files)
        # Read when scraped, not set as they change: they change twice for every file.
        # Input bytes held by files in flight: not those of segments kept for reuse.
        self.metrics.bytes_held.set_function(lambda: self.budget.used - self.in_flight.idle.bytes)
        self.metrics.queued.set_function(self.queue.qsize)
        self.metrics.known.set_function(lambda: len(self.known.keys))
        self.outcomes = outcomes = Outcomes(
            self.summary, self.metrics, self.known, self.progress,
            keep=config.watch.on_success == "keep",
        )
        self.settler = Settler(
            config.watch.settle_ms, self.layout.relative, self._vanished,
            remember=config.pipeline.known_files if config.watch.on_success == "keep" else 0,
        )
        self.watcher = Watcher(self.layout.drop, config.watch, self.settler)
        self.follower = Follower(self.watcher, self.health.watching, self._events)
        # The committer is made next, and never replaced.
        self.recall = Recall(
            self.known, self.layout.ledger,
            lambda: self.committer.read_ledger(self.ledger.index_digests),
        )
        self.in_flight = InFlight(
            self.budget, self.settler, outcomes, self.metrics, self.layout.drop,
            self.mode == "once", self._is_draining, self._spawn, self.known, self.recall,
            lambda aside: self.committer.set_aside(aside),
        )
        self.committer = Committer(
            self.ledger, self.layout, config, self.in_flight.resolved_all,
            self.in_flight.nothing_coming, self.crash, self.in_flight.only_these_left,
            schemas=Schemas(config, self.known.schemas, self.known.dialects),
            compactor=Compactor(
                self.layout, self.crash, config.output.target_file_mb * 1024 * 1024,
                config.output.compression,
            ) if self.mode == "run" else None,
        )
        self.health.commits_failing = lambda: self.committer.failing
        self.dispatcher = Dispatcher(
            config, self.compute, self.queue, self.committer, self.in_flight
        )
        self.streamer = Streamer(
            config, self.layout, self.compute, self.budget, self.dispatcher, self.crash,
            self._is_draining, self.in_flight.idle,
        )
        self.intake = Intake(
            config, self.layout, self.known, self.recall, self.in_flight, self.queue,
            self.committer,
            self.streamer, self.crash, self._spawn, self.compute.shares_memory,
        )

    def _is_draining(self) -> bool:
        return self.draining

    def _vanished(self, file: DropFile) -> None:
        """The settler's report of a file gone before it settled: told now, and recorded
        with the committer's next flush, for `ingest explain`."""
        self.outcomes.vanished(file)
        self.committer.vanished(file)

    async def _ingest(self, starting: asyncio.Future[None] | None) -> None:
        if self.mode != "once":
            # Armed before the start-up scan, so that a file dropped meanwhile is heard
            # or found, not left to the next rescan.
            self._spawn(self.follower.run(self.stop))
            # A signal meanwhile ends the wait: a watcher is never armed once it came.
            await wait_either(self.follower.armed, self.stop, ARM_WAIT_S)
            if self.stop.is_set():
                await self._drain()
                self._count_left()
                return
        else:
            await self.follower.canary.remove()  # one a killed `ingest run` left behind
        found = await self.watcher.scan()
        log.info("%d files in %s at start-up", found, self.layout.drop)
        if self.progress is not None:
            self.progress.start(found)
        if starting is None and found:
            starting = self.compute.start_soon()
        if starting is not None:
            await starting  # a pool that cannot start is a failure to report, not to wait on
        if self.mode == "once":
            await self._until_idle()
            # Each stays in the drop folder, and a scheduler must hear of it, as of a file
            # that could not be read.
            self.summary.outcomes["unreadable"] += len(self.watcher.unread)
        else:
            self._spawn(self.watcher.rescans())
            log.info("watching %s (Ctrl-C to stop)", self.layout.drop)
            await self.stop.wait()
        await self._drain()
        self._count_left()

    def _count_left(self) -> None:
        """Files the settler still holds at the end (a signal, while they settled or waited
        to be admitted): never read, they stay in the drop folder, counted as left for the
        next run."""
        ready = self.settler.ready
        while not ready.empty():
            self.in_flight.defer_settled(ready.get_nowait())
        self.outcomes.deferred(*(file.rel for file in self.settler.leave_unsettled()))

    def _spawn(self, *coroutines: Coroutine[Any, Any, None]) -> None:
        for coroutine in coroutines:
            task = asyncio.create_task(coroutine)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            # Not ours: a cluster gone, a commit half in a Delta log (a full disk). A
            # restart may mend either; its line says why, without a traceback.
            known = isinstance(exc, ClusterLost | Unsettled | OutputLost)
            if not known:
                log.error("internal task failed; stopping", exc_info=exc)
            if self.summary.failed is None:  # the first to fail says why, once
                self.summary.failed = str(exc) if known else f"{type(exc).__name__}: {exc}"
                self.summary.internal = not known
            self.stop.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in stop_signals():
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set() or self.draining:
            # Safe at any instant: a commit is atomic through the ledger, like a kill -9.
            # The first signal, too, once `once` drains at its end or a failure stops it.
            when = "again" if self._signalled else "while stopping"
            for child in multiprocessing.active_children():
                child.kill()
            if hasattr(self, "committer"):  # their lines, before the process ends
                self.committer.tell_committed_now()
            logs.exit_now(
                f"ingest: {name} {when}: exiting now; uncommitted files will be read on restart",
                128 + signum,
            )
        self._signalled = True
        log.info("%s: stopping intake and draining in-flight files (again to exit now)", name)
        self.stop.set()
        self.draining = True

    async def _until_idle(self) -> None:
        """`once`: until every file found is resolved; or, once only files still changing
        are left (settling, or found changed and paused or looked at again), for
        once_unsettled_s (never less than twice settle_ms: a file must have been watched
        to be found changing): then the files not yet settled are left for the next run."""
        wait_s = max(self.config.watch.once_unsettled_s, 2 * self.settler.settle_s)
        only_changing_since: float | None = None
        while not self.stop.is_set():
            if not self.settler.ready.empty() or self.settler.busy_settled():
                only_changing_since = None
            elif not len(self.settler) and not self.settler.busy:
                return
            elif only_changing_since is None:
                only_changing_since = time.monotonic()
            # A file looked at again is let finish: found changed again, it waits here.
            elif time.monotonic() - only_changing_since >= wait_s and not self.settler.busy:
                self.outcomes.unsettled(self.settler.leave_unsettled(), wait_s)
                return
            await asyncio.sleep(ONCE_POLL_S)

    async def _drain(self) -> None:
        self.draining = True
        self.settler.close()
        deadline = time.monotonic() + self.config.pipeline.drain_s
        # After an internal failure, files held may never be resolved: none is waited for.
        while (self.in_flight.holding and self.summary.failed is None
               and time.monotonic() < deadline):
            await asyncio.sleep(0.01)
        failed = self.summary.failed is not None
        if self.in_flight.holding and failed:
            log.warning("stopping on a failure with files still in flight: %d; they will be"
                        " read on restart", self.in_flight.holding)
        elif self.in_flight.holding:
            log.warning(
                "drain_s = %g passed with files still in flight: %d; they will be read on restart",
                self.config.pipeline.drain_s, self.in_flight.holding,
            )
        # Failing commits (a full disk) are retried until the same deadline, not forever.
        left = await self.committer.drain(deadline)
        if left and failed:
            log.warning("%d files were not committed before the failure; left for the next run",
                        len(left))
            self.outcomes.deferred(*left, reason=UNCOMMITTED_AT_FAILURE)
        elif left:
            log.warning("%d files could not be committed before drain_s; left for the next run",
                        len(left))
            self.outcomes.deferred(*left, reason=UNCOMMITTED_AT_STOP)
        # Those no commit was tried for: each named, and counted with the rest left for the
        # next run. In a task still (or waiting for a file with the same bytes), or not yet
        # given to one (a ledger lookup, a read under way).
        uncommitted = set(left)
        unfinished = [(r, task) for r, task in self.in_flight.unfinished() if r not in uncommitted]
        in_task = IN_FLIGHT_AT_FAILURE if failed else IN_FLIGHT_AT_STOP
        self.outcomes.deferred(*(r for r, task in unfinished if task), reason=in_task)
        self.outcomes.deferred(*(r for r, task in unfinished if not task))

    async def _shutdown(self) -> None:
        abandoned = bool(self.in_flight.holding)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.health.close()
        await asyncio.to_thread(self.compute.shutdown, not abandoned)
        for segment in self.in_flight.segments():  # files left for the next run
            shared.remove(segment)
        with contextlib.suppress(sqlite3.Error):  # then the next start compares them again
            await asyncio.to_thread(self.ledger.keep_schemas_checked)
        await self.recall.close()
        self.ledger.close()
        self.summary.lag_p99_ms = self.lag.quantile(0.99) * 1000
        if self.progress is not None:
            self.progress.stop()
