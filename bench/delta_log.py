"""A Delta log after a week of a commit a second: how long the table takes to open.

    python -m bench.delta_log --commits 10000 --compact-every 100 --spacing 1
    python -m bench.delta_log --commits 40 --filler 600000

Commits `--commits` times through `ingest.store.delta.commit` (one part file per
commit, as a trickle of one small file a second makes them; the part files are hard
links of one small Parquet file, since delta-rs never opens them), and every
`--compact-every` commits one compaction commit that removes those parts and adds one,
as `ingest run` does. Checkpoints come every `CHECKPOINT_EVERY` commits. Then it
times, best of five, a fresh `DeltaTable(path)` with its version and file list, a
Polars `read_delta` of the table, and the opening of the oldest version still in the log,
and says what the last checkpoint holds: its removed parts are those younger than the
table's `delta.deletedFileRetentionDuration`, all of them in a run of minutes.

`--spacing S` dates each log entry as if the commits had come S seconds apart, the last
one now, so that the table's `delta.logRetentionDuration` expires the older ones as a
week would. `--filler N` first writes N entries of commits that change nothing, and a
checkpoint after them: the log a longer retention would leave, for the time a commit
takes against the size of the log folder, which every commit and every open lists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from ingest.store import delta
from ingest.store.crashpoints import CrashPlan
from ingest.store.layout import Layout

DAY = "2026-01-01"


def _best(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _fill(layout: Layout, entries: int) -> None:
    """`entries` log entries after the first commit's, each a commit that changes nothing,
    and a checkpoint at the last of them: the first commit's own, since the state is the
    same (replaying the entries to make it would take longer than the run)."""
    log = layout.output / "records" / "_delta_log"
    DeltaTable(str(layout.output / "records")).create_checkpoint()
    line = json.dumps({"commitInfo": {"timestamp": int(time.time() * 1000),
                                      "operation": "WRITE"}}) + "\n"
    for version in range(1, entries + 1):
        (log / f"{version:020d}.json").write_text(line)
    shutil.copy(log / f"{0:020d}.checkpoint.parquet", log / f"{entries:020d}.checkpoint.parquet")
    last = json.loads((log / "_last_checkpoint").read_text())
    (log / "_last_checkpoint").write_text(json.dumps({**last, "version": entries}))
    layout.logs.clear()


def _date(layout: Layout, when: float) -> None:
    """The newest log entry, and a checkpoint made with it, dated `when`: deltalake deletes
    expired entries from the oldest on, up to the first that is not."""
    log = layout.output / "records" / "_delta_log"
    version = layout.logs["records"].version()
    for entry in (log / f"{version:020d}.json", log / f"{version:020d}.checkpoint.parquet"):
        if entry.exists():
            os.utime(entry, (when, when))


def simulate(
    root: Path, commits: int, compact_every: int, spacing: float = 0, filler: int = 0
) -> tuple[Layout, list[float]]:
    """Commit as a week of `ingest run` would; return the layout and each commit's time."""
    layout = Layout(root / "drop", root / "output", root / "q", root / "a", delta=True)
    folder = layout.output / "records" / f"ingest_date={DAY}"
    folder.mkdir(parents=True)
    seed = root / "seed.parquet"
    pq.write_table(pa.table({"source_file": ["f"] * 10, "v": list(range(10))}), seed)
    crash = CrashPlan()
    live: list[str] = []
    took: list[float] = []
    last = time.time()
    for n in range(commits):
        rel = f"records/ingest_date={DAY}/part-{n:08d}-0.parquet"
        os.link(seed, layout.output / rel)
        started = time.perf_counter()
        delta.commit(layout, delta.Change("records", add=[rel]), crash)
        took.append(time.perf_counter() - started)
        when = last - (commits - n) * spacing
        if spacing:
            _date(layout, when)
        if n == 0 and filler:
            _fill(layout, filler)
        live.append(rel)
        if len(live) >= compact_every:
            merged = f"records/ingest_date={DAY}/part-c{n:08d}-0.parquet"
            os.link(seed, layout.output / merged)
            delta.commit(layout, delta.Change(
                "records", add=[merged], remove=live, data_change=False), crash)
            if spacing:
                _date(layout, when)
            for gone in live:
                (layout.output / gone).unlink()
            live = [merged]
    return layout, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--compact-every", type=int, default=100)
    parser.add_argument("--spacing", type=float, default=0,
                        help="seconds between the commits, as the log entries are dated")
    parser.add_argument("--filler", type=int, default=0,
                        help="log entries that change nothing, written after the first commit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        layout, took = simulate(
            Path(scratch), args.commits, args.compact_every, args.spacing, args.filler
        )
        path = str(layout.output / "records")
        log = layout.output / "records" / "_delta_log"
        table = DeltaTable(path)
        oldest = min(int(p.name.split(".")[0]) for p in log.glob("*.json"))

        def open_table() -> None:
            found = DeltaTable(path)
            found.version()
            found.file_uris()

        tail = took[-min(500, len(took)):]
        print(f"commits               {args.commits} ({len(took) / sum(took):.0f}/s), one"
              f" compaction per {args.compact_every}; the last {len(tail)}, median"
              f" {statistics.median(tail) * 1000:.1f} ms each")
        print(f"log folder            {sum(1 for _ in log.iterdir())} entries")
        print(f"table version         {table.version()}, txn {table.transaction_version('ingest')}")
        print(f"log entries           {len(list(log.glob('*.json')))} JSON,"
              f" {len(list(log.glob('*.checkpoint*.parquet')))} checkpoints")
        checkpoint = max(log.glob("*.checkpoint.parquet"), default=None)
        if checkpoint is not None:
            actions = pq.read_table(checkpoint)
            tombstones = actions.num_rows - actions.column("remove").null_count
            print(f"last checkpoint       {checkpoint.stat().st_size} bytes, {actions.num_rows}"
                  f" actions, {tombstones} of them removed parts (tombstones)")
        print(f"open + files          {_best(open_table) * 1000:.1f} ms")
        print(f"polars read_delta     {_best(lambda: pl.read_delta(path)) * 1000:.1f} ms")
        print(f"open version {oldest:<8} "
              f"{_best(lambda: DeltaTable(path, version=oldest).version()) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
