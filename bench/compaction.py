"""The cost of compaction and of a rewrite to a wider schema, and a reader's scan before
and after compaction, on many small parts; or, with `--trickle`, what `ingest run`'s
own compaction writes while parts arrive one at a time:

    python -m bench.compaction --parts 1000 --rows 1000
    python -m bench.compaction --trickle --parts 2000 --rows 1000

Commits `--parts` parts of `--rows` rows each through the service's own commit
protocol (one input per part, as a trickle of small files makes them) in a scratch
folder, then times, best of three, a DuckDB and a Polars scan of the table; compacts
the partition (`ingest.store.compact.compact_partition`); scans again; and rewrites the
table with `v` widened from int64 to float64 and a new column (`rewrite_table`).
MB/s counts the bytes of the part files read.

With `--trickle`, each part is committed alone and followed by a pass of the
compactor `ingest run` runs between commits (`ingest.store.autocompact`), today's
partition growing all the while: the bytes the passes wrote against the bytes
committed (each row's rewrites), their time in all, the longest pass (what a commit
waits behind), and the most files the partition held.
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
from ingest.store.autocompact import Compactor
from ingest.store.compact import compact_partition, rewrite_table
from ingest.store.crashpoints import CrashPlan
from ingest.store.layout import Layout, today
from ingest.store.ledger import Ledger
from ingest.store.parts import Accepted, publish

TARGET = 128 * 1024 * 1024


def _part(i: int, rows: int, rng: np.random.Generator) -> tuple[str, str, bytes]:
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
    return name, sha, to_parquet(data, "zstd", footer([(name, sha, rows)]))


def _commit(layout: Layout, ledger: Ledger, i: int, rows: int, rng: np.random.Generator) -> int:
    """Commit part `i` through the service's protocol; its bytes."""
    name, sha, encoded = _part(i, rows, rng)
    part = EncodedPart("records", encoded, (name,))
    file = DropFile(layout.drop / name, name, i, i, 0.0, 0.0)
    publish(ledger, layout, [Accepted(file, sha, rows)], [part], [], CrashPlan())
    return len(encoded)


def _seed(layout: Layout, ledger: Ledger, parts: int, rows: int) -> None:
    rng = np.random.default_rng(7)
    for i in range(parts):
        _commit(layout, ledger, i, rows, rng)


def _sizes(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in folder.rglob("*.parquet")}


def _trickle(parts: int, rows: int) -> None:
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        layout = Layout(root / "drop", root / "output", root / "quarantine", root / "archive")
        layout.make_dirs()
        ledger = Ledger(layout.ledger)
        compactor = Compactor(layout, CrashPlan(), TARGET)
        table = layout.output / "records"
        committed = written = most = 0
        spent = longest = 0.0
        for i in range(parts):
            committed += _commit(layout, ledger, i, rows, rng)
            before = _sizes(table)
            started = time.perf_counter()
            compactor.step(ledger)
            took = time.perf_counter() - started
            spent, longest = spent + took, max(longest, took)
            after = _sizes(table)
            written += sum(size for path, size in after.items() if path not in before)
            most = max(most, len(after))
        ledger.close()
    print(f"{parts} parts of {rows} rows committed one at a time ({committed / 1e6:.1f} MB)")
    print("| compaction wrote | per byte committed | passes took | longest pass |"
          " most files | files at the end |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {written / 1e6:.1f} MB | {written / committed:.1f} | {spent:.1f} s"
          f" | {longest:.2f} s | {most} | {len(after)} |")


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
    parser.add_argument("--trickle", action="store_true")
    args = parser.parse_args()
    if args.trickle:
        _trickle(args.parts, args.rows)
        return
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
