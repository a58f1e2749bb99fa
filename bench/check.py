"""Does a run's output hold the right answer? Row counts and features, compared.

Reads `<out>/records/**/*.parquet` and `<out>/features/**/*.parquet` the way a
downstream reader would (hive partitioning, underscore folders skipped).
`source_file` is reduced to its base name: ingest stores the path relative to
the drop folder, DuckDB and Polars the path they globbed, and the corpus is flat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .peers.common import FLOAT_FEATURES

REL_TOL = 1e-9
# Enough to tell what went wrong without flooding the report.
MAX_PROBLEMS = 5
Key = tuple[str, str]
Values = tuple[float | int | None, ...]


@dataclass(frozen=True)
class Output:
    """One run's answer, keyed by base name of the source file."""

    rows: dict[str, int]
    features: dict[Key, Values]
    duplicates: int


def _dataset(folder: Path) -> ds.Dataset:
    return ds.dataset(folder, format="parquet", partitioning="hive")


def _name(source_file: str) -> str:
    return PurePosixPath(source_file.replace("\\", "/")).name


def _row_counts(folder: Path) -> dict[str, int]:
    table = _dataset(folder).to_table(columns=["source_file"])
    # Polars writes string views; group_by wants plain strings.
    table = table.cast(pa.schema([pa.field("source_file", pa.string())]))
    counts = table.group_by("source_file").aggregate([([], "count_all")])
    rows: dict[str, int] = {}
    for source, count in zip(
        counts["source_file"].to_pylist(), counts["count_all"].to_pylist(), strict=True
    ):
        rows[_name(source)] = rows.get(_name(source), 0) + count
    return rows


def _features(folder: Path) -> tuple[dict[Key, Values], int]:
    dataset = _dataset(folder)
    names = ["source_file", "source_column", "count", "null_count", *FLOAT_FEATURES]
    condition = None
    # ingest adds a `window` column; the whole-file rows are the ones with no window.
    if "window" in dataset.schema.names:
        condition = pc.field("window").is_null()
    table = dataset.to_table(columns=names, filter=condition)
    columns = [table[name].to_pylist() for name in names]
    features: dict[Key, Values] = {}
    duplicates = 0
    for source, column, *values in zip(*columns, strict=True):
        key = (_name(source), column)
        duplicates += key in features
        features[key] = tuple(values)
    return features, duplicates


def load(output_dir: Path) -> Output:
    features, duplicates = _features(output_dir / "features")
    return Output(_row_counts(output_dir / "records"), features, duplicates)


def _close(a: float | int | None, b: float | int | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)


def compare_rows(expected: dict[str, int], got: Output) -> list[str]:
    problems = [
        f"{name}: {got.rows.get(name)} rows, expected {count}"
        for name, count in sorted(expected.items())
        if got.rows.get(name) != count
    ]
    problems += [
        f"{name}: unexpected source file" for name in sorted(set(got.rows) - set(expected))
    ]
    return problems


def compare_features(reference: Output, got: Output) -> list[str]:
    """Every (file, column) present once, and every value within REL_TOL of the reference."""
    problems = [f"{got.duplicates} duplicate feature rows"] if got.duplicates else []
    missing = sorted(set(reference.features) - set(got.features))
    extra = sorted(set(got.features) - set(reference.features))
    problems += [f"{key}: missing features" for key in missing]
    problems += [f"{key}: unexpected features" for key in extra]
    names = ["count", "null_count", *FLOAT_FEATURES]
    for key in sorted(set(reference.features) & set(got.features)):
        for name, want, have in zip(names, reference.features[key], got.features[key], strict=True):
            if not _close(want, have):
                problems.append(f"{key} {name}: {have!r}, reference {want!r}")
    return problems


def verdict(problems: list[str]) -> str:
    if not problems:
        return "ok"
    shown = "; ".join(problems[:MAX_PROBLEMS])
    more = len(problems) - MAX_PROBLEMS
    return f"{len(problems)} problem(s): {shown}" + (f"; and {more} more" if more > 0 else "")
