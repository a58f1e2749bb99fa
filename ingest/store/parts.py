"""Part files: write, fsync, rename into place, record; and repair after a crash.

Called in a thread of the main process, never on the event loop. The protocol
and its crash table are the package's docstring (`ingest/store/__init__.py`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import one_line
from ..files import DropFile, mtime_ns
from ..jobs import EncodedPart, WrittenPart
from .crashpoints import CrashPlan
from .delta_step import DeltaStep, Unsettled
from .fsync import fsync_path
from .layout import Layout, new_part_id, today
from .ledger import FileRecord, Ledger
from .swap import repair_swaps

log = logging.getLogger("ingest.parts")


@dataclass
class Accepted:
    """A file whose rows are in a worker's encoded parts, waiting to be committed."""

    file: DropFile
    sha256: str
    rows: int
    attempts: int = 1
    table: str = "records"
    dialect: str | None = None  # how a CSV was read, for `ingest explain`

    def record(self, part: str | None) -> FileRecord:
        return FileRecord(
            path=self.file.rel, size=self.file.size, mtime_ns=self.file.mtime_ns,
            sha256=self.sha256, state="ingested", rows=self.rows, part=part,
            attempts=self.attempts, seen_at=self.file.seen_at, done_at=time.time(),
            table=self.table, dialect=self.dialect,
        )


@dataclass(frozen=True)
class StagedPart:
    """A part file already written under `_ingest/tmp`: by a streamed file (fsynced), or
    by a local worker (`durable=False`: the commit fsyncs it, at the temp crash points).

    Unlike a part held as bytes, it survives a failed commit, so the retry can use it.
    """

    table: str
    temp: Path
    durable: bool = True
    schema: bytes = b""  # its Arrow schema (IPC) when the writer said; else read from the file
    sources: tuple[str, ...] | None = None  # the inputs it holds; None: all of its batch
    settled: bool = False  # as EncodedPart's

    @classmethod
    def written(cls, part: WrittenPart) -> StagedPart:
        return cls(
            part.table, Path(part.path), durable=False, schema=part.schema, sources=part.sources,
            settled=part.settled,
        )


def remove_staged(parts: Sequence[EncodedPart | StagedPart]) -> None:
    """Delete the parts staged under `_ingest/tmp`; those held as bytes need nothing."""
    for part in parts:
        if isinstance(part, StagedPart):
            part.temp.unlink(missing_ok=True)


@dataclass
class Published:
    part_id: str | None
    committed: list[Accepted] = field(default_factory=list)
    changed: list[Accepted] = field(default_factory=list)  # every file of the task, if one did
    moved: set[str] = field(default_factory=set)  # those of them found changed themselves
    paths: list[Path] = field(default_factory=list)


def unchanged(file: DropFile) -> bool:
    """Re-check at commit: the bytes we read are still the file's bytes."""
    try:
        st = os.stat(file.path)
    except FileNotFoundError:
        return True  # removed after a complete, hashed read; what we hold is whole
    return st.st_size == file.size and mtime_ns(st) == file.mtime_ns


def as_read(file: DropFile) -> bool:
    """The file is in the drop folder as it was read: it can be read again."""
    try:
        st = os.stat(file.path)
    except OSError:
        return False
    return st.st_size == file.size and mtime_ns(st) == file.mtime_ns


def write_temp(data: bytes, path: Path, crash: CrashPlan) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        crash.reached("temp-written")
        fh.flush()
        os.fsync(fh.fileno())
    crash.reached("temp-fsynced")


def publish(
    ledger: Ledger,
    layout: Layout,
    accepted: list[Accepted],
    parts: Sequence[EncodedPart | StagedPart],
    also: list[FileRecord],
    crash: CrashPlan,
) -> Published:
    """Commit one task's part files and ledger rows, crash-safely, in that order.

    The parts hold the rows of every file in `accepted`, so they are committed
    together or not at all: if any input changed since it was read, none is,
    and all are read again. On an error (a full disk, say) everything this
    call made is removed again, so the caller can retry the same batch later.
    """
    moved = {entry.file.rel for entry in accepted if not unchanged(entry.file)}
    if moved:
        ledger.record(also)
        for part in parts:
            if isinstance(part, StagedPart):
                part.temp.unlink(missing_ok=True)
        return Published(None, changed=accepted, moved=moved)
    result = Published(None, committed=accepted)
    if not parts:
        ledger.record(also)
        return result
    part_id, day = new_part_id(), today()
    planned: list[tuple[Path, Path]] = []
    written: list[Path] = []
    begun = False
    logs: DeltaStep | None = None
    try:
        for index, part in enumerate(parts):
            final = layout.part_path(part.table, day, f"part-{part_id}-{index}.parquet")
            if isinstance(part, StagedPart):
                if not part.durable:
                    crash.reached("temp-written")
                    fsync_path(part.temp)
                    crash.reached("temp-fsynced")
                planned.append((part.temp, final))
                continue
            temp = layout.tmp / f"{final.name}.tmp"
            planned.append((temp, final))
            written.append(temp)
            write_temp(part.data, temp, crash)
        rels = [layout.relative_output(final) for _, final in planned]
        records = [e.record(part_id) for e in accepted] + also
        holds = _holds(rels, parts, accepted, every=layout.delta)
        logs = DeltaStep.plan(ledger, layout, rels, records, holds)
        ledger.begin_part(
            part_id, rels, [temp.stat().st_size for temp, _ in planned],
            logs.intent if logs else None,
        )
        begun = True
        crash.reached("part-pending")
        _rename_into_place(planned, crash)
        if logs:
            logs.commit(crash)
        crash.fail_here("ledger-commit", (entry.file.rel for entry in accepted))
        ledger.finish_part(part_id, records, holds)
    except BaseException as exc:
        if logs and not logs.revert():
            # The log has the part: start-up finishes it in the ledger. Until then no
            # commit may start, and this one is not its batch's fault (store/lasting.py).
            if isinstance(exc, Exception):
                raise Unsettled(
                    f"a commit is half in a Delta log ({one_line(exc)}); the next start"
                    " finishes or undoes it"
                ) from exc
            raise
        _undo(ledger, part_id if begun else None, planned, written, crash)
        raise
    crash.reached("ledger-committed")
    result.part_id = part_id
    result.paths = [final for _, final in planned]
    return result


def _holds(
    rels: list[str], parts: Sequence[EncodedPart | StagedPart], accepted: list[Accepted],
    every: bool,
) -> dict[str, list[tuple[str, str]]]:
    """Which inputs each part file holds, for the ledger's catalog: the files that hold only
    some of the accepted inputs, and (`every`, for a Delta intent) those that hold them
    all. The ledger fills in the files left out from its own rows (`Ledger.finish_part`)."""
    sha_of = {entry.file.rel: entry.sha256 for entry in accepted}
    holds: dict[str, list[tuple[str, str]]] = {}
    for rel, part in zip(rels, parts, strict=True):
        # A features file holds them all, as does a records file when they go to one table.
        whole = part.sources is None or sha_of.keys() <= set(part.sources)
        if whole and not every:
            continue
        names = sha_of if part.sources is None else part.sources
        holds[rel] = [(name, sha_of[name]) for name in names if name in sha_of]
    return holds


def _rename_into_place(planned: list[tuple[Path, Path]], crash: CrashPlan) -> None:
    folders = {final.parent for _, final in planned}
    for folder in folders:
        if not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
            fsync_path(folder.parent)
    for temp, final in planned:
        os.replace(temp, final)
        crash.reached("part-renamed")
    for folder in folders:
        fsync_path(folder)


def _undo(
    ledger: Ledger, part_id: str | None, planned: list[tuple[Path, Path]], written: list[Path],
    crash: CrashPlan,
) -> None:
    for temp in written:
        temp.unlink(missing_ok=True)
    for temp, final in planned:
        if part_id is not None and final.exists():
            if temp in written:
                final.unlink()
            else:
                os.replace(final, temp)  # a staged or worker-written part goes back, for the retry
    if part_id is not None:
        crash.reached("part-undone")
        try:
            ledger.forget_part(part_id)
        except Exception:
            log.exception("could not forget part %s; start-up repair will remove it", part_id)


def _in_delta_log(ledger: Ledger, layout: Layout, part_id: str, paths: list[str]) -> bool:
    from .delta_repair import finish_pending

    return finish_pending(ledger, layout, part_id, paths)


def _set_aside_delta_logs(layout: Layout, tables: Sequence[str]) -> None:
    """With plain Parquet, a table's Delta log from an earlier `format = "delta"` is moved
    to `_ingest/orphans`: kept where it was, it named none of the parts written since,
    and a Delta reader missed their rows without a word (a switch back to Delta makes a
    new log from the ledger)."""
    for table in tables:
        found = layout.output / table / "_delta_log"
        if not found.is_dir():
            continue
        layout.orphans.mkdir(parents=True, exist_ok=True)
        aside = layout.orphans / f"{table}-_delta_log-{new_part_id()}"
        shutil.move(found, aside)
        log.warning(
            'table %s: its Delta log is not kept with format = "parquet", and would hide'
            " the parts written since from Delta readers: moved to %s", table, aside,
        )


def reconcile(ledger: Ledger, layout: Layout) -> dict[str, int]:
    """Start-up repair: undo interrupted commits, clear temps, set aside unknown parts."""
    counts = {"pending": 0, "finished": 0, "temps": 0, "orphans": 0, "swaps": 0, "logs": 0}
    for part_id, paths in ledger.pending_parts():
        if layout.delta and _in_delta_log(ledger, layout, part_id, paths):
            counts["finished"] += 1
            continue
        for rel in paths:
            (layout.output / rel).unlink(missing_ok=True)
        ledger.forget_part(part_id)
        counts["pending"] += 1
    if layout.tmp.exists():
        for temp in layout.tmp.iterdir():
            temp.unlink(missing_ok=True)
            counts["temps"] += 1
    counts["swaps"] = repair_swaps(ledger, layout)
    committed = ledger.committed_paths()
    for table in layout.tables(ledger.tables()):
        for path in sorted((layout.output / table).glob("*/part-*")):
            if layout.relative_output(path) not in committed:
                layout.orphans.mkdir(parents=True, exist_ok=True)
                shutil.move(path, layout.orphans / f"{table}-{path.parent.name}-{path.name}")
                counts["orphans"] += 1
    if layout.delta:
        from .delta_repair import sync

        counts["logs"] = sync(ledger, layout, CrashPlan())
    else:
        _set_aside_delta_logs(layout, layout.tables(ledger.tables()))
    if any(counts.values()):
        log.warning(
            "start-up repair: %(pending)d interrupted parts removed, %(temps)d temp files"
            " removed, %(swaps)d interrupted compactions finished or undone,"
            " %(orphans)d unknown parts moved to _ingest/orphans",
            counts,
        )
    return counts
