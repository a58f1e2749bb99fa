"""Part files: write, fsync, rename into place, record; and repair after a crash.

Called in a thread of the main process, never on the event loop.

The commit protocol for one batch, and what a crash after each step leaves:

    write temps + fsync   crash: orphan temps, inputs unrecorded -> temps removed, re-read
    ledger: part pending  crash: pending part, nothing visible    -> part discarded, re-read
    rename + fsync dirs   crash: some parts visible but pending   -> parts deleted, re-read
    ledger: committed     crash: inputs still in the drop folder  -> known, only disposed of

A part is visible to readers only once renamed, and counted only once committed,
so readers that honour the ledger never see a duplicate. Readers that glob the
folder may, for an instant after a crash, see a part that the next start-up
removes; the rule is that a part the ledger does not hold as committed is not
ours to keep: it goes to `_ingest/orphans/`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .crashpoints import CrashPlan
from .files import DropFile
from .layout import Layout, new_part_id, today
from .ledger import FileRecord, Ledger

log = logging.getLogger("ingest.parts")

# Row groups of about a million rows: large enough for scans to skip by statistics,
# small enough that a reader's memory per column chunk stays modest.
ROW_GROUP_ROWS = 1 << 20
FOOTER_SOURCES = b"ingest.sources"
FOOTER_VERSION = b"ingest.version"


@dataclass
class Accepted:
    """A file whose worker returned tables, waiting in a batch to be committed."""

    file: DropFile
    sha256: str
    rows: int
    records: pa.Table | None
    features: pa.Table | None
    attempts: int = 1

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.records, self.features) if t is not None)

    def record(self, part: str | None, state: str = "ingested") -> FileRecord:
        return FileRecord(
            path=self.file.rel, size=self.file.size, mtime_ns=self.file.mtime_ns,
            sha256=self.sha256, state=state, rows=self.rows, part=part,
            attempts=self.attempts, seen_at=self.file.seen_at, done_at=time.time(),
        )


@dataclass
class Published:
    part_id: str | None
    committed: list[Accepted] = field(default_factory=list)
    changed: list[Accepted] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unchanged(file: DropFile) -> bool:
    """Re-check at commit: the bytes we read are still the file's bytes."""
    try:
        st = os.stat(file.path)
    except FileNotFoundError:
        return True  # removed after a complete, hashed read; what we hold is whole
    return st.st_size == file.size and st.st_mtime_ns == file.mtime_ns


def _footer(entries: list[Accepted]) -> dict[bytes, bytes]:
    sources = [[e.file.rel, e.sha256, e.rows] for e in entries]
    return {FOOTER_VERSION: __version__.encode(), FOOTER_SOURCES: json.dumps(sources).encode()}


def _group_by_schema(entries: list[Accepted]) -> list[list[Accepted]]:
    groups: dict[pa.Schema, list[Accepted]] = defaultdict(list)
    for entry in entries:
        if entry.records is not None:
            groups[entry.records.schema.remove_metadata()].append(entry)
    return list(groups.values())


def _tables(entries: list[Accepted], now: float) -> list[tuple[str, pa.Table, list[Accepted]]]:
    """(table name, data, the inputs in it) for every part file of one batch."""
    out: list[tuple[str, pa.Table, list[Accepted]]] = []
    for group in _group_by_schema(entries):
        data = pa.concat_tables([e.records.replace_schema_metadata(None) for e in group])  # type: ignore[union-attr]
        out.append(("records", data, group))
    with_features = [e for e in entries if e.features is not None]
    if with_features:
        data = pa.concat_tables(
            [e.features for e in with_features], promote_options="permissive"
        )
        stamp = pa.scalar(int(now * 1_000_000), pa.timestamp("us", tz="UTC"))
        data = data.append_column("ingested_at", pa.repeat(stamp, data.num_rows))
        out.append(("features", data, with_features))
    return out


def write_temp(
    table: pa.Table,
    path: Path,
    compression: str,
    footer: dict[bytes, bytes],
    crash: CrashPlan,
) -> None:
    pq.write_table(
        table.replace_schema_metadata(footer),
        path,
        compression=None if compression == "none" else compression,
        row_group_size=ROW_GROUP_ROWS,
        # Microseconds: Spark and older readers reject nanosecond timestamps.
        coerce_timestamps="us",
        allow_truncated_timestamps=True,
    )
    crash.reached("temp-written")
    fsync_path(path)
    crash.reached("temp-fsynced")


def publish(
    ledger: Ledger,
    layout: Layout,
    compression: str,
    entries: list[Accepted],
    also: list[FileRecord],
    crash: CrashPlan,
) -> Published:
    """Commit one batch: its part files and ledger rows, crash-safely, in that order.

    On an error (a full disk, say) everything this call made is removed again,
    so the caller can retry the same batch later.
    """
    result = Published(part_id=None)
    for entry in entries:
        (result.committed if unchanged(entry.file) else result.changed).append(entry)
    if not result.committed:
        ledger.record(also)
        return result
    part_id, day, now = new_part_id(), today(), time.time()
    planned: list[tuple[Path, Path]] = []
    begun = False
    try:
        for index, (table_name, data, members) in enumerate(_tables(result.committed, now)):
            final = layout.part_path(table_name, day, f"part-{part_id}-{index}.parquet")
            temp = layout.tmp / f"{final.name}.tmp"
            planned.append((temp, final))
            write_temp(data, temp, compression, _footer(members), crash)
        ledger.begin_part(part_id, [layout.relative_output(final) for _, final in planned])
        begun = True
        crash.reached("part-pending")
        _rename_into_place(planned, crash)
        ledger.finish_part(part_id, [e.record(part_id) for e in result.committed] + also)
    except BaseException:
        _undo(ledger, part_id if begun else None, planned)
        raise
    crash.reached("ledger-committed")
    result.part_id = part_id
    result.paths = [final for _, final in planned]
    return result


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


def _undo(ledger: Ledger, part_id: str | None, planned: list[tuple[Path, Path]]) -> None:
    for temp, final in planned:
        temp.unlink(missing_ok=True)
        if part_id is not None:
            final.unlink(missing_ok=True)
    if part_id is not None:
        try:
            ledger.forget_part(part_id)
        except Exception:
            log.exception("could not forget part %s; start-up repair will remove it", part_id)


def reconcile(ledger: Ledger, layout: Layout) -> dict[str, int]:
    """Start-up repair: undo interrupted commits, clear temps, set aside unknown parts."""
    counts = {"pending": 0, "temps": 0, "orphans": 0}
    for part_id, paths in ledger.pending_parts():
        for rel in paths:
            (layout.output / rel).unlink(missing_ok=True)
        ledger.forget_part(part_id)
        counts["pending"] += 1
    if layout.tmp.exists():
        for temp in layout.tmp.iterdir():
            temp.unlink(missing_ok=True)
            counts["temps"] += 1
    committed = ledger.committed_paths()
    for table in ("records", "features"):
        for path in sorted((layout.output / table).glob("*/part-*")):
            if layout.relative_output(path) not in committed:
                layout.orphans.mkdir(parents=True, exist_ok=True)
                shutil.move(path, layout.orphans / f"{table}-{path.parent.name}-{path.name}")
                counts["orphans"] += 1
    if any(counts.values()):
        log.warning(
            "start-up repair: %(pending)d interrupted parts removed, %(temps)d temp files"
            " removed, %(orphans)d unknown parts moved to _ingest/orphans",
            counts,
        )
    return counts
