"""The cost of compaction and of a rewrite to a wider schema, and a reader's scan before
and after compaction, on many small parts:

    python -m bench.compaction --parts 1000 --rows 1000

Commits `--parts` parts of `--rows` rows each through the service's own commit
protocol (one input per part, as a trickle of small files makes them) in a scratch
folder, then times, best of three, a DuckDB and a Polars scan of the table; compacts
the partition (`ingest.store.compact.compact_partition`); scans again; and rewrites the
table with `v` widened from int64 to float64 and a new column (`rewrite_table`).
MB/s counts the bytes of the part files read.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from ingest.files import DropFile
from ingest.jobs import EncodedPart
from ingest.partfile import footer, to_parquet
from ingest.store.compact import compact_partition, rewrite_table
from ingest.store.crashpoints import CrashPlan
from ingest.store.layout import Layout, today
from ingest.store.ledger import Ledger
from ingest.store.parts import Accepted, publish

TARGET = 128 * 1024 * 1024


def _seed(layout: Layout, ledger: Ledger, parts: int, rows: int) -> None:
    rng = np.random.default_rng(7)
    for i in range(parts):
        name = f"trickle_{i:06d}.csv"
        sha = hashlib.sha256(name.encode()).hexdigest()
        data = pa.table({
            "timestamp": pa.array(np.arange(rows) + i * rows, pa.int64()),
            "v": pa.array(rng.integers(0, 1000, rows), pa.int64()),
            "x": pa.array(rng.normal(10, 3, rows)),
            "station": pa.array([f"st{i % 17}"] * rows),
            "source_file": pa.array([name] * rows),
            "source_sha256": pa.array([sha] * rows),
        })
        encoded = to_parquet(data, "zstd", footer([(name, sha, rows)]))
        part = EncodedPart("records", encoded, (name,))
        file = DropFile(layout.drop / name, name, i, i, 0.0, 0.0)
        publish(ledger, layout, [Accepted(file, sha, rows)], [part], [], CrashPlan())


def _best(fn: Callable[[], object], times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _scans(glob: str) -> tuple[float, float]:
    sql = f"SELECT count(*), avg(x), max(v) FROM read_parquet('{glob}')"
    duck = _best(lambda: duckdb.connect().execute(sql).fetchall())
    polars = _best(lambda: pl.scan_parquet(glob).select(
        pl.len(), pl.col("x").mean(), pl.col("v").max()).collect())
    return duck, polars


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        layout = Layout(root / "drop", root / "output", root / "quarantine", root / "archive")
        layout.make_dirs()
        ledger = Ledger(layout.ledger)
        _seed(layout, ledger, args.parts, args.rows)
        table = layout.output / "records"
        glob = (table / "ingest_date=*" / "*.parquet").as_posix()
        small = _bytes(table)
        before = _scans(glob)
        started = time.perf_counter()
        compact_partition(ledger, layout, "records", today(), CrashPlan(), TARGET)
        compact_s = time.perf_counter() - started
        compacted = _bytes(table)
        after = _scans(glob)
        wider = pa.schema([("timestamp", pa.int64()), ("v", pa.float64()), ("x", pa.float64()),
                           ("station", pa.string()), ("source_file", pa.string()),
                           ("source_sha256", pa.string()), ("note", pa.string())])
        started = time.perf_counter()
        rewrite_table(ledger, layout, "records", wider, CrashPlan(), TARGET, schema_version=2)
        rewrite_s = time.perf_counter() - started
        ledger.close()
    rows = args.parts * args.rows
    print(f"{args.parts} parts of {args.rows} rows ({rows:,} rows)")
    print("| step | seconds | MB read | MB/s | files |")
    print("|---|---:|---:|---:|---:|")
    print(f"| compaction | {compact_s:.2f} | {small / 1e6:.1f} | {small / 1e6 / compact_s:.1f}"
          f" | {args.parts} -> 1 ({compacted / 1e6:.1f} MB) |")
    print(f"| rewrite to a wider schema | {rewrite_s:.2f} | {compacted / 1e6:.1f}"
          f" | {compacted / 1e6 / rewrite_s:.1f} | 1 -> 1 |")
    print("| scan (best of 3) | DuckDB s | Polars s |")
    print("|---|---:|---:|")
    print(f"| {args.parts} small parts | {before[0]:.3f} | {before[1]:.3f} |")
    print(f"| after compaction | {after[0]:.3f} | {after[1]:.3f} |")


if __name__ == "__main__":
    main()
