"""A Delta log after a week of a commit a second: how long the table takes to open.

    python -m bench.delta_log --commits 10000 --compact-every 100

Commits `--commits` times through `ingest.store.delta.commit` (one part file per
commit, as a trickle of one small file a second makes them; the part files are hard
links of one small Parquet file, since delta-rs never opens them), and every
`--compact-every` commits one compaction commit that removes those parts and adds one,
as `ingest run` does. Checkpoints come every `CHECKPOINT_EVERY` commits. Then it
times, best of five, a fresh `DeltaTable(path)` with its version and file list, a
Polars `read_delta` of the table, and the opening of the oldest version still in the log,
and says what the last checkpoint holds: its removed parts are those younger than the
table's `delta.deletedFileRetentionDuration`, all of them in a run of minutes.
"""

from __future__ import annotations

import argparse
import os
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


def simulate(root: Path, commits: int, compact_every: int) -> tuple[Layout, float]:
    """Commit as a week of `ingest run` would; return the layout and commits per second."""
    layout = Layout(root / "drop", root / "output", root / "q", root / "a", delta=True)
    folder = layout.output / "records" / f"ingest_date={DAY}"
    folder.mkdir(parents=True)
    seed = root / "seed.parquet"
    pq.write_table(pa.table({"source_file": ["f"] * 10, "v": list(range(10))}), seed)
    crash = CrashPlan()
    live: list[str] = []
    started = time.perf_counter()
    for n in range(commits):
        rel = f"records/ingest_date={DAY}/part-{n:08d}-0.parquet"
        os.link(seed, layout.output / rel)
        delta.commit(layout, delta.Change("records", add=[rel]), crash)
        live.append(rel)
        if len(live) >= compact_every:
            merged = f"records/ingest_date={DAY}/part-c{n:08d}-0.parquet"
            os.link(seed, layout.output / merged)
            delta.commit(layout, delta.Change(
                "records", add=[merged], remove=live, data_change=False), crash)
            for gone in live:
                (layout.output / gone).unlink()
            live = [merged]
    return layout, commits / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--compact-every", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        layout, rate = simulate(Path(scratch), args.commits, args.compact_every)
        path = str(layout.output / "records")
        log = layout.output / "records" / "_delta_log"
        table = DeltaTable(path)
        oldest = min(int(p.name.split(".")[0]) for p in log.glob("*.json"))

        def open_table() -> None:
            found = DeltaTable(path)
            found.version()
            found.file_uris()

        print(f"commits               {args.commits} ({rate:.0f}/s), one compaction per"
              f" {args.compact_every}")
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
