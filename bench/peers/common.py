"""What every peer shares: the output layout, the feature schema, the CLI shape.

A peer takes a flat folder of CSVs (or of JSON Lines files) and an output folder, and writes
`<out>/records/*.parquet` (every row plus `source_file`) and
`<out>/features/*.parquet` (one row per file and channel), both zstd.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

CHANNELS = tuple(f"ch{k}" for k in range(8))
# One corpus holds one format; the suffix says which.
SUFFIXES = (".csv", ".jsonl")
# The columns of every corpus. pyarrow's CSV reader infers them; its JSON reader is
# given them, as DuckDB and Polars are for both formats.
INPUT_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.int64()),
        pa.field("device", pa.string()),
        *(pa.field(name, pa.float64()) for name in CHANNELS),
    ]
)
FLOAT_FEATURES = ("mean", "std", "min", "max", "p05", "p50", "p95", "rms")
FEATURE_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string()),
        pa.field("source_column", pa.string()),
        pa.field("count", pa.int64()),
        pa.field("null_count", pa.int64()),
        *(pa.field(name, pa.float64()) for name in FLOAT_FEATURES),
    ]
)
FeatureRow = dict[str, object]
Job = Callable[[Path, Path], None]


def input_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)


def input_suffix(folder: Path) -> str:
    """The format of a corpus folder, by the suffix of its files (`.csv` when it is empty)."""
    return next((p.suffix for p in input_files(folder)), ".csv")


def read_table(path: Path, use_threads: bool = True) -> pa.Table:
    """One input file as an Arrow table, with pyarrow's CSV or JSON reader."""
    if path.suffix == ".jsonl":
        return pa_json.read_json(
            path,
            read_options=pa_json.ReadOptions(use_threads=use_threads),
            parse_options=pa_json.ParseOptions(explicit_schema=INPUT_SCHEMA),
        )
    return pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(use_threads=use_threads))


def records_dir(out: Path) -> Path:
    path = out / "records"
    path.mkdir(parents=True, exist_ok=True)
    return path


def summary(source_file: str, column: str, values: np.ndarray) -> FeatureRow:
    """The `summary` set for one column, NaN standing for null, computed with numpy."""
    valid = values[~np.isnan(values)]
    count = int(valid.size)
    row: FeatureRow = {
        "source_file": source_file,
        "source_column": column,
        "count": count,
        "null_count": int(values.size - count),
    }
    if count == 0:
        return row
    p05, p50, p95 = np.percentile(valid, (5.0, 50.0, 95.0), method="linear")
    row.update(
        mean=float(valid.mean()),
        std=float(valid.std(ddof=1)) if count > 1 else None,
        min=float(valid.min()),
        max=float(valid.max()),
        p05=float(p05),
        p50=float(p50),
        p95=float(p95),
        rms=float(np.sqrt(np.dot(valid, valid) / count)),
    )
    return row


def write_features(rows: list[FeatureRow], out: Path) -> None:
    folder = out / "features"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=FEATURE_SCHEMA)
    pq.write_table(table, folder / "features.parquet", compression="zstd")


def cli(job: Job, argv: Sequence[str] | None = None) -> None:
    """`python -m bench.peers.<name> IN OUT`: run the reference job, exit 0 on success."""
    parser = argparse.ArgumentParser(description=job.__doc__)
    parser.add_argument("input", type=Path, help="folder of CSV or JSON Lines files")
    parser.add_argument("output", type=Path, help="folder for records/ and features/")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    job(args.input, args.output)
