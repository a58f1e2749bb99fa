"""The one door to the workers: the only caller of `loop.run_in_executor`.

    In-process (event loop)              |  Out-of-process (worker)
    await Compute.run(job) --------------+--> compute.task.process(job)
      BrokenProcessPool -> WorkerCrashed |      returns Outcome (data, never raises)
      timeout           -> TaskTimeout   |      reports pid and progress (ingest/beacon.py)
      pool stopped for another's hang    |
                        -> PoolStopped   |

`Compute` owns the application's single executor. It is made once at
start-up; after a worker dies it is replaced, once per breakage, however many
in-flight calls saw it break.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import secrets
import time
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from .. import beacon
from ..blocks import (
    Block,
    BlockResult,
    Blocks,
    Finish,
    Narrow,
    Scan,
    ScanResult,
    Selection,
    Spread,
    Window,
)
from ..compute import calls
from ..compute.calls import init_worker, process, warm
from ..errors import ClusterLost, ConfigError, PoolStopped, TaskTimeout, WorkerCrashed
from ..jobs import Task, TaskResult
from ..stop_signals import children_spared
from . import forkserver

log = logging.getLogger("ingest.compute")

A = TypeVar("A")
R = TypeVar("R")

# How long past task_timeout_s in one step (a file of a task) the parent waits before it
# kills the worker itself: the worker's own alarm stops Python code at task_timeout_s, so
# this is for code that signals cannot reach (C code stuck in a loop). Long enough that a
# loaded machine does not kill a worker about to stop on its own; short next to the limit.
BACKSTOP_GRACE_S = 5.0
# How often a call on a dask cluster looks at whether its client is still connected.
CLUSTER_LOOK_S = 1.0
POOL_START_ATTEMPTS = 5
POOL_START_BACKOFF_S = 0.05
WARM_TIMEOUT_S = 60.0
# A hash pass may take task_timeout_s for each of these many bytes: even a slow disk
# reads them well within it, and a file of any size is hashed in one call.
HASHED_PER_TIMEOUT = 256 << 20
# How long `shared_output`'s start-up check waits for a first dask worker to ask.
WORKER_WAIT_S = 60.0


def _process_pool(workers: int, plugins: bool) -> ProcessPoolExecutor:
    """Blocking (it starts every worker): call it from a thread."""
    context = forkserver.context()
    for attempt in range(1, POOL_START_ATTEMPTS + 1):
        forkserver.start()
        pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=init_worker,
            initargs=(os.getpid(), plugins),
        )
        try:
            _start_every_worker(pool, workers)
            for future in [pool.submit(warm) for _ in range(workers)]:
                future.result(timeout=WARM_TIMEOUT_S)  # TimeoutError is an OSError
        except (BrokenProcessPool, OSError):
            # A worker killed while it starts (an OOM kill, an operator): try a fresh pool.
            # (A submit racing the pool's breakdown can see its wake-up pipe closed.)
            log.warning("a worker died while the pool started (attempt %d)", attempt)
            pool.shutdown(wait=False, cancel_futures=True)
            for child in multiprocessing.active_children():
                child.kill()
            # A fork request cut short can take the forkserver down with it (Python 3.11 does
            # not catch the EOFError); it is started again only once it has exited, so give
            # it the time to, rather than fail every attempt in the same few milliseconds.
            time.sleep(POOL_START_BACKOFF_S * 2**attempt)
            continue
        return pool
    raise WorkerCrashed(f"the process pool could not start in {POOL_START_ATTEMPTS} attempts")


def _start_every_worker(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start the pool's workers before its first submit starts its manager thread.

    With forkserver, Python 3.11 starts a worker per submit, from the submitting thread.
    If a worker dies meanwhile, the manager thread walks the dict of workers while a
    submit adds to it, dies of "dictionary changed size during iteration", and the pool's
    futures never complete. Started here, there is nothing left to add.
    """
    adjust = getattr(pool, "_adjust_process_count", None)
    if adjust is None:
        return  # another Python: workers start as they are needed
    for _ in range(workers):
        adjust()


def _dask_executor(
    address: str, workers: int, plugins: bool, shared_output: Path | None
) -> tuple[Executor, Any]:
    try:
        from distributed import Client, LocalCluster

        from ..compute.on_cluster import Tuned
    except ImportError:
        raise ConfigError(
            f'[pipeline] executor = "dask://{address}" needs the dask extra:'
            " pip install 'ingest[dask]'"
        ) from None
    # distributed installs its own INFO-level handler on import; its warnings still show.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    # A file's bytes sent to a cluster's worker are a "large graph" to the client, which
    # says so in plain text on stderr for each (a JSON log then holds lines that are not).
    warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
    if address == "local":
        # No dashboard; the scheduler still serves its HTTP routes (metrics), by default on
        # port 8787, and moves with a warning where another cluster holds that: any free port.
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},
        )
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout=10)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterLost(
                f'[pipeline] executor = "dask://{address}": no scheduler answers there ({exc})'
            ) from None
    try:
        client.register_plugin(Tuned(plugins))
        if shared_output is not None:
            _check_workers_see(client, shared_output)
    except BaseException:
        client.close()
        raise
    return client.get_executor(pure=False), client


def _check_workers_see(client: Any, folder: Path) -> None:
    """Raise ConfigError unless every worker connected reads a file just written to
    `folder`, at the service's path, and writes one there that this process reads
    (`[pipeline] shared_output`). Waits for a first worker, if none has connected yet."""
    from ..compute.on_cluster import answer_probe

    output = folder.parent.parent  # `folder` is its `_ingest/tmp`
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ConfigError(
            f"[pipeline] shared_output = true: no dask worker connected within"
            f" {WORKER_WAIT_S:g} s to check that the workers see {output}"
        ) from None
    token = secrets.token_hex(8)
    probe = folder / f"probe-{token}"
    probe.write_text(token, encoding="utf-8")
    try:
        answers: dict[str, str | None] = client.run(answer_probe, str(probe))
    finally:
        probe.unlink(missing_ok=True)
    blind = sorted(
        worker for worker, answer in answers.items() if not _read_back(answer, probe, token)
    )
    if blind:
        raise ConfigError(
            f"[pipeline] shared_output = true, but dask {_plural(len(blind), 'worker')}"
            f" {', '.join(blind)} {'does' if len(blind) == 1 else 'do'} not see"
            f" {output} at that path: mount it there, or set"
            " shared_output = false"
        )


def _read_back(answer: str | None, probe: Path, token: str) -> bool:
    """Whether a worker's answer to the probe is here, beside it, with the token in it;
    the answer is removed."""
    if answer is None or not answer.startswith(f"{probe}-"):
        return False
    path = Path(answer)
    try:
        return path.read_text(encoding="utf-8") == token
    except (OSError, UnicodeDecodeError):
        return False
    finally:
        path.unlink(missing_ok=True)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


class Compute:
    """The application's executor, and the calls made through it."""

    def __init__(
        self, executor: str, workers: int, timeout_s: float, plugins: bool = False,
        shared_output: Path | None = None, on_breakage: Callable[[], None] = lambda: None,
    ):
        self.spec = executor
        self.workers = workers
        self.timeout_s = timeout_s
        self.plugins = plugins  # feature sets beyond the built-in ones
        # With `[pipeline] shared_output`: the folder where a cluster's workers stage parts.
        self._shared_output = shared_output
        self.breakages = 0
        # Told once per pool replaced (however many calls it failed), and per dask task
        # whose workers died: `ingest_pool_breakages_total`.
        self._on_breakage = on_breakage
        self._executor: Executor | None = None
        self._client: Any = None
        self._replacing = asyncio.Lock()
        self._starting: asyncio.Future[None] | None = None
        # Pools broken on purpose, to stop a hung call: the other calls they held are not
        # charged a crash.
        self._stopped: weakref.WeakSet[Executor] = weakref.WeakSet()

    @property
    def shares_memory(self) -> bool:
        """Whether the workers can attach to this machine's shared memory: the local pool's."""
        return self.spec == "process"

    @property
    def sees_output(self) -> bool:
        """Whether the workers see the output folder at the service's path, and so write
        their part files there themselves: the local pool's, a `dask://local` cluster's,
        and a cluster's said to by `[pipeline] shared_output`."""
        return self.spec in ("process", "dask://local") or self._shared_output is not None

    def start_soon(self) -> asyncio.Future[None]:
        """Start the executor in a thread; calls wait for it. Workers take a few hundred ms
        to import numpy and pyarrow, time the service spends scanning and reading instead."""
        self._starting = asyncio.ensure_future(asyncio.to_thread(self.start))
        return self._starting

    def start(self) -> None:
        """Called once, at start-up, in the main process, from a thread (it blocks)."""
        started = time.monotonic()
        with children_spared():  # a `dask://local` cluster's processes, the pool's too
            if self.spec == "process":
                self._executor = _process_pool(self.workers, self.plugins)
            else:
                self._executor, self._client = _dask_executor(
                    self.spec.removeprefix("dask://"), self.workers, self.plugins,
                    self._shared_output,
                )
        log.debug("%d workers ready (%s) in %.2fs", self.workers, self.spec,
                  time.monotonic() - started)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the executor. `wait=False` abandons running tasks: their workers are killed,
        since a worker stuck in a file would otherwise outlive the service."""
        if not wait:
            for child in multiprocessing.active_children():
                child.kill()
        if isinstance(self._executor, ProcessPoolExecutor):
            self._executor.shutdown(wait=wait, cancel_futures=True)
        # dask's ClientExecutor takes no cancel_futures. A closed client can cancel
        # nothing, and its futures never end: there is nothing to shut down but it.
        elif self._executor is not None and self._client.status == "running":
            self._executor.shutdown(wait=wait)
        self._executor = None
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _replace(self, broken: Executor) -> None:
        async with self._replacing:
            # Every in-flight call sees the same breakage; only the first replaces the pool.
            # A dask cluster replaces its own workers.
            if self._executor is not broken or not isinstance(broken, ProcessPoolExecutor):
                return
            self.breakages += 1
            self._on_breakage()
            log.warning("a worker died; replacing the process pool (breakage %d)", self.breakages)
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = await asyncio.to_thread(_process_pool, self.workers, self.plugins)

    async def _stop_worker(self, executor: Executor, pid: int | None) -> None:
        """Kill the worker stuck in a call: the only way to stop C code. Only that worker, if
        it said which it is (see ingest/beacon.py); else every one. A process pool breaks
        when any worker dies, and fails every call it held: those become PoolStopped."""
        self._stopped.add(executor)
        children = multiprocessing.active_children()
        if not any(child.pid == pid for child in children):
            pid = None  # not known, or not one of ours
        for child in children:
            if pid is None or child.pid == pid:
                child.kill()
        if isinstance(executor, ProcessPoolExecutor):
            with contextlib.suppress(BrokenProcessPool):
                await self._replace(executor)

    async def run(self, task: Task) -> TaskResult:
        """Run `process(task)` in a worker. Raises WorkerCrashed, TaskTimeout or PoolStopped."""
        return await self.call(process, task, _describe(task), len(task.jobs), task.beacon)

    async def sha256_of(self, path: str | Path, size: int) -> tuple[str, int]:
        """A file's sha256 and length, read and hashed by a worker (one that sees the
        file). Raises OSError if it cannot be read; its timeout grows with the file."""
        per_timeout = 1 + size // HASHED_PER_TIMEOUT
        name = os.path.basename(path)
        return await self.call(
            calls.sha256_of_path, str(path), f"the hash pass of {name}", per_timeout
        )

    # A streamed file's steps (see compute/stream.py), each one call through the same door.

    async def windows(self, spread: Spread) -> tuple[Window, ...]:
        return await self.call(
            calls.spread_windows, spread, f"where the quantiles of {spread.source_file} lie"
        )

    async def block(self, block: Block) -> BlockResult:
        return await self.call(
            calls.process_block, block, f"block {block.index} of {block.source_file}"
        )

    async def unify(
        self, schemas: tuple[bytes, ...], what: str
    ) -> tuple[bytes, tuple[int, ...], str]:
        return await self.call(calls.unify, schemas, what)

    async def select(
        self, partials: Blocks, schema: bytes, collect_limit: int, what: str
    ) -> Selection:
        return await self.call(calls.select, (partials, schema, collect_limit), what)

    async def scan(self, scan: Scan, what: str) -> ScanResult:
        return await self.call(calls.scan, scan, what)

    async def narrow(self, narrow: Narrow, what: str) -> Selection:
        return await self.call(calls.narrow, narrow, what)

    async def finish(self, finish: Finish) -> bytes:
        return await self.call(calls.finish, finish, f"the features of {finish.source_file}")

    async def _submit(
        self, function: Callable[[A], R], arg: A
    ) -> tuple[Executor, asyncio.Future[R]]:
        """Hand a call to the executor. A pool being replaced takes no new work: the call
        waits for the new one. A pool that refuses it broke before the call reached it, so
        nothing of it ran: the pool is replaced and the call handed over again, uncharged."""
        # Not started: `once` found its drop folder empty, and then a file after all.
        await (self._starting or self.start_soon())
        loop = asyncio.get_running_loop()
        while True:
            async with self._replacing:
                executor = self._executor
            if executor is None:
                raise RuntimeError("Compute.start() was not called")
            try:
                return executor, loop.run_in_executor(executor, function, arg)
            except Exception as exc:
                self._check_cluster(exc)
                if not isinstance(exc, (BrokenProcessPool, OSError)):
                    raise
                # OSError: a submit that races the pool's breakdown finds its pipes closed.
                await self._replace(executor)
                if self._executor is executor:
                    raise WorkerCrashed("the executor refused work and was not replaced") from None

    async def call(
        self, function: Callable[[A], R], arg: A, what: str, files: int = 1,
        beacon_path: str | None = None,
    ) -> R:
        """Run `function(arg)` in a worker: a top-level function of `ingest.compute`, on plain
        data. Raises WorkerCrashed, TaskTimeout or PoolStopped; `what` names the work in
        their messages. `beacon_path`: where the worker reports its progress, if it does."""
        executor, future = await self._submit(function, arg)
        try:
            return await self._backstop(executor, future, what, files, beacon_path)
        except (BrokenProcessPool, OSError) as exc:
            if _raised_in_worker(exc):
                raise  # the function's own error (pyarrow reports some as OSError), not a crash
            # OSError: a submit that races the pool's breakdown finds its pipes closed.
            await self._replace(executor)
            if executor in self._stopped:
                raise PoolStopped(f"{what} was lost with a pool stopped for a hung task") from exc
            raise WorkerCrashed(f"a worker died while it held {what}") from exc
        except Exception as exc:
            # dask reports a task whose workers kept dying as KilledWorker.
            if type(exc).__name__ == "KilledWorker":
                self._on_breakage()
                raise WorkerCrashed(f"dask workers died while they held {what}") from exc
            self._check_cluster(exc)
            raise

    def _check_cluster(self, exc: BaseException | None = None) -> None:
        """Raise ClusterLost if the dask client has closed: its scheduler did not answer
        for its reconnection's timeout. Every call then fails, none for its file's sake."""
        client = self._client
        closed = type(exc).__name__ == "ClosedClientError" or (
            client is not None and client.status in ("closing", "closed")
        )
        if closed:
            raise ClusterLost(
                f'the dask scheduler of [pipeline] executor = "{self.spec}" is gone (the'
                " client closed: it did not answer); stopping, files not committed stay in the"
                " drop folder for the next run"
            ) from None

    async def _backstop(
        self, executor: Executor, future: asyncio.Future[R], what: str, files: int,
        beacon_path: str | None,
    ) -> R:
        """The call's result. A worker stuck for task_timeout_s plus BACKSTOP_GRACE_S in one
        step of a call that reports its steps, or in `files` times task_timeout_s of one that
        does not, is killed, and TaskTimeout raised. A call not yet started is not stuck."""
        limit = self.timeout_s + BACKSTOP_GRACE_S
        wait = limit if beacon_path is not None else self.timeout_s * files + BACKSTOP_GRACE_S
        pid = None
        while True:
            # A cluster's call wakes to look at its client: a scheduler gone closes it,
            # and the call's future is then never resolved.
            step = min(wait, CLUSTER_LOOK_S) if self._client is not None else wait
            try:
                done, _ = await asyncio.wait({future}, timeout=step)
            except asyncio.CancelledError:
                future.cancel()  # as wait_for would: nothing is left to take its result
                raise
            if done:
                try:
                    return future.result()
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # this call's own task is cancelled
                # Cancelled by the executor: a pool replaced after a hung call cancels the
                # calls it had not begun; a dask client that lost its scheduler cancels
                # every future it has, then tries to reconnect for a while. Either way the
                # call runs again, uncharged, unless the client has closed since.
                if self._client is None:
                    raise PoolStopped(f"{what} was lost with a pool stopped for a hung task")
                await asyncio.sleep(CLUSTER_LOOK_S)
                self._check_cluster()
                raise PoolStopped(f"the dask scheduler's connection dropped, and {what} with it")
            if self._client is not None:
                self._check_cluster()
                wait -= step
                if wait > 0:
                    continue
            if beacon_path is None:
                break
            pid, idle = await asyncio.to_thread(beacon.read, beacon_path)
            if pid is not None and idle >= limit:
                break
            wait = limit - idle  # at work on a step, or waiting behind other calls
        future.cancel()  # its worker is about to die: what it would say is not wanted
        if self._client is not None and self.spec != "dask://local":
            # No worker of a remote cluster is this process's to kill: the task is given
            # up on. (`dask://local`'s are its children, killed as the pool's are.)
            raise TaskTimeout(
                f"{what} took longer than task_timeout_s = {self.timeout_s:g} on the dask"
                " cluster, waiting or running, and was cancelled there"
            )
        await self._stop_worker(executor, pid)
        raise TaskTimeout(
            f"{what} took longer than task_timeout_s = {self.timeout_s:g}"
            " and its worker did not stop; the worker was killed"
        )


def _raised_in_worker(exc: BaseException) -> bool:
    """Whether the function raised `exc` in its worker, rather than the executor, about a
    worker lost. concurrent.futures chains the function's exception to its remote
    traceback; dask raises it with the worker's traceback, whose frames run through
    `calls`, the workers' entry points (its own lost connections are OSErrors too)."""
    if type(exc.__cause__).__name__ == "_RemoteTraceback":
        return True
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == calls.__name__:
            return True
        tb = tb.tb_next
    return False


def _describe(task: Task) -> str:
    first = task.jobs[0].source_file
    return first if len(task.jobs) == 1 else f"{first} and {len(task.jobs) - 1} other files"
