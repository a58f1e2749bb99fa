"""A part file's Delta statistics, read from its own Parquet footer.

Called in the committer's thread (or at start-up, or in `ingest compact`), never on
the event loop. delta-rs never opens the files it is given, so `numRecords`, the
minimum, the maximum and `nullCount` of each column come from the footer we wrote:
with them, a reader's `count()` needs no file and its filters skip files.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def stats_json(path: Path) -> str:
    """The `stats` string of an add action for this Parquet file."""
    meta = pq.read_metadata(path)
    schema = meta.schema.to_arrow_schema()
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    bounded = True
    leaf = 0  # a nested column has a Parquet column for each of its leaves
    for field in schema:
        found = _column(meta, leaf, field)
        leaf += _leaves(field.type)
        if found is None:
            bounded = False
            continue
        count, least, most = found
        nulls[field.name] = count
        if count == meta.num_rows:
            continue  # only nulls: nothing to bound
        if least is None or most is None:
            bounded = False
            continue
        low[field.name], high[field.name] = least, most
    stats: dict[str, Any] = {"numRecords": meta.num_rows}
    # deltalake (1.6) reads a column missing from minValues or maxValues as a bound of
    # null, and its pyarrow reader then skips the file on any filter of that column
    # (delta-io/delta-rs#3173): so a file with a column it cannot bound gets no bounds.
    if bounded:
        stats |= {"minValues": low, "maxValues": high}
    # Raw UTF-8: deltalake (1.6) decodes the escape pair of a character past U+FFFF
    # (`\ud842\udfb7`, 𠮷) to another, and a filter past it then skips the file.
    return json.dumps(stats | {"nullCount": nulls}, ensure_ascii=False)


def _leaves(kind: pa.DataType) -> int:
    """How many Parquet columns hold a column of this type."""
    if pa.types.is_map(kind):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _leaves(kind.value_type)
    if pa.types.is_struct(kind):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields))
    return 1


def _column(
    meta: pq.FileMetaData, index: int, field: pa.Field
) -> tuple[int, Any, Any] | None:
    """(null count, min, max) of one top-level column, the Parquet column `index`, over
    its row groups; None when a row group lacks statistics. The min (max) is None unless
    every row group holding a value has one Delta can carry (not an infinity, nor binary
    or a decimal; a row group of NaN only, or with a string too long for its footer, has
    none): a bound taken from some row groups only would let a reader skip the file for
    a value in the others."""
    kind = field.type
    if (
        pa.types.is_nested(kind) or index >= meta.num_columns
        or meta.schema.column(index).path != field.name  # not the column we count to
    ):
        return None
    count = 0
    lows: list[Any] = []
    highs: list[Any] = []
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group)
        stats = rows.column(index).statistics
        if stats is None or not stats.has_null_count:
            return None
        count += stats.null_count
        if stats.null_count == rows.num_rows:
            continue  # only nulls: nothing to bound
        lows.append(_value(stats.min, kind) if stats.has_min_max else None)
        highs.append(_value(stats.max, kind) if stats.has_min_max else None)
    least = min(lows) if lows and all(v is not None for v in lows) else None
    most = max(highs) if highs and all(v is not None for v in highs) else None
    return count, _json(least), _json(most, up=True)


def _value(value: Any, kind: pa.DataType) -> Any:
    """A footer's statistic as a comparable Python value; None where Delta has none."""
    if pa.types.is_floating(kind) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return None
    if not isinstance(value, str | int | float | dt.date):
        # A decimal, say: not JSON, and as a float a bound may miss its value by an ulp,
        # which would let a reader skip the file that holds it.
        return None
    if pa.types.is_timestamp(kind) and isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC) if kind.tz else value
    return value


LAST_MILLISECOND = dt.datetime.max.replace(microsecond=999_000)


def _json(value: Any, up: bool = False) -> Any:
    """Delta's JSON form: timestamps in ISO 8601 with milliseconds (a maximum rounded up,
    so a filter never skips a file that holds its value), dates as YYYY-MM-DD. None for a
    maximum past 9999-12-31 23:59:59.999, the end of time some systems write: there is no
    millisecond to round it up to, and the file is then left without bounds."""
    if isinstance(value, dt.datetime):
        if up and value.microsecond % 1000:
            if value.replace(tzinfo=None) > LAST_MILLISECOND:
                return None
            value += dt.timedelta(microseconds=1000 - value.microsecond % 1000)
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return value.isoformat(timespec="milliseconds") + "Z"
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
