"""Text of ISO 8601 timestamps as the timestamps a table holds.

Arrow's JSON reader types only whole seconds as timestamps: `"2024-01-01T00:00:00Z"`
is one, `"2024-01-01T00:00:00.250Z"` is text, and so is every timestamp an API writes
with milliseconds (and Go's with nanoseconds). Arrow's cast of text takes a zoned value
only to a zoned type, and more digits than the type's unit nowhere. These read them all
as microseconds in UTC without a zone, which is what Arrow's JSON reader gives for the
whole seconds it does type: a zoned value at its instant, the digits past microseconds
floored (as every timestamp's nanoseconds are).

BigQuery's CSV export writes its timestamps with a zone word, `2024-01-01 10:00:00 UTC`,
which DuckDB's CSV reader takes as a timestamp and Arrow's leaves as text: `utc_worded`
reads such a column of a CSV (DuckDB's JSON reader keeps it text, and so does
`timestamps_in_text`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import pyarrow as pa
import pyarrow.compute as pc

TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
_TIMESTAMP = re.compile(TIMESTAMP.replace("$", r"\Z"))
DATE = r"^\d{4}-\d{2}-\d{2}$"
_ZONE = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$"
_NANOS = r"(\.\d{6})\d+"
UTC_WORDED = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)? UTC$"
_UTC_WORD = r" UTC$"
HEAD_VALUES = 1024
UTC_MICROS = pa.timestamp("us")


def parse(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO 8601 text as timestamp[us]; raises pa.ArrowInvalid where a value is not one."""
    text = pc.replace_substring_regex(text, _NANOS, r"\1")
    zoned = pc.match_substring_regex(text, _ZONE)
    none = pa.scalar(None, pa.string())
    naive = pc.if_else(zoned, none, text).cast(UTC_MICROS)
    instants = pc.if_else(zoned, text, none).cast(pa.timestamp("us", "UTC")).cast(UTC_MICROS)
    return pc.if_else(zoned, instants, naive)


def with_utc_as_z(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each `... UTC` written `...Z`, which ISO 8601 (`TIMESTAMP`, `parse`) spells so."""
    return pc.replace_substring_regex(text, _UTC_WORD, "Z")


def absent(column: pa.ChunkedArray, markers: Sequence[str]) -> pa.ChunkedArray:
    """Where `column` holds no value: null, or one of the null `markers`."""
    return pc.or_(pc.is_null(column), pc.is_in(column, value_set=pa.array(markers, pa.string())))


def utc_worded(column: pa.ChunkedArray, markers: Sequence[str]) -> pa.ChunkedArray | None:
    """A text column whose every value, but nulls and the null `markers` ("NA", ...), is a
    timestamp with the zone word UTC, as timestamp[us] (its instants, without a zone, as
    DuckDB reads them); None if any value is not one, or if the column holds none."""
    # The first value decides nearly every column: looked at alone, then in the head, with
    # no pass over the whole of a sparse column.
    first = next((chunk[0] for chunk in column.chunks if len(chunk)), None)
    if first is not None and first.is_valid:
        text = first.as_py()
        if not text.endswith(" UTC") and text not in markers:
            return None
    head = column.slice(0, HEAD_VALUES)
    present = head.filter(pc.invert(absent(head, markers)))
    if len(present) and not present[0].as_py().endswith(" UTC"):
        return None  # not one, so not every value is
    missing = absent(column, markers)
    values = column.filter(pc.invert(missing))
    if not len(values) or not values[0].as_py().endswith(" UTC"):
        return None
    if not pc.all(pc.match_substring_regex(values, UTC_WORDED)).as_py():
        return None
    try:
        return parse(with_utc_as_z(pc.if_else(missing, pa.scalar(None, pa.string()), column)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a 13th month, a 25th hour
        return None


def timestamps_in_text(table: pa.Table, keep: Collection[str] = ()) -> pa.Table:
    """The table with each text column whose every value is an ISO 8601 timestamp read as
    timestamps, but those named in `keep` (text as written). A column is looked at closely
    only if its first value is one. A column of dates alone stays text: where a file's
    first block reads it as text (`"unknown"`), a later block's dates are not to widen
    the table to timestamps."""
    for index, field in enumerate(table.schema):
        if not pa.types.is_string(field.type) or field.name in keep:
            continue
        column = table.column(index)
        values = column.drop_null()
        if not len(values) or not _TIMESTAMP.match(values[0].as_py()):
            continue
        if not pc.all(pc.match_substring_regex(values, TIMESTAMP)).as_py():
            continue
        if pc.all(pc.match_substring_regex(values, DATE)).as_py():
            continue
        try:
            parsed = parse(column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        table = table.set_column(index, field.with_type(UTC_MICROS), parsed)
    return table


def dates_in_text(table: pa.Table, keep: Collection[str] = ()) -> pa.Table:
    """The table with each text column whose every value is a date alone (`2024-01-01`)
    read as dates, but those named in `keep`: for a whole file read from text, as Arrow's
    CSV reader and DuckDB type such a column."""
    for index, field in enumerate(table.schema):
        if not pa.types.is_string(field.type) or field.name in keep:
            continue
        values = table.column(index).drop_null()
        if not len(values) or not pc.all(pc.match_substring_regex(values, DATE)).as_py():
            continue
        try:
            dates = table.column(index).cast(pa.date32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # 2024-02-30
            continue
        table = table.set_column(index, field.with_type(pa.date32()), dates)
    return table
