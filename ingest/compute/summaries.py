"""The `summary` features of many small files at once, from one table of their rows.

Runs in a worker process. `features.summary_block` takes a few dozen numpy
calls per file, whatever its size, and a task of two thousand ten-row files
would spend most of its time in them. Here the files of one row count are
stacked into one (files, rows, columns) block, each file's column contiguous
as in the block `features.rows` makes for it alone, and summarised in one set
of calls: the same operations in the same order along each column, so every
number agrees with the file's own to the last bit. The rows come out as one
table, in the order `features.rows` and `features.to_table` give them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .features import (
    IDENTITY_FIELDS,
    QUANTILES,
    SUMMARY_FIELDS,
    as_float64,
    lerp,
    moments,
    numeric_columns,
    quiet,
)

Source = tuple[str, str, int]  # (source_file, sha256, rows)
SCHEMA = pa.schema([pa.field(name, kind) for name, kind in IDENTITY_FIELDS + SUMMARY_FIELDS])


def _stacked(block: np.ndarray) -> dict[str, np.ndarray]:
    """`summary_block`'s statistics for a (files, rows, columns) block: each (files,
    columns); NaN is null."""
    rows = block.shape[1]
    count, mean, variance, rms = moments(block, axis=1)
    ordered = np.sort(block, axis=1)  # NaN sorts last, so each column's values lead
    last = np.maximum(count - 1, 0)

    def at(rank: np.ndarray) -> np.ndarray:
        picked: np.ndarray = np.take_along_axis(ordered, rank[:, None, :], axis=1)[:, 0, :]
        return picked

    zero = np.zeros(count.shape)
    stats = {
        "count": count, "mean": mean, "std": np.sqrt(variance), "rms": rms,
        "min": ordered[:, 0, :] if rows else zero, "max": at(last) if rows else zero,
    }
    for name, q in QUANTILES:
        position = q * last
        low = np.floor(position).astype(np.intp)
        high = np.minimum(low + 1, last)
        stats[name] = lerp(at(low), at(high), position - low) if rows else zero
    return stats


def _by_length(columns: list[np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics of every file, (files, columns) each, from the columns of all their
    rows; files of each row count summarised together."""
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.intp)
    shape = (len(counts), len(columns))
    stats = {name: np.zeros(shape) for name, _ in SUMMARY_FIELDS}
    stats["count"] = np.zeros(shape, dtype=np.int64)
    for length in np.unique(counts):
        which = np.flatnonzero(counts == length)
        files, first = len(which), int(starts[which[0]])
        # Files next to each other, of one length: their rows follow one another, and are
        # copied as one slice rather than gathered row by row.
        together = int(which[-1] - which[0]) + 1 == files
        rows = None if together else starts[which][:, None] + np.arange(length)
        # (files, columns, length), viewed as (files, length, columns): each file's column
        # contiguous, as in the Fortran-ordered block of the file alone.
        stack = np.empty((files, len(columns), int(length)))
        for j, values in enumerate(columns):
            stack[:, j, :] = (
                values[rows] if rows is not None
                else values[first:first + files * int(length)].reshape(files, int(length))
            )
        for name, found in _stacked(stack.transpose(0, 2, 1)).items():
            stats[name][which] = found
    return stats


@quiet
def summary_table(
    records: pa.Table, sources: Sequence[Source], time_column: str, source_table: str,
    own: Collection[str] | None = None,
) -> pa.Table:
    """The `summary` feature rows of files whose records, in `sources`' order, make
    `records`: one per (file, numeric column of theirs, `own`), as `features.rows`
    gives each file's."""
    names = numeric_columns(records.schema, time_column, own)
    counts = np.array([rows for _, _, rows in sources], dtype=np.int64)
    stats = _by_length([as_float64(records[name]) for name in names], counts)
    width, files = len(names), len(sources)
    which_file = pa.array(np.repeat(np.arange(files), width))
    count = stats["count"].ravel()
    empty = count == 0
    columns: dict[str, pa.Array] = {
        "source_table": pa.repeat(pa.scalar(source_table, pa.string()), files * width),
        "source_file": pc.take(pa.array([s[0] for s in sources], pa.string()), which_file),
        "source_sha256": pc.take(pa.array([s[1] for s in sources], pa.string()), which_file),
        "source_column": pc.take(pa.array(names, pa.string()), pa.array(
            np.tile(np.arange(width), files))),
        "window": pa.nulls(files * width, pa.int64()),
        "count": pa.array(count, pa.int64()),
        "null_count": pa.array(np.repeat(counts, width) - count, pa.int64()),
    }
    for name, _ in SUMMARY_FIELDS[2:]:
        hidden = (count < 2) if name == "std" else empty
        columns[name] = pa.array(stats[name].ravel(), pa.float64(), mask=hidden)
    return pa.Table.from_pydict(columns, schema=SCHEMA)
