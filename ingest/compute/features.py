"""Per-column numeric features, computed with numpy.

Runs in a worker process. A feature set is a function that takes one column's
values as float64, NaN standing for null, and returns a mapping of feature name
to value. `summary` is built in; any other set is named "package.module:function".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Iterator, Mapping

import numpy as np
import pyarrow as pa

from ..widen import folded

FeatureValue = float | int | None
FeatureSet = Callable[[np.ndarray], Mapping[str, FeatureValue]]

SUMMARY_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("count", pa.int64()),
    ("null_count", pa.int64()),
    ("mean", pa.float64()),
    ("std", pa.float64()),
    ("min", pa.float64()),
    ("max", pa.float64()),
    ("p05", pa.float64()),
    ("p50", pa.float64()),
    ("p95", pa.float64()),
    ("rms", pa.float64()),
)
IDENTITY_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("source_table", pa.string()),
    ("source_file", pa.string()),
    ("source_sha256", pa.string()),
    ("source_column", pa.string()),
    ("window", pa.int64()),
)
EMPTY: dict[str, FeatureValue] = {name: None for name, _ in SUMMARY_FIELDS}


def summary(values: np.ndarray) -> dict[str, FeatureValue]:
    """count, null_count, mean, std (ddof=1), min, max, p05/p50/p95 (linear), rms."""
    valid = values[~np.isnan(values)]
    count = int(valid.size)
    if count == 0:
        return {**EMPTY, "count": 0, "null_count": int(values.size)}
    p05, p50, p95 = np.percentile(valid, (5.0, 50.0, 95.0), method="linear")
    if np.isnan(p50) or np.isnan(p05) or np.isnan(p95):
        # Infinities, which numpy's interpolation meets with inf * 0 or inf - inf.
        position = np.array([q for _, q in QUANTILES]) * (count - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, count - 1)
        ranked = np.partition(valid, np.unique(np.concatenate((low, high))))
        p05, p50, p95 = lerp(ranked[low], ranked[high], position - low)
    mean = float(valid.mean())
    return {
        "count": count,
        "null_count": int(values.size - count),
        "mean": mean,
        "std": float(valid.std(ddof=1)) if count > 1 else None,
        "min": float(valid.min()),
        "max": float(valid.max()),
        "p05": float(p05),
        "p50": float(p50),
        "p95": float(p95),
        "rms": float(np.sqrt(np.dot(valid, valid) / count)),
    }


QUANTILES = (("p05", 0.05), ("p50", 0.50), ("p95", 0.95))


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Between the ranks `a` <= `b`, at `t` from 0 to 1: numpy's own form for
    method="linear", so finite results agree to the last bit; but where an end is
    infinite, where numpy's form gives NaN (inf * 0, inf - inf), the quantile of the
    values it stands for: `a` at a rank itself (t = 0, as DuckDB's quantile_cont gives),
    and an infinite end otherwise."""
    with np.errstate(invalid="ignore"):
        diff = b - a
        result: np.ndarray = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    finite = np.isfinite(diff)
    if finite.all():
        return result
    ends = np.where(np.isneginf(a) & ~np.isposinf(b) & (t < 1), a, result)
    ends = np.where(np.isposinf(b) & ~np.isneginf(a) & (t > 0), b, ends)
    ends = np.where((t == 0) | (a == b), a, ends)
    return np.where(finite, result, ends)


# Above this many values, a block's moments are taken column by column. Temporaries the size
# of the whole block are fresh memory from the OS on every call, and first touches of fresh
# pages cost more than the arithmetic (several times more, in a virtual machine).
COLUMNWISE_VALUES = 1 << 20


def moments(block: np.ndarray, axis: int = 0) -> tuple[np.ndarray, ...]:
    """count, mean, variance (ddof 1) and rms of every column, NaN as null; the rows
    run along `axis` (1: a stack of files' blocks, `summaries.py`)."""
    rows = block.shape[axis]
    missing = np.isnan(block)
    count = rows - missing.sum(axis=axis)
    # Without a null (the common block) the masks change nothing, and cost a third.
    gaps = bool(missing.any())
    zeroed = np.where(missing, 0.0, block) if gaps else block
    safe = np.maximum(count, 1)
    mean = zeroed.sum(axis=axis) / safe
    deviation = block - np.expand_dims(mean, axis)
    if gaps:
        deviation = np.where(missing, 0.0, deviation)
    variance = (deviation * deviation).sum(axis=axis) / np.maximum(count - 1, 1)
    rms = np.sqrt((zeroed * zeroed).sum(axis=axis) / safe)
    return count, mean, variance, rms


def _moments_by_column(block: np.ndarray) -> tuple[np.ndarray, ...]:
    width = block.shape[1]
    count, mean, variance, rms = (np.zeros(width) for _ in range(4))
    for j in range(width):
        column = block[:, j]
        valid = column[~np.isnan(column)]
        n = valid.size
        if not n:
            continue
        count[j], mean[j] = n, valid.sum() / n
        deviation = valid - mean[j]
        variance[j] = np.dot(deviation, deviation) / max(n - 1, 1)
        rms[j] = np.sqrt(np.dot(valid, valid) / n)
    return count.astype(np.int64), mean, variance, rms


def summary_block(
    block: np.ndarray, columnwise_above: int = COLUMNWISE_VALUES
) -> list[dict[str, FeatureValue]]:
    """`summary` of every column of a (rows, columns) float64 block at once.

    The same numbers as calling `summary` per column, without numpy's per-call
    overhead, which dominates for the many small files of a typical drop folder.
    """
    rows, width = block.shape
    by_column = block.size > columnwise_above
    count, mean, variance, rms = (_moments_by_column if by_column else moments)(block)
    ordered = np.sort(block, axis=0)  # NaN sorts last, so each column's values lead
    columns = np.arange(width)
    last = np.maximum(count - 1, 0)
    stats: dict[str, np.ndarray] = {
        "mean": mean, "std": np.sqrt(variance), "rms": rms,
        "min": ordered[0, columns] if rows else np.zeros(width),
        "max": ordered[last, columns] if rows else np.zeros(width),
    }
    for name, q in QUANTILES:
        position = q * last
        low = np.floor(position).astype(np.intp)
        high = np.minimum(low + 1, last)
        stats[name] = (
            lerp(ordered[low, columns], ordered[high, columns], position - low)
            if rows else np.zeros(width)
        )
    out: list[dict[str, FeatureValue]] = []
    for j in range(width):
        c = int(count[j])
        if c == 0:
            out.append({**EMPTY, "count": 0, "null_count": rows})
            continue
        row: dict[str, FeatureValue] = {"count": c, "null_count": rows - c}
        row.update({name: float(values[j]) for name, values in stats.items()})
        if c < 2:
            row["std"] = None
        out.append(row)
    return out


BUILT_IN: dict[str, FeatureSet] = {"summary": summary}


def load_set(name: str) -> FeatureSet:
    """Resolve a set name: a built-in, or "package.module:function"."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"feature set {name!r} is neither built in nor 'package.module:function'")
    function: FeatureSet = getattr(importlib.import_module(module_name), attr)
    return function


def numeric_columns(
    schema: pa.Schema, time_column: str, own: Collection[str] | None = None
) -> list[str]:
    """Integer and floating-point columns, except the time column (named in any case, as
    every column is matched); of a file's records, only those it has (`own`,
    `fitting.own_columns`)."""
    time_name = folded(time_column)
    return [
        f.name
        for f in schema
        if folded(f.name) != time_name
        and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
        and (own is None or f.name in own)
    ]


def _windows(length: int, window: int) -> Iterator[tuple[int | None, slice]]:
    if window <= 0:
        yield None, slice(0, length)
        return
    for index, start in enumerate(range(0, max(length, 1), window)):
        yield index, slice(start, start + window)


Row = dict[str, object]


# Infinities among a column's values (a sensor's `inf`) make inf - inf and the like in
# the moments: NaN is the answer there, as DuckDB's, and numpy's warning is no news.
# Each function that computes features from values runs under this.
quiet = np.errstate(invalid="ignore", over="ignore")


@quiet
def rows(
    table: pa.Table,
    source_file: str,
    sha256: str,
    time_column: str,
    sets: tuple[str, ...],
    window: int,
    source_table: str = "records",
    own: Collection[str] | None = None,
) -> list[Row]:
    """The feature rows of one file (of its columns `own`, if given), as plain dicts: a
    task turns all its files' rows into one table at once (`to_table`), which is far
    cheaper than a table per file."""
    functions = [load_set(name) for name in sets]
    plugins = [f for f in functions if f is not summary]
    names = numeric_columns(table.schema, time_column, own)
    values = [as_float64(table[column]) for column in names]
    # Column-major blocks, so each column is contiguous for the sorts and sums down it:
    # one block of every column for a small table, a block per column for a large one.
    if table.num_rows * len(names) <= COLUMNWISE_VALUES:
        matrix = np.empty((table.num_rows, len(names)), dtype=np.float64, order="F")
        for j, column_values in enumerate(values):
            matrix[:, j] = column_values
        groups = [(list(range(len(names))), matrix)]
    else:
        groups = [([j], column_values.reshape(-1, 1)) for j, column_values in enumerate(values)]
    found: dict[tuple[int, int | None], Row] = {}
    for members, block in groups:
        for index, span in _windows(table.num_rows, window):
            part = block[span]
            summaries = summary_block(part) if summary in functions else [{} for _ in members]
            for k, j in enumerate(members):
                row: Row = dict(summaries[k])
                for function in plugins:
                    row.update(_checked(function, function(part[:, k]), row))
                found[(j, index)] = row
    return [
        {
            "source_table": source_table, "source_file": source_file,
            "source_sha256": sha256, "source_column": column,
            "window": index, **found[(j, index)],
        }
        for j, column in enumerate(names)
        for index, _ in _windows(table.num_rows, window)
    ]


def as_float64(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64, null as NaN."""
    # numpy's conversion, not an Arrow cast: a tenth of the cost on a small file, and an
    # integer beyond 2**53 becomes the nearest float64 rather than failing the file
    # (features are float64 statistics either way). Arrow gives NaN for a null already.
    values: np.ndarray = np.asarray(column.to_numpy(), dtype=np.float64)
    return values


_IDENTITY_NAMES = frozenset(folded(name) for name, _ in IDENTITY_FIELDS)


def _checked(
    function: FeatureSet, values: Mapping[str, object], row: Row
) -> Mapping[str, object]:
    """A plugin's features must be numbers, each named apart from the identity columns
    and the features of `row` so far (the summary's, other sets'), in any case, as
    readers match names: one would take another's place silently. Caught here, the
    failure is this file's alone."""
    name = getattr(function, "__name__", repr(function))
    taken = _IDENTITY_NAMES | {folded(key) for key in row}
    for key, value in values.items():
        if not (value is None or isinstance(value, int | float | np.number)):
            raise TypeError(
                f"feature set {name} returned {type(value).__name__} for {key!r}; "
                "features must be numbers or None"
            )
        if folded(key) in taken:
            raise ValueError(
                f"feature set {name} returned {key!r}, a column the features table has"
                " already (an identity column, the summary's or another set's); features"
                " must be named apart"
            )
    return values


def to_table(rows: list[Row], sets: tuple[str, ...]) -> pa.Table:
    """Feature rows as a table: identity columns, summary columns, then plugin columns."""
    typed = dict(IDENTITY_FIELDS)
    if "summary" in sets:
        typed.update(SUMMARY_FIELDS)
    # A plugin may return different keys for different columns; every key gets a column.
    extra = dict.fromkeys(name for row in rows for name in row if name not in typed)
    fields = [pa.field(name, kind) for name, kind in typed.items()]
    fields += [pa.field(name, pa.float64()) for name in extra]
    schema = pa.schema(fields)
    columns = {f.name: [row.get(f.name) for row in rows] for f in schema}
    return pa.table(columns, schema=schema)
