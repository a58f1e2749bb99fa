"""Files too big to hold in memory: read in blocks, staged as they finish, committed as one.

    hash pass (a worker's, or read.sha256_of_file) -> block 0 (its column types fix the rest)
      -> blocks 1..n, one per worker at a time -> each staged under _ingest/tmp
      -> the digest of what the blocks read must equal the hash pass's
      -> parts rewritten to one schema, if a column empty in block 0 differed
      -> quantile passes over the staged parts -> features part -> one commit

A block holds whole records (`cut.Cutter`), and each block's rows become one
records part; a gzip'd file is inflated a block at a time (`block_reader`).
Nothing is visible until every part of the file is staged: the commit then
renames them all in one ledger transaction, as for any task, so a reader sees
all of the file or none of it. A crash before the commit leaves
only temps, which start-up removes; the file is then read again from the start.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import TypeVar

import aiofiles

from .. import regular, shared
from ..blocks import (
    LINE_FORMATS,
    SAMPLE,
    STAGING_FAILED,
    Block,
    BlockResult,
    Finish,
    Narrow,
    Scan,
    ScanResult,
    Selection,
    Spread,
    Window,
    is_json_lines,
)
from ..config import Config
from ..cut import RecordTooLong
from ..dialect import Dialect
from ..errors import ClusterLost, TaskTimeout, WorkerCrashed
from ..files import DropFile
from ..inflate import GzipError, inner_name
from ..jobs import Failure, TableSpec
from ..logs import shown
from ..store.crashpoints import CrashPlan
from ..store.layout import Layout
from ..store.parts import StagedPart, write_temp
from . import spread
from .block_reader import BlockReader
from .budget import ByteBudget
from .dispatch import Dispatcher
from .read import sha256_of_file
from .segments import IdleSegments
from .to_compute import Compute

log = logging.getLogger("ingest.stream")

T = TypeVar("T")

# Larger blocks make fewer, larger parts and fewer calls; smaller ones hold less memory.
# A block in flight costs several times its size across the processes (the bytes, their
# pickled copies, the decoded columns, the Parquet): at a 40th of memory_mb, a 3 GB file
# stayed under memory_mb + 300 MB with memory_mb = 512 (see bench/README.md).
BLOCK_BYTES = 16 << 20
BLOCK_SHARE = 40
MIN_BLOCK_BYTES = 64 << 10
# The blocks' samples of one file, held until its quantiles are searched for: a 64th of
# memory_mb (16 MB at the default, some two thousand values of each column of 63 blocks
# of 8 numeric columns: none thinned); the search's sorting makes a few copies of them.
SAMPLE_SHARE = 64
# A file is streamed once it would take more than this share of memory_mb.
STREAM_SHARE = 4
# A gzip'd file's blocks are inflated one at a time (see block_reader.py).
STREAMABLE = (*LINE_FORMATS, *(f"{suffix}.gz" for suffix in LINE_FORMATS))
DEFERRED = "deferred"
CHANGED = "changed"


class _Drained(Exception):
    """A drain began between two passes over a file: it is left for the next run."""


class StagingFailed(Exception):
    """A staged part could not be written (a full disk, say): the file waits for a later run."""


# A copy through a segment's mapping holds the GIL. A thread waiting for it asks after
# the interpreter's switch interval (5 ms) and gets it at the next piece: a megabyte at a
# time, the event loop waits that long plus a megabyte's copy (and page faults, the first
# time), not a 16 MB block's (~20 ms; `bench/copy_pause.py`).
COPY_PIECE_BYTES = 1 << 20


def _copy(data: bytes, segment: SharedMemory, out: int) -> None:
    """Copy the block into its segment. A new segment (`out`, a descriptor of its own,
    closed here, as `read._send_all` does) is written through its file, which lets go of
    the GIL and leaves its pages unmapped here; a kept one (`out` < 0) through the mapping,
    a piece at a time: the first time its pages are faulted in, and each reuse after that
    is the cheaper copy."""
    if out < 0:
        with memoryview(data) as source:
            target = shared.view(segment)
            for start in range(0, len(data), COPY_PIECE_BYTES):
                end = min(start + COPY_PIECE_BYTES, len(data))
                target[start:end] = source[start:end]
        return
    try:
        written = 0
        with memoryview(data) as view:
            while written < len(data):
                written += os.pwrite(out, view[written:], written)
    finally:
        os.close(out)


async def _stage(data: bytes, temp: Path, crash: CrashPlan) -> None:
    try:
        await asyncio.to_thread(write_temp, data, temp, crash)
    except OSError as exc:
        await asyncio.to_thread(temp.unlink, True)
        raise StagingFailed(f"could not stage {temp.name}: {exc.strerror or exc}") from None


@dataclass
class _ReadAgain:
    """Block 0 was cut by a count of quotes that a quote inside a field upset: the file is
    read again from its start, its quotes read field by field with `delimiter`."""

    delimiter: bytes


@dataclass
class Streamed:
    rows: int
    parts: list[StagedPart]
    blocks: int
    dialect: Dialect | None = None  # what a CSV was read with


@dataclass
class _Progress:
    """What the blocks of one file have produced so far."""

    parts: dict[int, StagedPart] = field(default_factory=dict)
    results: dict[int, BlockResult] = field(default_factory=dict)  # their Parquet left out
    unified: bytes = b""  # every block's schema, unified
    features: StagedPart | None = None
    failure: tuple[int, Failure] | None = None
    staging: StagingFailed | None = None
    # The bytes every block's samples (`ColumnPartial.sample`) may take together: past it,
    # every sample is halved, as often as it takes. A file's block count is not bounded.
    sample_room: int = 1 << 20
    stride: int = 1
    sampled: int = 0

    def keep(self, index: int, result: BlockResult) -> None:
        """A block's result, its Parquet left out, its samples within the room."""
        result = dataclasses.replace(result, part=b"").thinned(self.stride)
        self.results[index] = result
        self.sampled += result.sampled
        while self.sampled > self.sample_room and self.stride < SAMPLE:
            self.stride *= 2
            self.results = {i: r.thinned(2) for i, r in self.results.items()}
            self.sampled = sum(r.sampled for r in self.results.values())

    @property
    def rows(self) -> int:
        return sum(result.rows for result in self.results.values())

    @property
    def schema(self) -> bytes:
        """Block 0's, for every later block."""
        first = self.results.get(0)
        return first.schema if first is not None else b""

    @property
    def dialect(self) -> Dialect | None:
        """The dialect block 0 was read with, for every later block."""
        first = self.results.get(0)
        return first.dialect if first is not None else None

    def in_order(self) -> list[BlockResult]:
        return [self.results[i] for i in sorted(self.results)]

    def fail(self, index: int, failure: Failure) -> None:
        if self.failure is None or index < self.failure[0]:
            self.failure = (index, failure)

    def staged(self) -> list[StagedPart]:
        return [self.parts[i] for i in sorted(self.parts)]

    def temps(self) -> list[StagedPart]:
        return self.staged() + ([self.features] if self.features else [])


def why_not_streamed(config: Config, rel: str) -> str | None:
    """Why a file too big to hold cannot be read in blocks, or None if it can."""
    if not rel.lower().endswith(STREAMABLE):
        return f"only {', '.join(STREAMABLE)} files are read in blocks"
    if config.features.window:
        return "features over windows need the whole file ([features] window is set)"
    if any(name != "summary" for name in config.features.sets):
        return "feature sets other than summary need the whole file"
    return None


class Streamer:
    def __init__(
        self,
        config: Config,
        layout: Layout,
        compute: Compute,
        budget: ByteBudget,
        dispatcher: Dispatcher,
        crash: CrashPlan,
        draining: Callable[[], bool],
        idle: IdleSegments | None = None,
    ):
        self.config = config
        self.layout = layout
        self.compute = compute
        self.budget = budget
        self.dispatcher = dispatcher
        self.crash = crash
        self.draining = draining
        # Local workers get each block in shared memory, a segment kept and filled again.
        self._idle = idle if compute.shares_memory else None
        self._shm_prefix = shared.prefix_for(layout.output)
        self.block_bytes = max(MIN_BLOCK_BYTES, min(BLOCK_BYTES, budget.limit // BLOCK_SHARE))

    async def ingest(
        self, file: DropFile, digest: str, windows: Awaitable[tuple[Window, ...]] | None = None
    ) -> Streamed | Failure | str:
        """Read, process and stage every block, counting their values in the `windows`
        (found here, if not given: `windows`); a Streamed is ready for the committer.
        Otherwise the file's Failure, DEFERRED (a drain began) or CHANGED.
        Raises OSError if the input cannot be read, StagingFailed if a part cannot be written."""
        progress = _Progress(sample_room=self.budget.limit // SAMPLE_SHARE)
        outcome: Streamed | Failure | str | _ReadAgain | None = None
        try:
            found = await (windows if windows is not None else self.windows(file))
            outcome = await self._blocks(file, digest, progress, found)
            if isinstance(outcome, _ReadAgain):
                log.info(
                    "%s: a quote inside a field in block 0, which was cut before its delimiter"
                    " (%r) was known: reading it again, its quotes field by field",
                    file.rel, outcome.delimiter.decode(),
                )
                await asyncio.to_thread(_remove, progress.temps())
                progress = _Progress(sample_room=self.budget.limit // SAMPLE_SHARE)
                outcome = await self._blocks(file, digest, progress, found, outcome.delimiter)
                assert not isinstance(outcome, _ReadAgain)  # read field by field: no count
            if outcome is None:
                outcome = await self._conform(file, progress)
            if outcome is None:
                outcome = await self._features(file, digest, progress)
            return outcome
        except _Drained:
            outcome = DEFERRED
            return outcome
        finally:
            if not isinstance(outcome, Streamed):
                await asyncio.to_thread(_remove, progress.temps())

    async def hash_pass(self, file: DropFile, by_worker: bool) -> tuple[str, int]:
        """The file's sha256 and length, before any block: by a worker, if the workers see
        the drop folder (a gigabyte hashed here cost the main process about 1.5 s of CPU,
        reading and hashing, which no worker could share); else here, in chunks.
        Raises OSError if the file cannot be read."""
        if by_worker:
            try:
                return await self._retrying(lambda: self.compute.sha256_of(file.path, file.size))
            except (WorkerCrashed, TaskTimeout) as exc:
                log.warning("%s: its hash pass failed in a worker (%s); hashing it here",
                            file.rel, exc)
        return await sha256_of_file(file.path)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        return await self.dispatcher.retrying(call)

    async def windows(self, file: DropFile) -> tuple[Window, ...]:
        """Where the file's quantiles lie, by lines from all over it (`spread.py`), for its
        blocks to count: none for a file of few blocks, or gzip'd (its places cannot be
        read without all that comes before them), or without features."""
        if (
            "features" not in self.config.output.tables
            or inner_name(file.rel) != file.rel
            or file.size < spread.MIN_BLOCKS * self.block_bytes
        ):
            return ()
        data = await spread.read_spread(
            file.path, file.size, not is_json_lines(file.rel), self.budget.limit
        )
        if not data:
            return ()
        task = Spread(
            file.rel, data, self.dispatcher.committer.schemas.spec(self.config.route(file.rel)),
            self.config.features, file.size, self._collect_limit(),
            self.config.pipeline.task_timeout_s,
        )
        try:
            return await self._retrying(lambda: self.compute.windows(task))
        except (WorkerCrashed, TaskTimeout) as exc:
            log.warning("%s: where its quantiles lie was not found (%s)", file.rel, exc)
            return ()

    def _collect_limit(self) -> int:
        """Float64 values collected at once, for every wanted rank together: a 64th of
        memory_mb, since they exist in a few copies on their way to a worker."""
        return max(1 << 16, self.budget.limit // 512)

    async def _blocks(
        self, file: DropFile, digest: str, progress: _Progress, windows: tuple[Window, ...],
        literal: bytes | None = None,
    ) -> Failure | str | _ReadAgain | None:
        """Read, process and stage every block, each counting its values in the `windows`.
        `literal`: the delimiter to read the quotes with field by field from the first byte
        (a second pass, asked by `_ReadAgain`)."""
        # As many blocks as workers: reading and cutting the next takes far less than a block.
        slots = asyncio.Semaphore(self.compute.workers)
        table = self.config.route(file.rel)
        spec = self.dispatcher.committer.schemas.spec(table)
        running: set[asyncio.Task[None]] = set()
        index = 0
        try:
            async with aiofiles.open(file.path, "rb", opener=regular.settled_opener) as fh:
                reader = BlockReader(
                    fh, file.rel, self.block_bytes,
                    literal.decode() if literal else _delimiter(spec), literal is not None,
                )
                while progress.failure is None:
                    if self.draining():
                        return DEFERRED
                    await slots.acquire()
                    await self.budget.acquire(self.block_bytes)
                    try:
                        found = await reader.next()
                    except BaseException:
                        self._let_go(slots)
                        raise
                    if found is None:
                        self._let_go(slots)
                        break
                    data, first_line = found
                    if index == 0 and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                        self._let_go(slots)
                        return Failure("TooLarge", _UTF16)
                    segment = await self._into_shared(data)
                    block = Block(
                        file.rel, digest, index, b"" if segment else data, first_line,
                        progress.schema, self.config.features, self.config.output.compression,
                        self.config.pipeline.task_timeout_s, spec,
                        # Block 0: the table's pinned dialect; later blocks: block 0's.
                        progress.dialect if progress.dialect is not None else spec.dialect,
                        spec.csv,
                        str(self._temp(index)) if self.compute.sees_output else None,
                        segment.name if segment else None, len(data), windows,
                    )
                    del data
                    if index == 0:
                        # Alone: block 0's column types are every later block's.
                        await self._block(block, progress, slots, segment)
                        if again := await self._after_block_0(reader, progress, block):
                            return again
                    else:
                        task = asyncio.create_task(self._block(block, progress, slots, segment))
                        running.add(task)
                        task.add_done_callback(running.discard)
                    index += 1
        except RecordTooLong as exc:
            return Failure("DecodeError", str(exc), line=exc.line)
        except GzipError as exc:
            return Failure("DecodeError", str(exc), offset=exc.offset)
        finally:
            if running:
                await _all_ended(running)
        if progress.staging is not None:
            raise progress.staging
        if progress.failure is not None:
            return progress.failure[1]
        if sorted(progress.parts) != list(range(index)):
            raise RuntimeError(f"{file.rel}: blocks {sorted(progress.parts)} of {index} staged")
        # The rows came from a second read: they must be the bytes the digest was taken of.
        same = reader.length == file.size and reader.digest.hexdigest() == digest
        return None if same else CHANGED

    async def _after_block_0(
        self, reader: BlockReader, progress: _Progress, block: Block
    ) -> _ReadAgain | None:
        """Block 0 is read: its dialect is the table's, if it has none yet, and its delimiter
        the cutter's. Unless block 0, cut by a count of quotes before the delimiter was
        known, holds a quote that upsets the count (read, or failed to parse, as such a cut
        leaves it): then nothing is pinned, and the file is to be read again."""
        read_with = progress.dialect
        # A block 0 that failed otherwise than to parse (a crash, a full disk): not read again.
        other_failure = (
            progress.failure is not None and progress.failure[1].error != "DecodeError"
        )
        if progress.staging is None and not other_failure:
            sniffed = read_with.delimiter.encode() if read_with is not None else None
            delimiter = await asyncio.to_thread(reader.misread_first_block, sniffed)
            if delimiter is not None:
                return _ReadAgain(delimiter)
        if read_with is not None:
            # A table's first CSV pins its dialect, streamed or not.
            self.dispatcher.committer.schemas.pin(block.spec.name, read_with, block.source_file)
            reader.cutter.delimiter = read_with.delimiter.encode()
        return None

    def _let_go(self, slots: asyncio.Semaphore) -> None:
        slots.release()
        self.budget.release(self.block_bytes)

    async def _into_shared(self, data: bytes) -> SharedMemory | None:
        """The block copied into a segment, for a local worker; None: it takes the pipe
        (a cluster's worker, or /dev/shm full). Pickled, a block is copied twice more in
        this process and written through the pipe, holding the GIL."""
        if self._idle is None:
            return None
        segment = self._idle.take(len(data))
        out = -1
        if segment is None:
            segment = await asyncio.to_thread(shared.create, self._shm_prefix, len(data))
            fd = shared.descriptor(segment) if segment is not None else -1
            out = os.dup(fd) if fd >= 0 else -1
        if segment is not None:
            await asyncio.to_thread(_copy, data, segment, out)
        return segment

    def _let_go_of(self, segment: SharedMemory | None) -> None:
        if segment is not None and self._idle is not None:
            self._idle.keep(segment)

    async def _block(
        self, block: Block, progress: _Progress, slots: asyncio.Semaphore,
        segment: SharedMemory | None = None,
    ) -> None:
        """Run one block and stage its part. Every way it can fail ends up in `progress`:
        a file is never committed with a block missing."""
        try:
            try:
                result = await self._run_block(block)
            finally:
                slots.release()  # the worker is free: the next block goes while this one is staged
                self._let_go_of(segment)  # its worker has read it, or is gone
            if result.failure is not None and result.failure.error == STAGING_FAILED:
                failed = result.failure.message
                raise StagingFailed(f"could not stage block {block.index}: {failed}")
            if result.failure is not None:
                progress.fail(block.index, result.failure)
                return
            progress.keep(block.index, result)
            if block.index == 0 and result.dialect is not None:
                log.debug("%s: read as %s", shown(block.source_file), result.dialect.describe())
            if result.written:
                assert block.stage is not None
                # Fsynced by the commit, as any part a worker writes.
                staged = StagedPart(block.spec.name, Path(block.stage), durable=False)
            else:
                temp = self._temp(block.index)
                await _stage(result.part, temp, self.crash)
                staged = StagedPart(block.spec.name, temp)
            progress.parts[block.index] = staged
            self.crash.reached("block-staged")
        except StagingFailed as exc:
            progress.staging = exc
            progress.fail(block.index, Failure("StagingFailed", str(exc)))
        except ClusterLost:
            raise  # no block's doing: the service stops
        except Exception as exc:
            log.exception("block %d of %s failed", block.index, block.source_file)
            progress.fail(block.index, Failure(type(exc).__name__, str(exc)))
        finally:
            self.budget.release(self.block_bytes)

    async def _run_block(self, block: Block) -> BlockResult:
        try:
            result = await self._retrying(lambda: self.compute.block(block))
        except (WorkerCrashed, TaskTimeout) as exc:
            result = BlockResult(0, Failure(type(exc).__name__, str(exc)))
        if block.stage is not None and not result.written:
            # A worker that died or failed may have left part of its part behind.
            await asyncio.to_thread(Path(block.stage).unlink, True)
        return result

    def _temp(self, index: int) -> Path:
        return self.layout.tmp / f"stream-{secrets.token_hex(6)}-{index:06d}.tmp"

    async def _conform(self, file: DropFile, progress: _Progress) -> Failure | None:
        """The schema of the file's parts, all blocks together: which columns have features."""
        what = f"the column types of {file.rel}"
        schemas = tuple(result.fitted for result in progress.in_order())
        try:
            unified, _, problem = await self._retrying(lambda: self.compute.unify(schemas, what))
        except (WorkerCrashed, TaskTimeout) as exc:
            return Failure(type(exc).__name__, str(exc))
        if problem:
            return Failure("DecodeError", problem)
        progress.unified = unified
        return None

    async def _features(
        self, file: DropFile, digest: str, progress: _Progress
    ) -> Streamed | Failure:
        tables = self.config.output.tables
        staged = progress.staged()
        if "features" in tables:
            try:
                data = await self._feature_part(file, digest, progress, staged)
            except (WorkerCrashed, TaskTimeout) as exc:
                return Failure(type(exc).__name__, str(exc))
            temp = self.layout.tmp / f"stream-{secrets.token_hex(6)}-features.tmp"
            progress.features = StagedPart("features", temp)
            await _stage(data, temp, self.crash)
        if "records" not in tables:
            await asyncio.to_thread(_remove, staged)  # they served the quantile passes
            staged = []
        extra = [progress.features] if progress.features else []
        return Streamed(progress.rows, staged + extra, len(progress.parts), progress.dialect)

    async def _feature_part(
        self, file: DropFile, digest: str, progress: _Progress, staged: list[StagedPart]
    ) -> bytes:
        what = f"the quantiles of {file.rel}"
        partials = tuple((result.rows, result.partials) for result in progress.in_order())
        limit = self._collect_limit()
        selection: Selection = await self._retrying(
            lambda: self.compute.select(partials, progress.unified, limit, what)
        )
        passes = 0
        while not selection.done:
            if self.draining():
                raise _Drained
            narrow = Narrow(selection, await self._scan(staged, selection, what))
            selection = await self._retrying(
                lambda: self.compute.narrow(narrow, what)  # noqa: B023 (awaited at once)
            )
            passes += 1
        how = {0: "as they were read", 1: "after 1 pass over them"}.get(
            passes, f"after {passes} passes over them"
        )
        log.info("%s: %d blocks; quantiles exact %s", file.rel, len(staged), how)
        finish = Finish(
            file.rel, self.config.route(file.rel), digest, progress.rows, selection,
            self.config.features.sets, self.config.output.compression,
        )
        return await self._retrying(lambda: self.compute.finish(finish))

    async def _scan(
        self, staged: list[StagedPart], selection: Selection, what: str
    ) -> tuple[ScanResult, ...]:
        """One pass over the staged parts. A worker that sees the output folder reads each
        part itself, and two scans per worker are in flight, so that one waits in the pool
        while the other runs. Any other worker gets the bytes, one part per worker at a time."""
        by_path = self.compute.sees_output
        slots = asyncio.Semaphore(self.compute.workers * (2 if by_path else 1))

        async def one(part: StagedPart) -> ScanResult:
            async with slots:
                size = part.temp.stat().st_size
                await self.budget.acquire(min(size, self.budget.limit))
                try:
                    if by_path:
                        scan = Scan(b"", selection.probes, str(part.temp))
                    else:
                        async with aiofiles.open(part.temp, "rb") as fh:
                            scan = Scan(await fh.read(), selection.probes)
                    return await self._retrying(lambda: self.compute.scan(scan, what))
                finally:
                    self.budget.release(min(size, self.budget.limit))

        # A TaskGroup: if one part's scan fails, the others stop rather than run on. Its
        # failure is raised as it is, not in the group that gathers it.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(part)) for part in staged]
        except* (ClusterLost, WorkerCrashed, TaskTimeout) as failed:
            raise failed.exceptions[0] from None
        return tuple(task.result() for task in tasks)


async def _all_ended(running: set[asyncio.Task[None]]) -> None:
    """Wait for the blocks under way. A cluster lost is raised as it is: no block's doing,
    and not to be taken for blocks missing."""
    for ended in await asyncio.gather(*running, return_exceptions=True):
        if isinstance(ended, ClusterLost):
            raise ended


_UTF16 = (
    "a UTF-16 file is read whole, and this one is larger than memory_mb allows;"
    " re-save it as UTF-8, or raise [pipeline] memory_mb"
)


def _delimiter(spec: TableSpec) -> str | None:
    """A table's CSV delimiter, where pinned, or where its first CSV pinned its dialect."""
    if spec.csv is not None and spec.csv.delimiter is not None:
        return spec.csv.delimiter
    if spec.dialect is None or not spec.dialect.delimited:  # one column showed none
        return None
    return spec.dialect.delimiter


def _remove(staged: list[StagedPart]) -> None:
    for part in staged:
        Path(part.temp).unlink(missing_ok=True)
