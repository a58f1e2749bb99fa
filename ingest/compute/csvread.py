"""A CSV file's bytes, in a known dialect, to an Arrow table with unique column names.

Runs in a worker process. The lines before the header and comment lines are
cut away here, the header record is read with Python's csv module (one record:
it costs nothing), and pyarrow parses the body with the dialect's delimiter,
quote, escape, decimal point and null values. Columns with a date or timestamp
format that is not ISO 8601 are read as text and then parsed with their format;
a column where one value does not fit stays text.
"""

from __future__ import annotations

import copy
import csv
import io
import re
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from .. import bytescan, isotime
from ..conform import TYPED_TEXT
from ..dialect import Dialect
from ..fitting import ZERO_PADDED, inexact_integers
from ..widen import folded

# The largest row Arrow will parse: a guard against a file with no newlines,
# which would otherwise be held whole in one field.
CSV_BLOCK_BYTES = 16 << 20
# Scanned with a regular expression, not stripped: a strip copies the whole file.
_NEWLINES = re.compile(rb"[\r\n]*")
_TIME_OF_DAY = ("%H", "%I", "%M", "%S", "%p", "%T", "%R", "%z")


@dataclass(frozen=True)
class Body:
    """The records of a file after its header: where they start, and the column names.

    An offset, not a slice: a slice of a file's bytes would copy all of them."""

    data: bytes
    start: int  # where the records begin in `data`
    names: list[str]
    lines_before: int  # physical lines before `start`

    @property
    def text(self) -> bytes:
        """The records alone, copied: for the error path."""
        return self.data[self.start :]


def unique_names(names: list[str]) -> list[str]:
    """DuckDB's names: an empty one is `column<i>` (its position), a repeat gets `_1`, `_2`.
    A repeat in another case is one too (`Temp`, `temp_1`): DuckDB and Spark take names
    without regard to case, and would rename or refuse the second."""
    seen: set[str] = set()
    # The last suffix tried for each name: counting up from `_1` for every repeat took
    # a header of thousands of one name quadratic time.
    tried: dict[str, int] = {}
    unique: list[str] = []
    for index, name in enumerate(names):
        base = name.strip() or f"column{index}"
        candidate, count = base, tried.get(folded(base), 0)
        while folded(candidate) in seen:
            count += 1
            candidate = f"{base}_{count}"
        tried[folded(base)] = count
        seen.add(folded(candidate))
        unique.append(candidate)
    return unique


def record_end(data: bytes, start: int, quote: str, delimiter: str = ",") -> int:
    """Where the record that starts at `start` ends (after its newline): for `"`, its
    quotes read as the reader reads them (one inside an unquoted field, `12" pipe`, is a
    character); for another quote, balanced."""
    if quote == '"':
        end = bytescan.first_field_newline(data, delimiter.encode(), start)
        return end + 1 if end >= 0 else len(data)
    mark = quote.encode() if quote else b""
    odd, position = 0, start
    while (newline := data.find(b"\n", position)) >= 0:
        if mark:
            odd ^= data.count(mark, position, newline) % 2
        position = newline + 1
        if not odd:
            return position
    return len(data)


def _skip_lines(data: bytes, count: int) -> int:
    position = 0
    for _ in range(count):
        newline = data.find(b"\n", position)
        if newline < 0:
            return len(data)
        position = newline + 1
    return position


def _without_comments(data: bytes, comment: str) -> bytes:
    mark = comment.encode()
    if not data.startswith(mark) and b"\n" + mark not in data:
        return data
    return b"".join(
        line for line in data.splitlines(keepends=True) if not line.startswith(mark)
    )


def fields(record: bytes, dialect: Dialect) -> list[str]:
    """One record split into its fields, as the dialect says."""
    text = record.decode("utf-8", errors="replace").rstrip("\r\n")
    if not text:
        return []
    escape = dialect.escape if dialect.escape and dialect.escape != dialect.quote else None
    if dialect.quote:
        reader = csv.reader(
            io.StringIO(text, newline=""), delimiter=dialect.delimiter,
            quotechar=dialect.quote, escapechar=escape, strict=False,
        )
    else:
        reader = csv.reader(
            io.StringIO(text, newline=""), delimiter=dialect.delimiter,
            quoting=csv.QUOTE_NONE, escapechar=escape,
        )
    return next(reader, [])


def split(data: bytes, dialect: Dialect, names: list[str] | None = None) -> Body:
    """The body of the file and its column names; `names` given, the data has no header."""
    start = _skip_lines(data, dialect.skip_rows) if names is None else 0
    lines_before = data.count(b"\n", 0, start)
    if dialect.comment:
        data, start = _without_comments(data[start:], dialect.comment), 0
    if names is not None:
        return Body(data, start, names, lines_before)
    # Blank lines before the first record are not records (pyarrow skips them too).
    blank = _NEWLINES.match(data, start).end()  # type: ignore[union-attr]
    lines_before += data.count(b"\n", start, blank)
    end = record_end(data, blank, dialect.quote, dialect.delimiter)
    first = fields(data[blank:end], dialect)
    if dialect.header:
        lines_before += data.count(b"\n", blank, end)
        return Body(data, end, unique_names(first), lines_before)
    return Body(data, blank, [f"column{i}" for i in range(len(first))], lines_before)


def options(
    dialect: Dialect, names: list[str], types: pa.Schema | None, quoted: bool,
    text: Collection[str] = (),
) -> tuple[pa_csv.ReadOptions, pa_csv.ParseOptions, pa_csv.ConvertOptions]:
    """pyarrow's options for the body: `types` fixes column types (a later block's), and
    the columns named in `text` (in any case) are read as text."""
    escape = dialect.escape if dialect.escape and dialect.escape != dialect.quote else False
    # A column empty throughout the first block has no type to impose: each block types it.
    column_types: dict[str, pa.DataType] = {} if types is None else {
        f.name: f.type for f in types if not pa.types.is_null(f.type)
    }
    for index, _ in dialect.formats:
        if index < len(names):  # parsed with its format afterwards
            column_types[names[index]] = pa.string()
    if types is not None:  # read as block 0 read them: as text, then as timestamps
        column_types |= {f.name: pa.string() for f in types if f.metadata == UTC_TEXT}
    if text:
        wanted = {folded(name) for name in text}
        column_types |= {name: pa.string() for name in names if folded(name) in wanted}
    convert = pa_csv.ConvertOptions(
        column_types=column_types, decimal_point=dialect.decimal,
        timestamp_parsers=list(dialect.timestamp_formats) or None,
    )
    if dialect.null_values is not None:
        convert.null_values = list(dialect.null_values)
        convert.strings_can_be_null = True
    return (
        pa_csv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES, column_names=names),
        pa_csv.ParseOptions(
            delimiter=dialect.delimiter, quote_char=dialect.quote or False,
            double_quote=not escape, escape_char=escape, newlines_in_values=quoted,
            # In a file of one column an empty line is a row whose value is missing, as
            # DuckDB reads it; in a wider one it is no row.
            ignore_empty_lines=len(names) != 1,
        ),
        convert,
    )


def read(
    body: Body, dialect: Dialect, types: pa.Schema | None = None,
    as_text: Collection[str] = (),
) -> pa.Table:
    """Parse the body, the columns named in `as_text` as text; raises pa.ArrowInvalid as
    pyarrow does."""
    quoted = bool(dialect.quote) and body.data.find(dialect.quote.encode(), body.start) >= 0
    read_options, parse, convert = options(dialect, body.names, types, quoted, as_text)
    if _NEWLINES.fullmatch(body.data, body.start):
        return pa.table({name: pa.nulls(0) for name in body.names})
    records = pa.py_buffer(body.data).slice(body.start)  # no copy
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(records), read_options=read_options, parse_options=parse,
            convert_options=convert,
        )
    except pa.ArrowInvalid as exc:
        table = _trailing_delimiters(records, read_options, parse, convert, exc)
    times = [f.name for f in table.schema if pa.types.is_time(f.type)]
    if times:
        # A time of day is stored as its text (Spark opens no TIME column): as written,
        # `10:30` as `7:05` is, not as Arrow's cast spells the ones it read (`10:30:00`).
        texts = _as_text(times, records, read_options, parse, convert)
        for name in times:
            at = table.column_names.index(name)
            table = table.set_column(at, pa.field(name, pa.string()), texts.column(name))
    # (A decimal comma's numbers are not text `fitting` reads: such a file is left as read.)
    wide = inexact_columns(table) if types is None and dialect.decimal == "." else []
    if wide:
        # Those columns again as text: where one holds an integer that float64 rounds, the
        # text is kept, for `conform` to read as numbers and `fitting` to rescue that one;
        # null markers ("NA", "nan") stay null, as in the numbers read.
        texts = _as_text(wide, records, read_options, parse, convert)
        for name, text in zip(texts.column_names, texts.columns, strict=True):
            text = pc.utf8_trim_whitespace(text)  # as Arrow's number parser takes " 1.5"
            if pc.any(inexact_integers(text)).as_py():
                field = pa.field(name, pa.string(), metadata=NUMBERS_AS_TEXT)
                table = table.set_column(table.column_names.index(name), field, text)
    elif types is not None:
        table = _later_block_nulls(table, types, convert.null_values)
    if types is None:
        table = _zero_padded_as_text(table, body, dialect, records, read_options, parse, convert)
    else:
        table = _typed_as_first(table, types, convert.null_values)
    if dialect.null_values is None:  # pinned markers say for themselves what is null
        table = empty_as_null(table)
    if types is None:
        table = _utc_worded(table, convert.null_values, as_text)
    else:
        table = _utc_worded_as_first(table, types, convert.null_values)
        # A column empty throughout block 0 is typed by each block, as a whole read types it.
        untyped = {f.name for f in types if pa.types.is_null(f.type)}
        if untyped:
            table = _utc_worded(table, convert.null_values, as_text, untyped)
    return with_formats(table, dialect, types, as_text)


# On a column of timestamps written with the zone word UTC (`isotime.utc_worded`): a
# streamed file's later blocks read it as text, and then as block 0 did.
UTC_TEXT = {b"ingest.utc_text": b"1"}


def _utc_worded(
    table: pa.Table, null_values: list[str], as_text: Collection[str],
    only: Collection[str] | None = None,
) -> pa.Table:
    """Text columns of timestamps written `2024-01-01 10:00:00 UTC` (BigQuery's CSV export)
    as timestamps, as DuckDB reads them; but those named in `as_text` (hinted `string`).
    `only`: the columns to look at, if not all."""
    kept = {folded(name) for name in as_text}
    for index, field in enumerate(table.schema):
        if field.type != pa.string() or field.metadata or folded(field.name) in kept:
            continue
        if only is not None and field.name not in only:
            continue
        parsed = isotime.utc_worded(table.column(index), null_values)
        if parsed is not None:
            utc = pa.field(field.name, parsed.type, metadata=UTC_TEXT)
            table = table.set_column(index, utc, parsed)
    return table


def _utc_worded_as_first(table: pa.Table, first: pa.Schema, null_values: list[str]) -> pa.Table:
    """A later block's columns that block 0 read as `... UTC` timestamps, read so too; a
    value that is not one fails the block, as any value that does not fit block 0's type."""
    for field in first:
        if field.metadata != UTC_TEXT or field.name not in table.column_names:
            continue
        at = table.column_names.index(field.name)
        text = table.column(at)
        parsed = isotime.utc_worded(text, null_values)
        if parsed is None:
            missing = isotime.absent(text, null_values)
            if not pc.all(missing).as_py():
                worded = pc.match_substring_regex(text, isotime.UTC_WORDED).fill_null(False)
                row = pc.index(pc.invert(pc.or_(missing, worded)), True).as_py()
                # Spelled as Arrow's own conversion errors, whose row the caller maps to a line.
                raise pa.ArrowInvalid(
                    f"In CSV column {field.name!r}: Row #{row + 1}: conversion error:"
                    f" invalid value {text[row].as_py()!r}, not a timestamp written as"
                    " `2024-01-01 10:00:00 UTC`, as in the first block"
                )
            parsed = pa.chunked_array([pa.nulls(len(text), field.type)])
        table = table.set_column(at, field, parsed)
    return table


def _as_text(
    names: list[str], records: pa.Buffer, read_options: pa_csv.ReadOptions,
    parse: pa_csv.ParseOptions, convert: pa_csv.ConvertOptions,
) -> pa.Table:
    """The columns `names` read again, alone, as text; null markers stay null."""
    convert = copy.copy(convert)  # the caller's reads the whole table again, perhaps
    convert.column_types = {**convert.column_types, **dict.fromkeys(names, pa.string())}
    convert.include_columns = names
    convert.strings_can_be_null = True
    return pa_csv.read_csv(
        pa.BufferReader(records), read_options=read_options, parse_options=parse,
        convert_options=convert,
    )


# How far into a file a number written with a leading zero is looked for: about the
# head the sniffer reads; DuckDB's sniffer, too, types a column by a sample of its rows.
ZERO_SAMPLE_BYTES = 1 << 20


def _zero_padded_as_text(
    table: pa.Table, body: Body, dialect: Dialect, records: pa.Buffer,
    read_options: pa_csv.ReadOptions, parse: pa_csv.ParseOptions, convert: pa_csv.ConvertOptions,
) -> pa.Table:
    """Number columns with a value written with a leading zero (`01234`, a ZIP code, an
    account number) in the file's first MB, read again as text, marked TYPED_TEXT so that
    their spelling is kept, as DuckDB reads them. Arrow would read `01234` as 1234."""
    numbers = [
        f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    ]
    if not numbers:
        return table
    data, start = body.data, body.start
    end = _head_end(data, start, dialect.quote)
    if not dialect.quote or data.find(dialect.quote.encode(), start, end) < 0:
        # One record a line: only the columns where such a value was seen (a date or a
        # time of day, `08:30`, starts with one too, and is no number column).
        seen = bytescan.zero_padded_columns(data, dialect.delimiter.encode(), start, end)
        names = read_options.column_names
        numbers = [n for n in numbers if names.index(n) in seen]
        if not numbers:
            return table
    elif not bytescan.zero_padded(data, (dialect.delimiter + "\n" + dialect.quote).encode(),
                                  start, end):
        return table
    try:
        head = _as_text(numbers, records.slice(0, end - start), read_options, parse, convert)
    except pa.ArrowInvalid:  # a quote inside an unquoted field put the cut in a record
        end = len(data)
        head = _as_text(numbers, records, read_options, parse, convert)
    padded = [
        name for name, text in zip(head.column_names, head.columns, strict=True)
        if pc.any(pc.match_substring_regex(text, ZERO_PADDED)).as_py()
    ]
    if not padded:
        return table
    texts = _as_text(padded, records, read_options, parse, convert) if end < len(data) else head
    for name in padded:
        field = pa.field(name, pa.string(), metadata=TYPED_TEXT)
        table = table.set_column(table.column_names.index(name), field, texts.column(name))
    return table


def _head_end(data: bytes, start: int, quote: str) -> int:
    """Where the records of the first ZERO_SAMPLE_BYTES after `start` end, after a whole
    record (quotes balanced), or the end of `data`."""
    end = start + ZERO_SAMPLE_BYTES
    if end >= len(data):
        return len(data)
    if quote:
        odd = data.count(quote.encode(), 0, end) % 2
        cut = bytescan.last_unquoted_newline(data, end, odd) if quote == '"' else -1
    else:
        cut = data.rfind(b"\n", start, end)
    return cut + 1 if cut >= start else len(data)


def _typed_as_first(table: pa.Table, first: pa.Schema, markers: list[str]) -> pa.Table:
    """A later block's text columns that block 0 read as typed text, marked so too, their
    null markers ("NA", "nan") null, as block 0 read them."""
    for field in first:
        if field.metadata == TYPED_TEXT and field.name in table.column_names:
            at = table.column_names.index(field.name)
            text = table.column(at)
            if pa.types.is_string(text.type):
                missing = pc.is_in(text, value_set=pa.array(markers, pa.string()))
                table = table.set_column(at, field, pc.if_else(missing, None, text))
    return table


def empty_as_null(table: pa.Table) -> pa.Table:
    """An empty text cell, quoted or not, is a missing value, as DuckDB and Spark read it
    (Arrow keeps it as "" in a text column, where it makes numbers' empty cells null)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = table.column(index)
            empty = pc.equal(column, "")
            if pc.any(empty).as_py():
                column = pc.if_else(empty, pa.scalar(None, field.type), column)
                table = table.set_column(index, field, column)
    return table


_WIDTH = re.compile(r"Expected (\d+) columns, got (\d+)")
# The name of a row's empty last field, read to be dropped: no header can hold a NUL.
_TRAILING = "\0trailing"


def _trailing_delimiters(
    records: pa.Buffer, read_options: pa_csv.ReadOptions, parse: pa_csv.ParseOptions,
    convert: pa_csv.ConvertOptions, exc: pa.ArrowInvalid,
) -> pa.Table:
    """Rows that end with a delimiter their header does not (`a,b` over `1,2,`): read with
    one more column, which is dropped if it is empty in every row, as DuckDB reads such a
    file. `read_options` keeps the wider names, for a second read of some columns. Any
    other difference in width is the parse error `exc`."""
    found = _WIDTH.search(str(exc))
    names = list(read_options.column_names)
    if found is None or (int(found[1]), int(found[2])) != (len(names), len(names) + 1):
        raise exc
    read_options.column_names = [*names, _TRAILING]
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(records), read_options=read_options, parse_options=parse,
            convert_options=convert,
        )
    except pa.ArrowInvalid:
        raise exc from None
    if not pa.types.is_null(table.schema.field(_TRAILING).type):
        raise exc
    return table.drop_columns([_TRAILING])


# On a column read again as text (`inexact_columns`): a streamed file's later blocks read
# it as text too, given block 0's schema, and take its null markers as nulls, as it did.
NUMBERS_AS_TEXT = {b"ingest.numbers_as_text": b"1"}


def _later_block_nulls(table: pa.Table, first: pa.Schema, markers: list[str]) -> pa.Table:
    for field in first:
        if field.metadata == NUMBERS_AS_TEXT and field.name in table.column_names:
            at = table.column_names.index(field.name)
            text = pc.utf8_trim_whitespace(table.column(at))
            missing = pc.is_in(text, value_set=pa.array(markers, pa.string()))
            table = table.set_column(at, field, pc.if_else(missing, None, text))
    return table


def inexact_columns(table: pa.Table) -> list[str]:
    """The float columns Arrow read from text that may hold an integer float64 cannot
    (beyond 2**53: an ID of 20 digits, say), which Arrow would have rounded. Rare: such
    columns are read again as text, for `fitting` to keep those integers' text."""
    return [
        name for name, column in zip(table.column_names, table.columns, strict=True)
        if pa.types.is_floating(column.type) and _beyond_2_53(column)
    ]


def _beyond_2_53(column: pa.ChunkedArray) -> bool:
    for chunk in column.chunks:
        if not len(chunk):
            continue
        if pa.types.is_float64(chunk.type):
            # The values' buffer as it is, null slots too: numpy's min and max take a tenth
            # of Arrow's time. Only a value past the bound (in a slot that may be null) is
            # looked at closely.
            values = np.frombuffer(chunk.buffers()[1], np.float64, len(chunk) + chunk.offset)
            values = values[chunk.offset:]
            if _within(values) or _within(values[np.isfinite(values)]):  # NaN, inf aside
                continue
        finite = pc.if_else(pc.is_finite(chunk), chunk, 0.0)
        top = pc.max(pc.abs(finite)).as_py()
        if top is not None and top >= _BOUND:
            return True
    return False


_BOUND = 2.0**53


def _within(values: np.ndarray) -> bool:
    return not values.size or bool(values.min() > -_BOUND and values.max() < _BOUND)


def with_formats(
    table: pa.Table, dialect: Dialect, types: pa.Schema | None, as_text: Collection[str] = ()
) -> pa.Table:
    """Parse the columns that have a date or timestamp format, where every value fits it,
    but those named in `as_text` (hinted `string`: kept as written); a later block
    (`types`) must fit the first block's type, or fail as a conversion error."""
    kept = {folded(name) for name in as_text}
    for index, fmt in dialect.formats:
        if index >= table.num_columns or not pa.types.is_string(table.schema.types[index]):
            continue
        name = table.column_names[index]
        if folded(name) in kept:
            continue
        want = types.field(name).type if types is not None and name in types.names else None
        if want is not None and not (pa.types.is_timestamp(want) or pa.types.is_date(want)):
            continue  # the first block kept it as text
        text = table.column(index)
        values = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        try:
            parsed = pc.strptime(values, format=fmt, unit="us")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if want is not None:
                raise pa.ArrowInvalid(
                    f"conversion error: a value of column {name!r} does not match {fmt!r}"
                ) from None
            continue
        if want is None:
            want = parsed.type if any(c in fmt for c in _TIME_OF_DAY) else pa.date32()
        column = pc.cast(parsed, want)
        table = table.set_column(index, table.field(index).with_type(want), column)
    return table
