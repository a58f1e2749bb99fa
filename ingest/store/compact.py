"""Compaction and rewrites: many part files become few, atomically for readers, exactly once.

Runs in a thread of the main process: the committer's thread under `ingest run`
(`autocompact.py`), or `ingest compact`. Never on the event loop, never in a worker,
and never beside another writer of the same output folder.

Both `compact_partition` (one partition of a table) and `rewrite_table` (every part of
a table, cast to a wider schema) are one swap of a folder, with its crash table:

    stage: merged files written + fsynced, the parts
      that stay hard-linked, under _ingest/swap-<id>/   crash: staged folder, no record -> removed
    ledger: swap staged, new files pending      crash: nothing visible changed   -> removed
    RENAME_EXCHANGE live <-> staged (`swap.py`)  crash: new files live, pending   -> committed
    (Delta: one commit, old parts out, new in)  crash: as above; the log follows -> committed
    ledger: new files committed, old forgotten   crash: old files in _ingest      -> removed
    remove _ingest/swap-<id>/, forget the swap   crash: a finished record         -> forgotten

A reader that lists the folder sees every old file or every new one; a reader that
listed the old files and opens one after the swap finds it gone, an error it can
retry, never a wrong row. The footer of a merged file lists its inputs, and the
ledger's catalog says which file holds each input's rows (`Ledger.parts_of`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .catalog import Swap
from .crashpoints import CrashPlan
from .fsync import fsync_path
from .layout import Layout, new_part_id
from .ledger import Ledger
from .merge import Source, merge
from .swap import repair_swaps, swap, unswap

log = logging.getLogger("ingest.compact")

# A part at least this share of the target size is left as it is.
BIG_ENOUGH = 0.5
# In a growing partition, a bigger file joins a merge while it is at most this many times
# the files smaller than it that the merge takes (`smallest`).
GROWTH = 3


@dataclass(frozen=True)
class Outcome:
    """What one compaction or rewrite did, for the log."""

    table: str
    day: str | None
    before: int
    after: int
    bytes_before: int
    bytes_after: int
    seconds: float

    def line(self) -> str:
        where = self.table + (f"/ingest_date={self.day}" if self.day else "")
        return (
            f"compacted {where}: parts {self.before} -> {self.after},"
            f" {self.bytes_before / 1e6:.1f} MB -> {self.bytes_after / 1e6:.1f} MB"
            f" in {self.seconds:.2f}s"
        )


def plan(
    paths: Sequence[Path], target_bytes: int, everything: bool, growing: bool = False,
    missing: set[Path] | None = None,
) -> list[list[Path]]:
    """Bins of files to merge, each up to `target_bytes`, files of one schema together.
    A file left alone is in no bin; with `everything`, every file is in one. With
    `growing` (a partition still being written to; never with `everything`), only a run of
    files of about one size, per schema, is merged (`smallest`). `missing`: the parts found
    gone before, not warned of again (a running service looks at a partition often)."""
    by_schema: dict[pa.Schema, list[Path]] = {}
    sizes: dict[Path, int] = {}
    for path in paths:
        try:
            size = sizes[path] = path.stat().st_size
        except FileNotFoundError:
            # Removed by hand: the rest of the partition is still compacted, and widened.
            if missing is None or path not in missing:
                log.warning(
                    "%s is in the ledger but not on disk: left out; its rows are gone from"
                    " the table (`ingest ledger rebuild` makes the ledger agree with the"
                    " output)", path,
                )
            if missing is not None:
                missing.add(path)
            continue
        if everything or size < target_bytes * BIG_ENOUGH:
            by_schema.setdefault(pq.read_schema(path).remove_metadata(), []).append(path)
    bins: list[list[Path]] = []
    for group in by_schema.values():
        bins += bins_of(smallest(group, sizes) if growing else group, sizes, target_bytes)
    return [b for b in bins if everything or len(b) > 1]


def bins_of(group: list[Path], sizes: dict[Path, int], target_bytes: int) -> list[list[Path]]:
    """`group` in order, cut into bins of up to `target_bytes` (a file bigger is one alone)."""
    bins: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for path in group:
        if current and size + sizes[path] > target_bytes:
            bins.append(current)
            current, size = [], 0
        current.append(path)
        size += sizes[path]
    if current:
        bins.append(current)
    return bins


def smallest(group: list[Path], sizes: dict[Path, int]) -> list[Path]:
    """The files a merge in a growing partition takes: in order of size, the first run of
    two or more in which each next file is at most GROWTH times those before it in the
    run; none if there is no such run. A file too small or too big to pair with its
    neighbours waits, without holding the others back.

    Merging every small file each time rewrote the partition's biggest file for a few new
    parts, again and again until it was big enough to be left. Taken this way, a file joins
    a merge only with smaller files that add up to a third of its size or more, as in a
    size-tiered LSM tree. For a day's trickle of 170 KB parts (14 GB,
    `bench/compaction_model.py`), the bytes compaction writes are 7.4 times those
    committed, against 186 that way."""
    ordered = sorted(group, key=lambda p: sizes[p])
    for first in range(len(ordered) - 1):
        taken = {ordered[first]}
        total = sizes[ordered[first]]
        for path in ordered[first + 1:]:
            if sizes[path] > GROWTH * total:
                break
            taken.add(path)
            total += sizes[path]
        if len(taken) >= 2:
            return [path for path in group if path in taken]  # in their order: rows stay in it
    return []


def compact_partition(
    ledger: Ledger, layout: Layout, table: str, day: str, crash: CrashPlan,
    target_bytes: int, compression: str = "zstd", growing: bool = False,
    missing: set[Path] | None = None,
) -> Outcome | None:
    """Merge the small committed parts of one partition; None if there is nothing to merge.
    `growing`, `missing`: as for `plan`."""
    live = layout.output / table / f"ingest_date={day}"
    paths = [layout.output / p.path for p in ledger.part_files(table, day)]
    bins = plan(paths, target_bytes, everything=False, growing=growing, missing=missing)
    if not bins:
        return None
    return _swap(ledger, layout, table, day, live, bins, crash, compression, None, None)


def rewrite_table(
    ledger: Ledger, layout: Layout, table: str, schema: pa.Schema, crash: CrashPlan,
    target_bytes: int = 128 * 1024 * 1024, compression: str = "zstd",
    schema_version: int | None = None,
) -> Outcome | None:
    """Rewrite every committed part of `table` cast to `schema` (a widening), compacting
    each partition as it goes, and swap the whole table folder at once: readers never see
    two schemas in one table. None if the table has no part yet."""
    live = layout.output / table
    by_day: dict[str, list[Path]] = {}
    for part in ledger.part_files(table):
        by_day.setdefault(part.day, []).append(layout.output / part.path)
    bins = [b for paths in by_day.values() for b in plan(paths, target_bytes, everything=True)]
    if not bins:
        return None
    return _swap(ledger, layout, table, None, live, bins, crash, compression, schema,
                 schema_version)


def _swap(
    ledger: Ledger, layout: Layout, table: str, day: str | None, live: Path,
    bins: list[list[Path]], crash: CrashPlan, compression: str,
    schema: pa.Schema | None, schema_version: int | None,
) -> Outcome:
    started = time.monotonic()
    before = _parts_in(live)
    swap_id = new_part_id()
    root = layout.stage(f"swap-{swap_id}")
    staged = root / live.name
    old = {path for group in bins for path in group}
    holds: dict[str, list[Source]] = {}
    sizes: dict[str, int] = {}
    begun = swapped = False
    logged = None  # the table's txn version in its Delta log before the swap's commit
    try:
        _link_all_but(live, staged, old)
        for index, group in enumerate(bins):
            out = staged / group[0].parent.relative_to(live) / f"part-{swap_id}-{index}.parquet"
            rel = layout.relative_output(live / out.relative_to(staged))
            holds[rel] = merge(group, out, compression, schema, schema_version)
            sizes[rel] = out.stat().st_size
        _fsync_tree(staged)
        ledger.begin_swap(Swap(
            swap_id, table, day, layout.relative_output(root),
            sorted(layout.relative_output(p) for p in old), sorted(holds), "staged",
        ), sizes)
        begun = True
        crash.reached("compact-staged")
        swap(live, staged, root / "old")
        swapped = True
        fsync_path(live.parent)
        fsync_path(root)
        crash.reached("compact-swapped")
        if layout.delta:
            from . import delta

            logged = delta.txn_version(layout, table)
            _to_delta(layout, table, sorted(holds), sorted(layout.relative_output(p) for p in old),
                      schema, crash)
        ledger.finish_swap(swap_id, holds)
        crash.reached("compact-committed")
    except BaseException:
        if swapped and logged is not None and not _logged_since(layout, table, logged):
            # The Delta commit failed (a full disk): the log names the old parts, which
            # readers of the table then open. They go back in place, not the new ones.
            unswap(live, staged, root / "old")
            fsync_path(live.parent)
            shutil.rmtree(root, ignore_errors=True)
            ledger.drop_swap(swap_id)
        elif swapped or not live.exists():
            repair_swaps(ledger, layout)  # the new files are (or are going) live: roll forward
        else:
            shutil.rmtree(root, ignore_errors=True)
            if begun:
                ledger.drop_swap(swap_id)
        raise
    shutil.rmtree(root)
    crash.reached("compact-removed")
    ledger.drop_swap(swap_id)
    after = _parts_in(live)
    return Outcome(
        table, day, len(before), len(after), sum(before.values()), sum(after.values()),
        time.monotonic() - started,
    )


def _logged_since(layout: Layout, table: str, before: int) -> bool:
    """Whether the table's Delta log holds a commit of ours past txn version `before`;
    True when the log cannot be read (the swap is then rolled forward, and the log is
    brought to the ledger at the next start)."""
    from . import delta

    try:
        return delta.txn_version(layout, table) > before
    except Exception:  # deltalake's errors are its own: any of them leaves it unknown
        return True


def _to_delta(
    layout: Layout, table: str, new: list[str], old: list[str], schema: pa.Schema | None,
    crash: CrashPlan,
) -> None:
    """The swap as one Delta commit: the old parts removed, the new added (no data change);
    a rewrite to a wider schema replaces every part and the schema in that commit."""
    from . import delta

    change = delta.Change(table, add=new, remove=old, data_change=schema is not None,
                          schema=schema)
    delta.commit(layout, change, crash)


def _link_all_but(live: Path, staged: Path, old: set[Path]) -> None:
    """The staged folder: a hard link to every file of `live` that is not rewritten."""
    for folder, _, names in os.walk(live):
        target = staged / Path(folder).relative_to(live)
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            if Path(folder, name) not in old:
                os.link(Path(folder, name), target / name)


def _parts_in(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in folder.rglob("part-*.parquet")}


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_dir():
            fsync_path(path)
    fsync_path(folder)

