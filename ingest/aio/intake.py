"""The intake: a settled file becomes a job in the queue, or a stream of blocks.

    settler.ready -> admit -> plan (sizing) -> whole:   budget -> read -> queue
                                                        (files under GROUP_READ_BYTES read
                                                        many to a hop; each hashed by its
                                                        worker, claimed when its result
                                                        comes back)
                                               paths:   budget -> queue (send = "paths", and
                                                        local workers' default: the worker
                                                        reads the file, checks its size
                                                        and hashes it)
                                               blocks:  hash -> claim -> Streamer -> committer
                                               refused: committer (quarantined as TooLarge)
    a file the ledger holds, or the same bytes as one: resolved or set aside, never read twice

Runs on the event loop: reads go through aiofiles, hashing and shared memory to threads.
What each file holds meanwhile is kept, and let go of, by `inflight.InFlight`.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Awaitable
from multiprocessing.shared_memory import SharedMemory

from .. import shared
from ..blocks import Window
from ..config import Config
from ..errors import ClusterLost
from ..files import DropFile
from ..jobs import Failure, Job
from ..logs import shown
from ..regular import BEING_WRITTEN, BeingWritten
from ..shared import SHARED_MIN_BYTES
from ..store.crashpoints import CrashPlan
from ..store.dispose import after_success, quarantine
from ..store.known import Key, Known
from ..store.layout import Layout
from ..store.parts import Accepted
from .commit import Aside, Committer, TaskOutput
from .dispatch import Queued
from .inflight import InFlight, Spawn
from .read import read_bytes, read_files, read_into_segment
from .recall import Recall
from .sizing import BLOCKS, REFUSED, plain_plan, plan
from .stream import CHANGED, DEFERRED, StagingFailed, Streamed, Streamer

# The intake's lines keep the logger name they have always had: filters on it still match.
log = logging.getLogger("ingest.service")

# Reads in flight at once: enough to hide per-open latency, few enough to keep fds modest.
READ_CONCURRENCY = 16
# Files smaller than this are read in groups of up to GROUP_FILES or GROUP_BYTES, one hop
# per group; a group of SHARED_MIN_BYTES or more, for local workers, into one shared
# segment. A file of this size or more has a segment of its own. Read alone, a file under
# it took three hops and its bytes were pickled into the pool's pipe: 3.2 ms of the main
# process's CPU per MB of `jsonl`'s 320 KB files.
GROUP_READ_BYTES = SHARED_MIN_BYTES
GROUP_FILES = 64
GROUP_BYTES = 16 << 20
# Files settled behind one that memory holds no answer for, asked of the ledger with it.
RECALL_AHEAD = 255
# Files admitted between returns to the event loop: a queue of settled files is otherwise
# admitted in one step, 256 of them in 5 to 20 ms.
ADMIT_BATCH = 64


class Intake:
    def __init__(
        self,
        config: Config,
        layout: Layout,
        known: Known,
        recall: Recall,
        in_flight: InFlight,
        queue: asyncio.Queue[Queued],
        committer: Committer,
        streamer: Streamer,
        crash: CrashPlan,
        spawn: Spawn,
        shares_memory: bool,
    ):
        self.config = config
        self.layout = layout
        self.known = known
        self.recall = recall
        # The ledger's answers for files settled and not yet admitted (None: unknown to it).
        self._recalled: dict[Key, str | None] = {}
        self.in_flight = in_flight
        self.queue = queue
        self.committer = committer
        self.streamer = streamer
        self.crash = crash
        self._spawn = spawn
        self._shares_memory = shares_memory  # workers read shared memory: local ones
        self._send_paths = config.pipeline.sends_paths  # workers read the files themselves
        self._check_mtime = config.pipeline.local_workers
        self._shm_prefix = shared.prefix_for(layout.output)
        self._read_slots = asyncio.Semaphore(READ_CONCURRENCY)
        self._streams = asyncio.Semaphore(1)
        self._grouped: collections.deque[tuple[DropFile, int]] = collections.deque()
        self._group_reading = False  # a task is reading them: the one that empties the deque

    async def run(self) -> None:
        """Forever: admit each settled file, one at a time (the budget holds the next back)."""
        settler = self.in_flight.settler
        ready = settler.ready
        for count in itertools.count(1):
            try:  # a backlog's files are there: no coroutine for each
                file = ready.get_nowait()
            except asyncio.QueueEmpty:
                file = await ready.get()
            self.crash.fail_here("intake")
            if self.in_flight.draining():
                self.in_flight.defer_settled(file)
                self._recalled.pop(file.key, None)
                continue
            await self._admit(file)
            if count % ADMIT_BATCH == 0:
                await asyncio.sleep(0)

    async def _admit(self, file: DropFile) -> None:
        self.in_flight.admit(file)
        state = self.known.keys.get(file.key)
        if not self.known.whole:
            state = await self._recall(file, state)
        if state is not None:
            await self._finish_known(file, state)
            return
        # Most files are planned, charged and queued with no await: a coroutine each costs
        # the loop more than the step it waits for, which nearly always is done at once.
        limit = self.in_flight.budget.limit
        try:
            how = plain_plan(file, limit) or await plan(self.config, file, limit)
        except OSError as exc:
            await self._unreadable(file, exc)
            return
        if how.how == BLOCKS:
            self.in_flight.hold(file.rel, 0)  # its blocks take from the budget as they are read
            self._spawn(self._stream(file, how.in_memory))
            return
        if how.how == REFUSED:
            self.in_flight.hold(file.rel, 0)
            self.in_flight.hand_over(file.rel)
            self.committer.set_aside(
                Aside(file, "", "quarantined", failure=Failure("TooLarge", how.reason))
            )
            return
        # What the file becomes in memory, not its size on disk: a .csv.gz, an .npz.
        if not self.in_flight.charge_now(file.rel, how.in_memory):
            await self.in_flight.charge(file.rel, how.in_memory)
        if self.in_flight.draining():
            self.in_flight.defer(file)
            return
        if self._send_paths:
            queued = self._path_queued(file, how.in_memory)
            try:
                self.queue.put_nowait(queued)
            except asyncio.QueueFull:
                await self.queue.put(queued)
            return
        if file.size < GROUP_READ_BYTES:
            self._grouped.append((file, how.in_memory))
            if not self._group_reading:
                self._group_reading = True
                self._spawn(self._read_groups())
            return
        # The read's task is made once it has a slot: a backlog of 20,000 small files is
        # then a few tasks at a time, not 20,000 waiting ones, which the garbage collector
        # walked over and over, holding the loop for up to 100 ms.
        await self._read_slots.acquire()
        if self.in_flight.draining():
            self._read_slots.release()
            self.in_flight.defer(file)
            return
        self._spawn(self._read(file, how.in_memory))

    async def _recall(self, file: DropFile, held: str | None) -> str | None:
        """The file's state: `held`, memory's, or else the ledger's, asked together with
        the files settled behind it, whose answers wait here for their turn."""
        if held is None and file.key not in self._recalled:
            behind = self.in_flight.settler.ready.upcoming(RECALL_AHEAD)
            keys = [file.key, *(
                f.key for f in behind if f.key not in self.known.keys
                and f.key not in self._recalled
            )]
            found = await self.recall.states(keys)
            self._recalled.update((key, found.get(key)) for key in keys)
        recalled = self._recalled.pop(file.key, None)
        return held if held is not None else recalled

    async def _finish_known(self, file: DropFile, state: str) -> None:
        """A file the ledger already holds: finish its disposal if a crash cut it short."""
        on_success = self.config.watch.on_success
        if on_success != "keep":
            record = await self.committer.read_ledger(self.committer.ledger.lookup, *file.key)
            if record is not None and state == "quarantined":
                failure = Failure(record.error or "Error", record.message or "")
                await asyncio.to_thread(
                    quarantine, self.layout, file, record.sha256, failure, record.attempts, False
                )
            elif record is not None:
                await asyncio.to_thread(after_success, self.layout, file, record.sha256, on_success)
        elif self.in_flight.settler.found_again(file.rel):
            # Kept, found by a rescan, asked of the ledger again: said once, not per rescan.
            log.debug("skipped %s again: state=%s", shown(file.rel), state)
            self.in_flight.finish(file, None, stays=True)
            return
        self.in_flight.resolved(file, "skipped", {"state": state})

    async def _read(self, file: DropFile, in_memory: int) -> None:
        # The slot _admit took is held until the queue takes the file: when the queue is
        # full, reading stops, rather than holding up to memory_mb of files that wait for
        # a place in it.
        try:
            data: bytes | OSError
            try:
                if placed := await self._segment(file):
                    segment, fresh = placed
                    [got] = await read_into_segment([file.path], segment, [file.size], fresh)
                    data, length = (got, 0) if isinstance(got, OSError) else (b"", got)
                else:
                    data = await read_bytes(file.path)
                    length = len(data)
            except OSError as exc:
                data, length = exc, 0
            await self._queue(file, in_memory, data, length)
        finally:
            self._read_slots.release()

    async def _read_groups(self) -> None:
        """Read the small files admitted meanwhile, many in one hop to aiofiles' thread:
        three hops a file (open, read, close) cost the loop more than reading it does."""
        try:
            while self._grouped:
                group: list[tuple[DropFile, int]] = []
                size = 0
                while self._grouped and len(group) < GROUP_FILES and size < GROUP_BYTES:
                    group.append(self._grouped.popleft())
                    size += group[-1][0].size
                async with self._read_slots:
                    if self.in_flight.draining():
                        for file, _ in group:
                            self.in_flight.defer(file)
                        continue
                    if self._shares_memory and sum(f.size for f, _ in group) >= SHARED_MIN_BYTES:
                        await self._read_group_shared(group)
                    else:
                        await self._read_group_piped(group)
        finally:
            self._group_reading = False

    async def _read_group_piped(self, group: list[tuple[DropFile, int]]) -> None:
        """A group whose bytes go to the workers in their tasks, through the pool's pipe."""
        read = await read_files([file.path for file, _ in group], [f.size for f, _ in group])
        for (file, in_memory), data in zip(group, read, strict=True):
            length = 0 if isinstance(data, OSError) else len(data)
            await self._queue(file, in_memory, data, length)

    async def _read_group_shared(self, group: list[tuple[DropFile, int]]) -> None:
        """A group for local workers, read into one shared segment: only its name and
        each file's place in it cross the pool's pipe, not the bytes, which the pickling
        would copy twice more in this process."""
        sizes = [file.size for file, _ in group]
        placed = await self._new_segment(sum(sizes))
        if placed is None:  # /dev/shm is full: the bytes take the pipe
            await self._read_group_piped(group)
            return
        segment, fresh = placed
        for file, _ in group:
            self.in_flight.keep_segment(file.rel, segment)
        paths = [file.path for file, _ in group]
        lengths = await read_into_segment(paths, segment, sizes, fresh)
        offset = 0
        for (file, in_memory), got in zip(group, lengths, strict=True):
            if isinstance(got, OSError):
                await self._queue(file, in_memory, got, 0)
            else:
                await self._queue(file, in_memory, b"", got, offset)
            offset += file.size

    async def _queue(
        self, file: DropFile, in_memory: int, data: bytes | memoryview | OSError, length: int,
        offset: int = 0,
    ) -> None:
        """Put a file that was read on the queue; else resolve it as vanished, unreadable
        or changed. Its sha256 is the worker's to compute, and its claim on those bytes
        is taken when the result comes back (dispatch): no byte is hashed here."""
        if isinstance(data, OSError):
            await self._unreadable(file, data)
            return
        if length != file.size:
            self.in_flight.resolved(file, "changed", {"reason": _not_as_settled(length, file)})
            return
        segment = self.in_flight.segment(file.rel)
        table = self.config.route(file.rel)
        job = (
            Job(file.rel, "", b"", shared=segment.name, table=table, in_memory=in_memory,
                size=file.size, offset=offset)
            if segment is not None
            else Job(file.rel, "", bytes(data), table=table, in_memory=in_memory)
        )
        await self.queue.put(Queued(file, job, in_memory))

    def _path_queued(self, file: DropFile, in_memory: int) -> Queued:
        """send = "paths" (local workers' default): the file's path and the size it settled
        at, to be queued. The worker reads it, checks the size and hashes it: nothing of it
        is read here."""
        job = path_job(file, self.config.route(file.rel), in_memory, self._check_mtime)
        return Queued(file, job, in_memory)

    async def _digest(self, file: DropFile) -> str | None:
        """The sha256 of a file too big to hold, read in chunks; None once it is resolved
        as vanished, unreadable or changed."""
        try:
            workers_see_it = self._shares_memory or self._send_paths
            digest, length = await self.streamer.hash_pass(file, workers_see_it)
        except OSError as exc:
            await self._unreadable(file, exc)
            return None
        if length != file.size:
            self.in_flight.resolved(file, "changed", {"reason": _not_as_settled(length, file)})
            return None
        return digest

    async def _segment(self, file: DropFile) -> tuple[SharedMemory, bool] | None:
        """Shared memory to read a large file into, for a local worker, and whether it is
        new; freed by InFlight."""
        if not self._shares_memory or file.size < shared.SHARED_MIN_BYTES:
            return None
        placed = await self._new_segment(file.size)
        if placed is not None:
            self.in_flight.keep_segment(file.rel, placed[0])
        return placed

    async def _new_segment(self, size: int) -> tuple[SharedMemory, bool] | None:
        """A kept segment that fits, or a new one (True); None if /dev/shm is full."""
        kept = self.in_flight.idle.take(size)
        if kept is not None:
            return kept, False
        segment = await asyncio.to_thread(shared.create, self._shm_prefix, size)
        return None if segment is None else (segment, True)

    async def _unreadable(self, file: DropFile, exc: OSError, digest: str = "") -> None:
        if isinstance(exc, BeingWritten):  # a writer's pause outlasted settle_ms
            fields: dict[str, object] = {"sha256": digest} if digest else {}
            fields["reason"] = f"{BEING_WRITTEN}, though it settled"
            self.in_flight.resolved(file, "changed", fields)
        elif isinstance(exc, FileNotFoundError):
            self.committer.vanished(file, digest)  # a fact for `ingest explain`
            self.in_flight.resolved(file, "vanished", {"reason": "it was gone when it was read"})
        else:
            self.in_flight.resolved(
                file, "unreadable", {"reason": f"it could not be read: {exc.strerror or exc}"}
            )

    async def _stream(self, file: DropFile, in_memory: int) -> None:
        """A file too big to hold: hashed in one pass, then read and processed in blocks.
        One at a time: each already keeps every worker busy."""
        async with self._streams:
            # Where its quantiles lie is found beside the hash pass, which leaves a worker
            # idle; let go of where its blocks are never read (a duplicate, a failure).
            windows = asyncio.create_task(self.streamer.windows(file))
            windows.add_done_callback(_retrieved)
            try:
                read = await self._read_in_blocks(file, in_memory, windows)
            finally:
                windows.cancel()
        if read is None:
            return
        outcome, digest = read
        if outcome == DEFERRED:
            self.in_flight.defer(file)
        elif outcome == CHANGED:
            self.in_flight.resolved(file, "changed", {
                "sha256": digest, "reason": "its bytes changed while it was read in blocks",
            })
        elif isinstance(outcome, Failure):
            self.committer.set_aside(Aside(file, digest, "quarantined", failure=outcome))
        elif isinstance(outcome, Streamed):
            log.debug("%s: %d rows in %d blocks, staged", file.rel, outcome.rows, outcome.blocks)
            accepted = Accepted(
                file, digest, outcome.rows, table=self.config.route(file.rel),
                dialect=outcome.dialect.describe() if outcome.dialect is not None else None,
            )
            self.committer.add(TaskOutput([accepted], outcome.parts))


    async def _read_in_blocks(
        self, file: DropFile, in_memory: int, windows: Awaitable[tuple[Window, ...]]
    ) -> tuple[Streamed | Failure | str, str] | None:
        """The outcome of reading a file in blocks, and its digest; None where it is
        resolved already (unreadable, changed, a duplicate)."""
        async with self._read_slots:
            digest = await self._digest(file)
        if digest is None:
            return None
        originals = await self.in_flight.originals([digest])
        if not self.in_flight.claim(file.rel, digest, originals):
            return None
        self.in_flight.hand_over(file.rel)  # not bound for the queue: tasks need not wait
        size = f"{file.size / 1e6:.1f} MB"
        if in_memory != file.size:
            size += f" on disk, over {in_memory / 1e6:.1f} MB once decompressed"
        log.info(
            "%s: %s, over a quarter of memory_mb: reading it in blocks of %.1f MB",
            file.rel, size, self.streamer.block_bytes / 1e6,
        )
        try:
            outcome = await self.streamer.ingest(file, digest, windows)
        except StagingFailed as exc:
            log.error("%s: %s; it stays in the drop folder for a later run", file.rel, exc)
            outcome = DEFERRED
        except OSError as exc:
            await self._unreadable(file, exc, digest)
            return None
        except ClusterLost:
            raise  # no file's doing: the service stops, the file stays for the next run
        except Exception as exc:  # a bug, or a failure no one foresaw: this file's alone
            log.exception("%s: reading it in blocks failed", file.rel)
            outcome = Failure(type(exc).__name__, str(exc))
        return outcome, digest


def _retrieved(task: asyncio.Task[tuple[Window, ...]]) -> None:
    """A task let go of may have failed: its error is taken here, not reported as never
    retrieved (the blocks, had they been read, would have met it too)."""
    if not task.cancelled():
        task.exception()


def _not_as_settled(length: int, file: DropFile) -> str:
    """Why a file read at another size than it settled at is resolved as changed; in the
    words a worker that reads it uses (`compute/inputs.py`)."""
    if length > file.size:
        return f"it grew past the {file.size} bytes it settled at before it was read"
    return f"{length} bytes were read where it settled at {file.size}"


def path_job(file: DropFile, table: str, in_memory: int, local: bool) -> Job:
    """send = "paths": the job that carries the file's path and the size it settled at,
    and, for a `local` worker, its mtime. Another machine's mount may keep mtimes coarser
    than this one's (sshfs, a CIFS share): its worker, asked to check one, would find
    every file written again, for ever."""
    return Job(file.rel, "", b"", table=table, in_memory=in_memory, path=str(file.path),
               size=file.size, mtime_ns=file.mtime_ns if local else None)
