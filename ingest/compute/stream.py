"""A file read in blocks: each block's rows and partial statistics, then the file's features.

Runs in a worker process. The service calls these in order for one file:

    process_block(Block) ... for every block      -> rows as Parquet, ColumnPartials
    select(partials) -> Selection                  merged statistics, first quantile digit
    scan(Scan) ... for every staged part           \\ repeated until the Selection
    narrow(Narrow) -> Selection                    /  has found every quantile
    finish(Finish) -> bytes                        the features part

Count, null count, sum of squares, min and max add up exactly across blocks;
mean and variance merge by Chan's parallel formula; quantiles are exact, found
by `radix` in extra passes over the staged records.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import conform, fitting, shared
from ..blocks import (
    STAGING_FAILED,
    Block,
    BlockResult,
    Blocks,
    ColumnPartial,
    Finish,
    Narrow,
    Scan,
    ScanResult,
    Selection,
    Spread,
    Window,
)
from ..dialect import CsvOptions, Dialect, as_seen
from ..inflate import inner_name
from ..jobs import Failure, TableSpec
from ..partfile import footer, to_parquet
from ..widen import merge_schemas
from . import features, radix
from .decode import DecodeError, decode_block
from .encode import stamped
from .inputs import message
from .limit import time_limit
from .names import check_columns, known_columns, read_as_text
from .task import table_schema


@features.quiet
def column_partial(
    name: str, values: np.ndarray, windows: tuple[Window, ...] = (), size: int = 0
) -> ColumnPartial:
    """A block's statistics of one column, its values in the column's `windows` counted
    (the block being `size` bytes)."""
    valid = values[~np.isnan(values)]
    if valid.size == 0:
        return ColumnPartial.empty(name, int(values.size))
    mean = float(valid.mean())
    deviation = valid - mean
    buckets, counts = radix.digit_counts(radix.order_keys(valid))
    return ColumnPartial(
        name, int(valid.size), int(values.size - valid.size), mean,
        float(np.dot(deviation, deviation)), float(np.dot(valid, valid)),
        float(valid.min()), float(valid.max()), buckets, counts, radix.sample(valid),
        tuple(radix.in_window(valid, w, size) for w in windows),
    )


@dataclass(frozen=True)
class _Read:
    table: pa.Table  # as decoded
    dialect: Dialect | None
    schema: pa.Schema  # the table's, which `records` is fitted to
    records: pa.Table
    numeric: list[str]  # the records' columns that have features


def _read(
    source_file: str, sha256: str, data: bytes, first: pa.Schema | None,
    dialect: Dialect | None, csv: CsvOptions | None, spec: TableSpec, time_column: str,
) -> _Read:
    """Lines of a file decoded (a gzip'd file's arrive inflated: read as what it holds) and
    fitted to its table, as a block is."""
    table, seen = decode_block(
        inner_name(source_file), data, first, dialect, csv,
        read_as_text(spec, source_file), known_columns(spec.schema),
    )
    table = check_columns(table)
    schema = conform.target(table, table_schema(spec), dict(spec.hints))
    records = fitting.fit_file(table, source_file, sha256, schema)
    own = fitting.own_columns(table.schema, schema)
    return _Read(table, seen, schema, records,
                 features.numeric_columns(records.schema, time_column, own))


def process_block(block: Block) -> BlockResult:
    """Decode one block with the first block's types; its records part and partials."""
    try:
        with time_limit(block.timeout_s):
            first = pa.ipc.read_schema(pa.py_buffer(block.schema)) if block.schema else None
            read = _read(
                block.source_file, block.sha256,
                shared.take(block.shared, 0, block.size) if block.shared else block.data,
                first, block.dialect, block.csv, block.spec, block.features.time_column,
            )
            table, records = read.table, read.records
            part = to_parquet(
                records, block.compression,
                footer([(block.source_file, block.sha256, table.num_rows)]),
            )
            windows: dict[str, list[Window]] = {}
            for window in block.windows:
                windows.setdefault(window.column, []).append(window)
            size = block.size or len(block.data)
            partials = tuple(
                column_partial(
                    n, features.as_float64(records[n]), tuple(windows.get(n, ())), size
                )
                for n in read.numeric
            )
            if block.stage is not None:
                try:
                    with open(block.stage, "wb") as fh:
                        fh.write(part)
                except OSError as exc:  # a full disk: the file waits for a later run
                    return BlockResult(0, Failure(STAGING_FAILED, message(exc)))
                part = b""
            return BlockResult(
                table.num_rows, None, part, table.schema.serialize().to_pybytes(), partials,
                read.schema.serialize().to_pybytes(),
                as_seen(read.dialect, table.num_columns), written=block.stage is not None,
            )
    except DecodeError as exc:
        return BlockResult(0, Failure(
            type(exc).__name__, message(exc), line=block.file_line(exc.line)
        ))
    except BaseException as exc:
        return BlockResult(0, Failure(type(exc).__name__, message(exc)))


@features.quiet
def spread_windows(task: Spread) -> tuple[Window, ...]:
    """Where a file's quantiles lie, by whole lines read from all over it: windows for as
    many of its numeric columns as fit the collect limit, narrowest first. None where the
    lines cannot be read as block 0 would be, or not within task_timeout_s (they are
    only a guess, and guesses stop)."""
    try:
        with time_limit(task.timeout_s):
            return _spread_windows(task)
    except Exception:
        return ()


def _spread_windows(task: Spread) -> tuple[Window, ...]:
    read = _read(
        task.source_file, "", task.data, None, task.spec.dialect, task.spec.csv,
        task.spec, task.features.time_column,
    )
    quantiles = [q for _, q in features.QUANTILES]
    by_column = []
    for name in read.numeric:
        values = features.as_float64(read.records[name])
        values = np.sort(values[~np.isnan(values)])
        # Each window's values a byte of the file: its share of the values read, per byte.
        per_byte = values.size / len(task.data)
        windows = [
            Window(name, low, high, share * per_byte)
            for low, high, share in radix.windows_of(values, quantiles)
        ]
        held = sum(w.per_byte for w in windows) * task.file_bytes
        if windows:
            by_column.append((held, name, windows))
    room = task.collect_limit / radix.MARGIN
    chosen: list[Window] = []
    for held, _, windows in sorted(by_column):
        if held <= room:
            chosen += windows
            room -= held
    return tuple(chosen)


def unify(schemas: tuple[bytes, ...]) -> tuple[bytes, tuple[int, ...], str]:
    """One schema for the parts of every block, by the table's widening rules. A column
    empty throughout block 0 is typed by the blocks that have values. The parts
    themselves are made to agree by the committer, as any parts of one table are."""
    read = [pa.ipc.read_schema(pa.py_buffer(s)) for s in schemas]
    unified = read[0]
    for schema in read[1:]:
        unified = merge_schemas(unified, schema)
    return unified.serialize().to_pybytes(), (), ""


@features.quiet
def merge(pieces: list[ColumnPartial]) -> ColumnPartial:
    """One column's partials from every block, as one; Chan et al. for mean and variance."""
    valued = [p for p in pieces if p.count]
    nulls = sum(p.nulls for p in pieces)
    name = pieces[0].column
    if not valued:
        return ColumnPartial.empty(name, nulls)
    count = sum(p.count for p in valued)
    mean = sum(p.mean * p.count for p in valued) / count
    m2 = sum(p.m2 + p.count * (p.mean - mean) ** 2 for p in valued)
    return ColumnPartial(
        name, count, nulls, mean, m2, sum(p.squares for p in valued),
        min(p.min for p in valued), max(p.max for p in valued), b"", b"",
    )


def select(args: tuple[Blocks, bytes, int]) -> Selection:
    """Merge every block's partials and start the search for the quantiles.

    A column that was empty throughout block 0 is typed by each block on its own:
    it has features if the unified type is numeric, and the blocks where it was
    empty count as nulls.
    """
    blocks, serialized, collect_limit = args
    unified = pa.ipc.read_schema(pa.py_buffer(serialized))
    numeric = set(features.numeric_columns(unified, ""))
    by_column: dict[str, list[ColumnPartial]] = {}
    for _, partials in blocks:
        for partial in partials:
            if partial.column in numeric:
                by_column.setdefault(partial.column, []).append(partial)
    total = sum(rows for rows, _ in blocks)
    for name, pieces in by_column.items():
        missing = total - sum(p.count + p.nulls for p in pieces)
        if missing:
            pieces.append(ColumnPartial.empty(name, missing))
    merged = tuple(merge(pieces) for pieces in by_column.values())
    histograms = {
        name: [(p.buckets, p.counts) for p in pieces if p.count]
        for name, pieces in by_column.items()
    }
    samples = {
        name: [(p.count, p.sample) for p in pieces if p.count]
        for name, pieces in by_column.items()
    }
    windowed = {name: [(p.count, p.windowed) for p in pieces] for name, pieces in by_column.items()}
    quantiles = (q for _, q in features.QUANTILES)
    return radix.start(merged, histograms, quantiles, collect_limit, samples, windowed)


def scan(task: Scan) -> ScanResult:
    """Run the probes over one staged records part. A block's part may lack a column, or
    hold it untyped, where the block had no value for it: it has no values to probe."""
    parquet = pq.ParquetFile(task.path if task.path is not None else io.BytesIO(task.data))
    numeric = set(features.numeric_columns(parquet.schema_arrow, ""))
    wanted = sorted({probe.column for probe in task.probes})
    table = parquet.read(columns=[c for c in wanted if c in numeric], use_threads=False)
    values = {}
    for name in wanted:
        if name not in table.column_names:
            values[name] = np.empty(0, dtype=np.float64)
            continue
        column = features.as_float64(table[name])
        values[name] = column[~np.isnan(column)]
    return radix.scan(values, task.probes)


def narrow(task: Narrow) -> Selection:
    return radix.narrow(task.selection, task.results)


@features.quiet
def _summary(column: ColumnPartial, selection: Selection) -> dict[str, features.FeatureValue]:
    if column.count == 0:
        return {**features.EMPTY, "count": 0, "null_count": column.nulls}
    row: dict[str, features.FeatureValue] = {
        "count": column.count,
        "null_count": column.nulls,
        "mean": column.mean,
        "std": float(np.sqrt(column.m2 / (column.count - 1))) if column.count > 1 else None,
        "min": column.min,
        "max": column.max,
    }
    last = column.count - 1
    for name, q in features.QUANTILES:
        position = q * last
        low = int(np.floor(position))
        high = min(low + 1, last)
        a = np.array([radix.value_at(selection, column.column, low)])
        b = np.array([radix.value_at(selection, column.column, high)])
        row[name] = float(features.lerp(a, b, np.array([position - low]))[0])
    row["rms"] = float(np.sqrt(column.squares / column.count))
    return row


def finish(task: Finish) -> bytes:
    """The file's features part: one row per numeric column."""
    rows: list[features.Row] = [
        {
            "source_table": task.source_table, "source_file": task.source_file,
            "source_sha256": task.sha256, "source_column": column.column, "window": None,
            **_summary(column, task.selection),
        }
        for column in task.selection.columns
    ]
    table = stamped(features.to_table(rows, task.sets))
    return to_parquet(table, task.compression, footer([(task.source_file, task.sha256, task.rows)]))
