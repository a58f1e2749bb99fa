"""Commit: publish each task's part files, and record the files set aside, from a thread.

Workers return a task's part files already encoded, most often already written
under `_ingest/tmp`; committing one is an fsync, a rename and two ledger
transactions. Files resolved without rows of their own (duplicates, quarantined
inputs), and files that vanished before they were read, wait up to `flush_s` to be
recorded together. One commit runs at a time, in a thread, and every ledger write of
the application goes through it. So does compaction (`store/autocompact.py`): a
short pass over a partition or a few, after each flush and, when idle, every
`COMPACT_CHECK_S`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ..blocks import is_json_lines
from ..config import Config
from ..errors import OutputLost, one_line
from ..files import DropFile
from ..jobs import EncodedPart, Failure
from ..store.autocompact import Compactor
from ..store.crashpoints import CrashPlan
from ..store.delta_step import Unsettled
from ..store.dispose import after_success, quarantine, sha256_of
from ..store.lasting import LASTING_AFTER, backoff_after, halves, the_machines
from ..store.layout import Layout
from ..store.ledger import FileRecord, Ledger
from ..store.lock import check_held, identity
from ..store.parts import Accepted, Published, StagedPart, as_read, publish, remove_staged
from ..store.schema import Schemas
from ..store.vanished import STATE as VANISHED
from .waiting import wait_set

log = logging.getLogger("ingest.commit")

T = TypeVar("T")
PRESSURE_POLL_S = 0.05
# Files reported between returns to the event loop: a task of 2,000 tiny files reported
# at once held it for 55 ms.
REPORT_BATCH = 64
# How often an idle committer looks for a partition to compact; after a commit, or a pass
# that compacted one, it looks again at once. A look is one ledger query in a thread.
COMPACT_CHECK_S = 1.0
# Why a file found other than it was read, as its parts were about to be committed, is read
# again (`store.parts.unchanged`); and why the other files of its parts are.
CHANGED_AT_COMMIT = "its size or mtime changed after it was read, before its commit"
BESIDE_A_CHANGED = "a file whose rows share its part files changed before their commit"
# Why a CSV is read again rather than committed (`Schemas.typed_where_text`).
READ_AS_TEXT = (
    "its table holds as text a column it was read as numbers, flags or times in (another"
    " file made it text first): read again, its values as written"
)


@dataclass
class Aside:
    """A file resolved without rows of its own: a duplicate or a quarantined input."""

    file: DropFile
    sha256: str
    state: str  # "duplicate" | "quarantined"
    duplicate_of: str | None = None
    failure: Failure | None = None
    attempts: int = 1
    table: str = "records"
    # No worker returned its sha256 (it killed or hung the worker): the commit hashes it.
    hash_on_commit: bool = False

    def record(self) -> FileRecord:
        failure = self.failure
        return FileRecord(
            path=self.file.rel, size=self.file.size, mtime_ns=self.file.mtime_ns,
            sha256=self.sha256, state=self.state, duplicate_of=self.duplicate_of,
            error=failure.error if failure else None,
            message=failure.message if failure else None,
            attempts=self.attempts, seen_at=self.file.seen_at, done_at=time.time(),
            table=self.table,
        )


@dataclass
class TaskOutput:
    """A task's files with rows, and the part files that hold those rows."""

    accepted: list[Accepted]
    parts: Sequence[EncodedPart | StagedPart]
    # Files whose rows the parts hold but which are not to be committed: their bytes were
    # committed already, or are held by another file in flight. Taken out at commit.
    dropped: set[str] = field(default_factory=set)
    failures: int = 0  # commits of it that failed for a reason of its own (`store/lasting.py`)
    failing_since: int = 0  # the committer's count of commits at its first such failure

    def named(self) -> str:
        first = self.accepted[0].file.rel if self.accepted else "a task"
        if len(self.accepted) < 2:
            return first
        return f"the task of {first} and {len(self.accepted) - 1} other files"


@dataclass
class Pending:
    outputs: list[TaskOutput] = field(default_factory=list)
    aside: list[Aside] = field(default_factory=list)
    vanished: list[FileRecord] = field(default_factory=list)  # recorded with the aside
    oldest_aside: float | None = None

    def files(self) -> int:
        """The files it holds, to be committed or recorded."""
        return sum(len(output.accepted) for output in self.outputs) + len(self.aside)

    @property
    def records_only(self) -> bool:
        """Something to record that has no part files: it may wait for company."""
        return bool(self.aside or self.vanished)

    def __bool__(self) -> bool:
        return bool(self.outputs or self.records_only)


@dataclass
class Committed:
    """What one flush achieved before it finished or failed."""

    published: list[Published] = field(default_factory=list)
    # Files set aside that are recorded (as a batch, or in halves after a batch failed
    # for a reason of its own), and those whose record failed alone: they stay unrecorded.
    aside_recorded: list[Aside] = field(default_factory=list)
    aside_left: list[tuple[Aside, Exception]] = field(default_factory=list)
    vanished_left: list[FileRecord] | None = None  # not yet recorded; None: none tried
    # A record went through after the batch failed: the ledger can record, the fault is
    # the files' own.
    recorded_apart: bool = False
    left_told: bool = False  # ... and so those in `aside_left` were told as uncommitted
    error: Exception | None = None  # the machine's: the flush stopped there
    untried: list[TaskOutput] = field(default_factory=list)  # ... and these wait for the retry
    # Outputs whose commit failed for a reason of their own; the flush went on past them.
    failed: list[tuple[TaskOutput, Exception]] = field(default_factory=list)
    # CSVs taken out of their parts, to be read again as their table now reads them.
    reread: list[Accepted] = field(default_factory=list)


class Resolved(Protocol):
    """Files of one fate and their fields, told once committed (`InFlight.resolved_all`).
    `unpaused`: files resolved as changed that did not change themselves (another file of
    their parts did): they are looked at again without the changed-file pause."""

    def __call__(
        self, event: str, files: Sequence[tuple[DropFile, dict[str, object]]],
        unpaused: Collection[str] = (),
    ) -> None: ...


class Committer:
    def __init__(
        self,
        ledger: Ledger,
        layout: Layout,
        config: Config,
        on_resolved: Resolved,
        nothing_coming: Callable[[], bool],
        crash: CrashPlan,
        only_these_left: Callable[[int], bool] = lambda waiting: False,
        schemas: Schemas | None = None,
        compactor: Compactor | None = None,
    ):
        self.schemas = schemas or Schemas(config, {})
        self.compactor = compactor
        self.ledger = ledger
        self.layout = layout
        self.config = config
        self.on_resolved = on_resolved
        self.nothing_coming = nothing_coming  # files set aside need not wait for company
        self.crash = crash
        self.only_these_left = only_these_left  # `once`: no other commit is coming
        # The writer lock this process holds (the command line took it): each commit and
        # compaction first checks that the output folder is still the one it locks.
        self._held = identity(layout.state)
        self._pending = Pending()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._backoff = 0.0
        # Parts committed: when one batch keeps failing, the proof that others do not.
        self._commits = 0
        self._closed = False  # drained: the ledger is about to close
        # Files taken out of their parts to be read again (`_read_again`), as they were
        # then: a version read again once is committed the next time, whatever it holds.
        self._read_again_once: set[tuple[str, int, int]] = set()
        # The flush whose commit is under way or done, until the loop has told its files'
        # fate (`tell_committed_now`), how many of its published outputs it has begun to
        # tell, and how many files of the last of those it has told.
        self._in_hand: Committed | None = None
        self._telling = 0
        self._told = 0
        # Since when (monotonic) commits have failed for the machine's reason (a full
        # disk), and the last such error: for /healthz. None once one goes through.
        self.failing: tuple[float, str] | None = None
        # After a failed compaction (a full disk: the merged file does not fit), the next
        # waits this long, doubled each time in a row, not the next commit: one traceback a
        # second filled the log while the disk stayed full.
        self._compact_backoff = 0.0
        self._compact_after = 0.0  # monotonic

    async def read_ledger(self, query: Callable[..., T], *args: object) -> T:
        """Run a ledger query in a thread, never at the same time as a commit:
        the one SQLite connection is used by one thread at a time."""
        async with self._flushing:
            return await asyncio.to_thread(query, *args)

    def add(self, output: TaskOutput) -> None:
        self._pending.outputs.append(output)
        self._wake.set()

    def set_aside(self, aside: Aside) -> None:
        self._read_again_once.discard(aside.file.key)  # its version is done with
        self._pending.aside.append(aside)
        self._records_waiting()

    def vanished(self, file: DropFile, sha256: str = "") -> None:
        """Record that `file` was gone before it was read, for `ingest explain`. Its outcome
        was told when it was found gone; nothing is reported back once it is recorded."""
        self._read_again_once.discard(file.key)
        self._pending.vanished.append(FileRecord(
            path=file.rel, size=file.size, mtime_ns=file.mtime_ns, sha256=sha256,
            state=VANISHED, seen_at=file.seen_at, done_at=time.time(),
        ))
        self._records_waiting()

    def _records_waiting(self) -> None:
        if self._pending.oldest_aside is None:
            self._pending.oldest_aside = time.monotonic()
        self._wake.set()

    def _due(self) -> float:
        """Seconds until a flush is due; <= 0 means now."""
        pending = self._pending
        if pending.outputs or (pending.records_only and self.nothing_coming()):
            return 0.0
        if pending.oldest_aside is None:
            return float("inf")
        return pending.oldest_aside + self.config.output.flush_s - time.monotonic()

    async def run(self) -> None:
        """Forever: flush whenever something is due, and after a failure back off; a
        compaction pass between flushes."""
        next_look = 0.0
        while True:
            due = self._due()
            if due <= 0:
                if not await self.flush():
                    await asyncio.sleep(self._backoff)
                    continue
                next_look = 0.0  # new parts: one pass before the next commit
            if self.compactor is not None and time.monotonic() >= max(
                next_look, self._compact_after
            ):
                compacted = await self._compact()
                next_look = 0.0 if compacted else time.monotonic() + COMPACT_CHECK_S
                continue
            if due <= 0:
                continue
            self._wake.clear()
            await wait_set(self._wake, min(due, PRESSURE_POLL_S))

    async def flush(self) -> bool:
        """Commit what is pending; False if that failed and it is pending again."""
        async with self._flushing:
            if self._closed:
                return True
            pending, self._pending = self._pending, Pending()
            if not pending:
                return True
            self._telling = 0
            done = await asyncio.to_thread(self._commit, pending)
            before = self._commits
            for published in done.published:
                self._telling += 1
                self._told = 0
                self._commits += published.part_id is not None
                if self._read_again_once:
                    self._read_again_once.difference_update(
                        entry.file.key for entry in published.committed
                    )
                await self._report_published(published)
            await self._report("reread", [
                (entry.file, {"sha256": entry.sha256, "reason": READ_AS_TEXT})
                for entry in done.reread
            ], unpaused={entry.file.rel for entry in done.reread})
            self._telling += 1
            await self._report_aside(done.aside_recorded)
            self._in_hand, self._telling = None, 0
            backoff = backoff_after(self._backoff)
            records_failed = await self._unrecorded(done, backoff)
            if done.error is None:
                self.failing = None
            else:
                self.failing = ((self.failing or (time.monotonic(), ""))[0], one_line(done.error))
            if isinstance(done.error, Unsettled | OutputLost):
                # Half in a Delta log, which only a start-up repair settles, or an output
                # folder removed under this process: retried here, every commit would fail
                # (or go beside another writer's). The service stops (exit 1), for its
                # supervisor to start it again.
                self._restore(pending, done)
                raise done.error
            if done.error is None and not done.failed and not records_failed:
                self._backoff = 0.0
                return True
            self._restore(pending, done)
            # Nothing is split or set aside while the machine fails too (a full disk).
            settle = done.error is None
            retried = [
                output for output, error in done.failed
                if not await self._failed(output, error, before, backoff, settle)
            ]
            if done.error is not None:
                log.error(
                    "commit failed: %s; inputs stay pending, retrying in %.1fs",
                    one_line(done.error), backoff,
                )
            elif not retried and not records_failed:
                return True  # each was split or set aside: its halves are tried at once
            self._backoff = backoff
            return False

    async def _failed(
        self, output: TaskOutput, error: Exception, before: int, backoff: float, settle: bool
    ) -> bool:
        """An output whose commit failed for a reason of its own: retried, or, failing for
        the LASTING_AFTER-th time, split, quarantined or given up. True for the last three."""
        output.failures += 1
        if output.failures == 1:
            output.failing_since = before
        if settle and output.failures >= LASTING_AFTER:
            act = None
            if len(output.accepted) > 1 or self._commits > output.failing_since:
                act = self._isolate
            elif self.only_these_left(self._pending.files()):
                act = self._give_up
            if act is not None:
                log.error("commit of %s failed %d times: %s",
                          output.named(), output.failures, error)
                if await act(output, error):
                    return True
        log.error(
            "commit of %s failed: %s; inputs stay pending, retrying in %.1fs",
            output.named(), error, backoff,
        )
        return False

    async def _give_up(self, output: TaskOutput, error: Exception) -> bool:
        """`once`, with nothing else to commit: a file that keeps failing alone cannot show
        that the fault is its own, so it is not quarantined; it is left in the drop folder,
        unrecorded, for the next run, and the run exits 1."""
        self._pending.outputs.remove(output)
        await asyncio.to_thread(remove_staged, output.parts)
        reason = (
            f"its commit failed {output.failures} times, and no other file's commit went"
            f" through to show the fault is its own: {error}"
        )
        await self._report("uncommitted", [
            (entry.file, {"sha256": entry.sha256, "error": type(error).__name__,
                          "reason": reason})
            for entry in output.accepted
        ])
        return True

    async def _isolate(self, output: TaskOutput, error: Exception) -> bool:
        """An output that keeps failing: commit it in halves, or, while others commit,
        quarantine its one file with the error. False if it could not be split: it stays
        pending as it was."""
        outputs = self._pending.outputs
        if len(output.accepted) > 1:
            log.warning("committing %s in two halves, to find what fails", output.named())
            try:
                batches = await asyncio.to_thread(
                    halves, output.accepted, output.parts, self.config.output.compression
                )
            except Exception as exc:
                log.error("%s could not be split: %s; retrying it whole", output.named(), exc)
                return False
            at = next(i for i, pending in enumerate(outputs) if pending is output)
            outputs[at:at + 1] = [
                TaskOutput(accepted, parts, set(output.dropped), output.failures - 1,
                           output.failing_since)
                for accepted, parts in batches
            ]
            return True
        outputs.remove(output)
        await asyncio.to_thread(remove_staged, output.parts)
        failure = Failure(type(error).__name__, (
            f"its commit failed {output.failures} times while other files committed: {error}"
        ))
        for entry in output.accepted:
            self.set_aside(Aside(
                entry.file, entry.sha256, "quarantined", failure=failure,
                attempts=entry.attempts, table=entry.table,
            ))
        return True

    async def _compact(self) -> bool:
        """One compaction pass in a thread, holding the ledger; True if it compacted."""
        assert self.compactor is not None
        async with self._flushing:
            if self._closed:
                return False
            work = asyncio.ensure_future(asyncio.to_thread(self._compact_step))
            try:
                compacted = bool(await asyncio.shield(work))
            except asyncio.CancelledError:
                # The thread cannot be stopped: the ledger stays held until its swap is done.
                await asyncio.wait([work])
                raise
            except OutputLost:
                raise
            except Exception as exc:
                first = not self._compact_backoff
                self._compact_backoff = backoff_after(self._compact_backoff)
                self._compact_after = time.monotonic() + self._compact_backoff
                again = f"tried again in {self._compact_backoff:g} s"
                if the_machines(exc) or not first:  # the machine's, or told already
                    log.error(
                        "compaction failed: %s; the partition stays as it is, %s",
                        one_line(exc), again,
                    )
                else:
                    log.exception("compaction failed; the partition stays as it is, %s", again)
                return False
            self._compact_backoff = 0.0
            return compacted

    async def drain(self, until: float) -> list[str]:
        """Flush until nothing is pending, retrying failed commits until the monotonic time
        `until` (at least one attempt). Then commit nothing more; return the files left
        uncommitted: they stay in the drop folder, for the next run."""
        while self._pending:
            try:
                if await self.flush():
                    continue
            except (Unsettled, OutputLost):
                break  # the rest stay for the next run, whose start-up repair comes first
            left = until - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(self._backoff, left))
        async with self._flushing:  # a flush of the run loop in its thread finishes first
            self._closed = True
        pending = self._pending
        return [e.file.rel for o in pending.outputs for e in o.accepted] + [
            a.file.rel for a in pending.aside
        ]

    def _restore(self, pending: Pending, done: Committed) -> None:
        # What failed goes back in front, in its order and keeping its age, so the retry
        # includes it.
        again = {id(output) for output, _ in done.failed} | {id(o) for o in done.untried}
        self._pending.outputs[:0] = [o for o in pending.outputs if id(o) in again]
        settled = {id(a) for a in done.aside_recorded}
        if done.left_told:
            settled |= {id(a) for a, _ in done.aside_left}
        aside = [a for a in pending.aside if id(a) not in settled]
        vanished = pending.vanished if done.vanished_left is None else done.vanished_left
        if aside or vanished:
            self._pending.aside[:0] = aside
            self._pending.vanished[:0] = vanished
            self._pending.oldest_aside = pending.oldest_aside

    def _commit(self, pending: Pending) -> Committed:
        """Called in a thread: publish, then dispose of the inputs (after the ledger commit)."""
        done = self._in_hand = Committed()
        on_success = self.config.watch.on_success
        made: set[str] = set()  # the archive's folders, made once a flush
        outputs = pending.outputs
        try:
            self._check_held()
            self.schemas.save_pins(self.ledger)
            for output in outputs:
                try:
                    published = self._publish(output, done)
                except Exception as exc:
                    if the_machines(exc):
                        raise
                    done.failed.append((output, exc))
                    continue
                done.published.append(published)
                for entry in published.committed:
                    after_success(self.layout, entry.file, entry.sha256, on_success, made)
                    self.crash.reached("input-disposed")
            if pending.records_only:
                for item in pending.aside:
                    if item.hash_on_commit:
                        item.sha256, item.hash_on_commit = sha256_of(item.file.path), False
                try:
                    self._record_aside(pending, done)
                finally:
                    self._dispose_aside(done.aside_recorded, made)
        except Exception as exc:
            done.error = exc
            # Each output before the one that stopped the flush was published or failed.
            done.untried = outputs[len(done.published) + len(done.failed):]
        return done

    def _compact_step(self) -> bool:
        assert self.compactor is not None
        self._check_held()
        return bool(self.compactor.step(self.ledger))

    def _check_held(self) -> None:
        if self._held is not None:
            check_held(self.layout.state, self._held)

    def _publish(self, output: TaskOutput, done: Committed) -> Published:
        """One task's parts, committed with its files."""
        again = self._read_again(output)
        if again:
            names = {entry.file.rel for entry in again}
            output.accepted = [e for e in output.accepted if e.file.rel not in names]
            done.reread.extend(again)
            if output.accepted:
                output.dropped |= names
            else:  # a streamed file's parts, which name no sources, go with it
                remove_staged(output.parts)
                output.parts, output.dropped = [], set()
        if output.dropped:
            from ..store.strip import without  # pyarrow: loaded only for a duplicate

            output.parts = without(output.parts, output.dropped, self.config.output.compression)
            output.dropped = set()
        if not output.accepted:
            return Published(None)
        output.parts = self.schemas.settle(
            self.ledger, self.layout, output.parts, self.crash,
            [entry.file.rel for entry in output.accepted],
        )
        return publish(self.ledger, self.layout, output.accepted, output.parts, [], self.crash)

    def _read_again(self, output: TaskOutput) -> list[Accepted]:
        """The CSVs and JSON Lines files of the output whose table holds as text a column
        their part holds as numbers, flags or times, by a file committed since their task
        left (or before it in this flush). Each is taken out of its parts and read again,
        once per version."""
        tables = self.schemas.typed_where_text(output.parts)  # most often none, at once
        if not tables:
            return []
        once = self._read_again_once
        # A file gone (or changed) since it was read is committed as read: its rows are
        # whole (`store.parts.unchanged`), and it could not be read again.
        again = [
            entry for entry in output.accepted
            if entry.table in tables
            and (entry.dialect is not None or is_json_lines(entry.file.rel))
            and entry.file.key not in once and as_read(entry.file)
        ]
        once.update(entry.file.key for entry in again)
        return again

    def _record_aside(self, pending: Pending, done: Committed) -> None:
        """Record the files set aside and those that vanished, in one transaction. If that
        fails for a reason of its own (a bug that one file's values bring out), the files
        set aside are recorded in halves, down to one alone, and one that fails alone is
        left unrecorded, its file in the drop folder: retried as a batch, it would fail
        every flush after it. Vanished files are recorded each alone. The machine's
        failures (a full disk) are raised, and what is not yet recorded is retried."""
        aside, done.vanished_left = pending.aside, list(pending.vanished)
        failed: Exception | None
        try:
            self.crash.fail_here("aside-recorded", (item.file.rel for item in aside))
            self.ledger.record([item.record() for item in aside] + pending.vanished)
        except Exception as exc:
            if the_machines(exc):
                raise
            log.error("recording %d files set aside failed: %s; recording them apart",
                      len(aside) + len(pending.vanished), exc)
            failed = exc
        else:
            done.aside_recorded, done.vanished_left = list(aside), []
            return
        for at, record in enumerate(pending.vanished):
            try:
                self.ledger.record([record])
            except Exception as exc:
                if the_machines(exc):
                    raise
                log.error("%s, gone before it was read, could not be recorded: %s",
                          record.path, exc)
            else:
                done.recorded_apart = True
            done.vanished_left = pending.vanished[at + 1:]
        if not aside:
            return
        if pending.vanished:  # the fault may have been a vanished file's
            failed = self._try_record(aside, done)
        if failed is not None:
            self._record_halves(aside, failed, done)

    def _record_halves(self, aside: list[Aside], failed: Exception, done: Committed) -> None:
        """`aside` failed as one batch for a reason of its own: record each half, and split
        a half that fails again, down to a file alone, which is left unrecorded. One bad
        record among a thousand costs about twenty transactions, not a thousand; if every
        record fails, about two a file, each failing before its fsync."""
        if len(aside) == 1:
            done.aside_left.append((aside[0], failed))
            return
        middle = len(aside) // 2
        for half in (aside[:middle], aside[middle:]):
            again = self._try_record(half, done)
            if again is not None:
                self._record_halves(half, again, done)

    def _try_record(self, aside: list[Aside], done: Committed) -> Exception | None:
        """Record `aside` in one transaction; the error if it failed for its own reason."""
        try:
            self.crash.fail_here("aside-recorded", (item.file.rel for item in aside))
            self.ledger.record([item.record() for item in aside])
        except Exception as exc:
            if the_machines(exc):
                raise
            return exc
        done.aside_recorded.extend(aside)
        done.recorded_apart = True
        return None

    async def _unrecorded(self, done: Committed, backoff: float) -> bool:
        """Files whose record failed alone. Once a record or a commit of this flush went
        through, the fault is theirs: they stay in the drop folder, unrecorded, for the next
        run (or a rescan) to look at again. Until then it may be the service's: they are
        retried after `backoff` (True), as a failing commit is; `once`, with nothing else
        coming, leaves them as well."""
        left = done.aside_left
        if not left:
            return False
        proof = done.recorded_apart or any(p.part_id is not None for p in done.published)
        if not proof and not self.only_these_left(self._pending.files() + len(left)):
            for item, exc in left:
                log.error("recording %s as %s failed: %s; retrying in %.1fs",
                          item.file.rel, item.state, exc, backoff)
            return True
        await self._report("uncommitted", [
            (item.file, {"sha256": item.sha256, "error": type(exc).__name__, "reason": (
                f"it was to be recorded as {item.state}, and its record failed: {exc}"
            )})
            for item, exc in left
        ])
        done.left_told = True
        return False

    def _dispose_aside(self, aside: list[Aside], made: set[str]) -> None:
        keep = self.config.watch.on_success == "keep"
        for item in aside:
            if item.failure is not None:
                self.crash.reached("quarantine-recorded")
                quarantine(self.layout, item.file, item.sha256, item.failure, item.attempts, keep)
            else:
                after_success(
                    self.layout, item.file, item.sha256, self.config.watch.on_success, made
                )

    async def _report_published(self, published: Published) -> None:
        await self._report("ingested", _committed(published))
        await self._report("changed", [
            (e.file, {
                "sha256": e.sha256,
                "reason": CHANGED_AT_COMMIT if e.file.rel in published.moved else BESIDE_A_CHANGED,
            })
            for e in published.changed
        ], unpaused={e.file.rel for e in published.changed} - published.moved)

    def tell_committed_now(self) -> None:
        """The process is about to exit at once (a second signal): tell the fate of the files
        the flush under way has committed or recorded, which the loop has not told yet and
        never will. None already told is told again."""
        done = self._in_hand
        if done is None:
            return
        published = done.published
        if 0 < self._telling <= len(published):  # one told in part: the rest of it
            rest = _committed(published[self._telling - 1])[self._told:]
            if rest:
                self.on_resolved("ingested", rest, ())
        for output in published[self._telling:]:
            self.on_resolved("ingested", _committed(output), ())
        if self._telling <= len(published):
            for state, files in _fates(done.aside_recorded).items():
                self.on_resolved(state, files, ())

    async def _report_aside(self, aside: list[Aside]) -> None:
        for state, files in _fates(aside).items():
            await self._report(state, files)

    async def _report(
        self, event: str, files: list[tuple[DropFile, dict[str, object]]],
        unpaused: Collection[str] = (),
    ) -> None:
        """Tell the files' fate, REPORT_BATCH at a time, with the loop let go in between."""
        for start in range(0, len(files), REPORT_BATCH):
            if start:
                await asyncio.sleep(0)
            told = files[start:start + REPORT_BATCH]
            self.on_resolved(event, told, unpaused)
            if event == "ingested":
                self._told += len(told)


def _committed(published: Published) -> list[tuple[DropFile, dict[str, object]]]:
    return [
        (entry.file, {"rows": entry.rows, "sha256": entry.sha256, "part": published.part_id})
        for entry in published.committed
    ]


def _fates(aside: list[Aside]) -> dict[str, list[tuple[DropFile, dict[str, object]]]]:
    """The files set aside, by state, each with the fields of its line."""
    by_state: dict[str, list[tuple[DropFile, dict[str, object]]]] = {}
    for item in aside:
        fields: dict[str, object] = {"sha256": item.sha256}
        if item.failure is not None:
            fields.update(error=item.failure.error, reason=item.failure.message,
                          attempts=item.attempts)
            if item.failure.line is not None:
                fields["line"] = item.failure.line
        else:
            fields["duplicate_of"] = item.duplicate_of
        by_state.setdefault(item.state, []).append((item.file, fields))
    return by_state
