"""JSON strings of dates alone read as dates, as a CSV's are.

Runs in a worker process. Arrow's JSON reader types a string that is a date alone,
`"2024-01-01"`, as a timestamp in seconds, where its CSV reader, DuckDB's `read_json`
and the person who wrote it read a date. A top-level timestamp column it inferred whose
every value falls at midnight may hold such dates. Where no string in the file has a
date with a time after it that could be a midnight, every one was such a date; else
those columns alone are read again as text, and each whose every value is written as a
date alone becomes a date. Dates inside lists and structs stay timestamps.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ..isotime import DATE

# In a file's bytes, a date's day and a time after it that Arrow could read as a
# midnight: at hour 00 (`2024-01-01T00:00`), or with an offset (`T05:00:00+05:00`);
# `T10:30:00Z` is none. 0.2 ms a 200 KB file, where reading it again takes 1.
_MIDNIGHT = re.compile(rb"-\d\d[T ](?:00|[0-9:.]*[+-]\d)")
# A JSON escape of a character such a time is written with (`\u0054` is `T`).
_ESCAPED = re.compile(rb"\\u00[2-5][0-9a-fA-F]")
# What Arrow's JSON reader makes of an ISO 8601 string it reads as a timestamp.
INFERRED = pa.timestamp("s")


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
    if _MIDNIGHT.search(data) is None and (
        b"\\u00" not in data or _ESCAPED.search(data) is None
    ):
        for index, field in found:
            table = table.set_column(
                index, field.with_type(pa.date32()), table.column(index).cast(pa.date32())
            )
        return table
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
