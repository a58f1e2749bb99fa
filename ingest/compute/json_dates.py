"""JSON strings of dates alone read as dates, as a CSV's are.

Runs in a worker process. Arrow's JSON reader types a string that is a date alone,
`"2024-01-01"`, as a timestamp in seconds, where its CSV reader, DuckDB's `read_json`
and the person who wrote it read a date. A top-level timestamp column it inferred whose
every value falls at midnight may hold such dates; it does if no value under its key in
the file's bytes has a time after its date. Where the bytes cannot say (a key or a value
spelled with JSON escapes, or the key written more often than the column holds values,
a nested object's perhaps, with a time), the column alone is read again as text. Dates inside lists
and structs stay timestamps.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ..isotime import DATE

# A JSON escape of an ASCII character (`\u0054` is `T`): a value or a key so spelled is
# not found by its spelling.
_ESCAPED = re.compile(rb"\\u00[0-7][0-9a-fA-F]")
# Past this many such columns, one reading of them all again is cheaper than a search
# of the bytes for each (a file of 200 date columns: 71 ms against 852).
KEY_SEARCHES = 4
# What Arrow's JSON reader makes of an ISO 8601 string it reads as a timestamp.
INFERRED = pa.timestamp("s")


def _timed(name: str) -> re.Pattern[bytes] | None:
    """A value of key `name` written with a time after its date, in a file's bytes; None
    for a name JSON may spell otherwise than as it reads (escaped: `\\"`, `\\/`)."""
    if not name.isascii() or not name.isprintable() or any(c in name for c in '"\\/'):
        return None
    return re.compile(rb'"' + re.escape(name.encode()) + rb'"\s*:\s*"\d{4}-\d\d-\d\d[T ]')


def _at_midnight(column: pa.ChunkedArray) -> bool:
    values = column.drop_null()
    return len(values) > 0 and pc.all(
        pc.equal(pc.floor_temporal(values, unit="day"), values)
    ).as_py()


def dates_as_written(table: pa.Table, data: bytes, read: pa_json.ReadOptions) -> pa.Table:
    """`table`, Arrow's reading of the JSON Lines `data`, with its columns of dates alone
    as date32."""
    found = [
        (index, field) for index, field in enumerate(table.schema)
        if field.type == INFERRED and _at_midnight(table.column(index))
    ]
    if not found:
        return table
    escaped = data.find(b"\\") >= 0 and _ESCAPED.search(data) is not None
    unsure = []
    for index, field in found:
        timed = None if escaped or len(found) > KEY_SEARCHES else _timed(field.name)
        if timed is not None and timed.search(data) is not None:
            # A time under the key: the column's own, where the key is written no more
            # often than the column holds values; else perhaps a nested object's, and the
            # bytes cannot say.
            column = table.column(index)
            if data.count(b'"%s"' % field.name.encode()) > len(column) - column.null_count:
                unsure.append((index, field))
        elif timed is None:
            unsure.append((index, field))
        else:
            table = table.set_column(
                index, field.with_type(pa.date32()), table.column(index).cast(pa.date32())
            )
    if not unsure:
        return table
    found = unsure
    parse = pa_json.ParseOptions(
        explicit_schema=pa.schema([(field.name, pa.string()) for _, field in found]),
        unexpected_field_behavior="ignore",
    )
    try:
        text = pa_json.read_json(pa.BufferReader(data), read_options=read, parse_options=parse)
    except pa.ArrowInvalid:
        return table
    for index, field in found:
        column = text.column(field.name)
        if pc.all(pc.match_substring_regex(column.drop_null(), DATE)).as_py():
            table = table.set_column(index, field.with_type(pa.date32()), column.cast(pa.date32()))
    return table
