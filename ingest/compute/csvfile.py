"""A whole CSV file (or a block of one) to an Arrow table, in its dialect.

Runs in a worker process. The text is made UTF-8, the record-size guard
applied, the dialect detected (`sniff`) or taken from the file's table, and
the body parsed (`csvread`). A parse error is raised as a `DecodeError` with
the physical line where a strict reading of the file goes wrong.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Collection, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pyarrow as pa

from .. import bytescan
from ..dialect import PLAIN, CsvOptions, Dialect
from ..widen import folded
from . import csvread, sniff
from .csvread import CSV_BLOCK_BYTES
from .failures import FIXED_TYPES, DecodeError

if TYPE_CHECKING:
    from _csv import Reader as _csv_reader

# Arrow reports "Row #N" when it reads single-threaded, which a worker does anyway.
_ROW = re.compile(r"Row #(\d+)")
_BLANK = re.compile(rb"\s*")
# The bytes of a file's head looked at for NULs (`_check_not_utf16`).
NUL_HEAD_BYTES = 4096


def _lines(data: bytes) -> Iterator[str]:
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace", newline="")


def _reader(data: bytes, dialect: Dialect, strict: bool = False) -> _csv_reader:
    escape = dialect.escape if dialect.escape and dialect.escape != dialect.quote else None
    if dialect.quote:
        return csv.reader(_lines(data), delimiter=dialect.delimiter, quotechar=dialect.quote,
                          escapechar=escape, strict=strict)
    return csv.reader(_lines(data), delimiter=dialect.delimiter, quoting=csv.QUOTE_NONE,
                      escapechar=escape, strict=strict)


def _bad_csv_line(data: bytes, width: int | None, dialect: Dialect) -> int | None:
    """Error path only: the physical line where a strict reading of the CSV goes wrong.

    That is the first row whose width differs from the header's, an unbalanced
    quote, or a field past the record-size guard. Arrow's "Row #N" skips blank
    lines and counts a quoted multi-line field once, so it is not a line number.
    """
    reader = _reader(data, dialect, strict=True)
    try:
        for row in reader:
            if not row:
                continue
            if width is None:
                width = len(row)
            if len(row) != width:
                return reader.line_num
    except csv.Error:
        return reader.line_num
    return None


def _record_line(data: bytes, number: int, dialect: Dialect) -> int | None:
    """Error path only: the physical line where Arrow's record `number` starts.

    Arrow numbers records from 1 at the header and skips blank lines; a quoted
    field may span lines, so the record number is not a line number.
    """
    reader = _reader(data, dialect)
    ended, records = 0, 0
    try:
        for row in reader:
            if row:
                records += 1
                if records == number:
                    return ended + 1
            ended = reader.line_num
    except csv.Error:
        return None
    return None


def _quotes_close(data: bytes, dialect: Dialect) -> bool:
    """Error path only: does every quoted field close? An odd count of quote marks can be
    one inside a field that does not open with a quote (`12" pipe`), which is a literal
    there: Arrow, DuckDB and Python's csv module all read it so."""
    reader = _reader(data, dialect, strict=True)
    try:
        for _ in reader:
            pass
    except csv.Error:
        return False
    return True


def _unclosed_quote_line(data: bytes, quote: bytes) -> int | None:
    """Error path only: the line where the quote that never closes was opened."""
    opened, odd = None, False
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.count(quote) % 2:
            odd = not odd
            opened = number if odd else None
    return opened if odd else None


def _check_record_size(data: bytes) -> None:
    """The record-size guard: no line may be longer than CSV_BLOCK_BYTES."""
    # Jump from line start to the last newline within the limit: a handful of
    # memrchr calls per file, rather than a look at every line.
    start = 0
    while len(data) - start > CSV_BLOCK_BYTES:
        newline = data.rfind(b"\n", start, start + CSV_BLOCK_BYTES + 1)
        if newline < 0:
            line = data.count(b"\n", 0, start) + 1
            end = data.find(b"\n", start)
            length = (len(data) if end < 0 else end) - start
            raise DecodeError(
                f"line {line} is {length} bytes long, over the"
                f" {CSV_BLOCK_BYTES >> 20} MiB record-size limit (a missing newline?)",
                line=line, offset=start,
            )
        start = newline + 1


def _first_row_line(data: bytes, start: int) -> int:
    return data.count(b"\n", 0, start) + 1


def _utf8(data: bytes) -> bytes:
    """UTF-8 bytes without a BOM: UTF-16 with a BOM is transcoded, a UTF-8 BOM dropped."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-16 at byte {exc.start}", offset=exc.start) from None
    return data.removeprefix(codecs.BOM_UTF8)


def _check_not_utf16(data: bytes) -> None:
    """A head of which a quarter is NUL bytes is UTF-16 without a byte-order mark (or not
    text at all): said so, where the parser would report columns of `\x00`."""
    head = data[:NUL_HEAD_BYTES]
    if b"\x00" in head and 4 * head.count(b"\x00") >= len(head):
        at = head.index(b"\x00")
        raise DecodeError(
            "NUL bytes throughout: UTF-16 text without a byte-order mark, or not text;"
            " re-save the file as UTF-8", line=data.count(b"\n", 0, at) + 1, offset=at,
        )


def _line_feeds(data: bytes) -> bytes:
    """A file whose lines end in a lone CR (classic Mac OS), with LF in their place: the
    header's split, the sniffer and the error's line numbers count LFs. A CR within a
    quoted field of such a file is a line break in it, and reads as LF too."""
    if b"\n" in data or b"\r" not in data:  # the first test stops at a file's first line
        return data
    return data.replace(b"\r", b"\n")


def _check_text(data: bytes, table: pa.Table) -> None:
    """Arrow reads text that is not UTF-8 as binary; we quarantine it rather than guess."""
    if any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in table.schema):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"not valid UTF-8 at byte {exc.start} (line {_first_row_line(data, exc.start)});"
                " re-save the file as UTF-8",
                line=_first_row_line(data, exc.start), offset=exc.start,
            ) from None


def _parse_csv(
    data: bytes, dialect: Dialect, first: pa.Schema | None = None, text: Collection[str] = ()
) -> pa.Table:
    """A CSV file in `dialect`, the columns named in `text` read as text; or, given the
    first block's schema, a later block, which has no header, no lines to skip, and the
    first block's column names and types."""
    body = csvread.split(data, dialect, first.names if first is not None else None)
    try:
        table = csvread.read(body, dialect, first, text)
    except pa.ArrowInvalid as exc:
        raise _parse_error(body, dialect, exc, later=first is not None) from None
    # An odd number of quotes may mean one never closed, and Arrow has swallowed the
    # rest of the file into one field.
    unclosed = _never_closed(body, dialect)
    if unclosed is not None:
        raise unclosed
    _check_text(data, table)
    return table


def _never_closed(body: csvread.Body, dialect: Dialect) -> DecodeError | None:
    """A quote that never closes, found by a strict reading, with the line it opens on."""
    quote = dialect.quote.encode()
    doubled = not (dialect.escape and dialect.escape != dialect.quote)
    if (
        quote and doubled and body.data.find(quote, body.start) >= 0  # most files have none
        and bytescan.count(body.data, quote, body.start) % 2
        and not _quotes_close(body.text, dialect)
    ):
        opened = _unclosed_quote_line(body.text, quote)
        return DecodeError(
            "a quoted field is never closed",
            line=None if opened is None else opened + body.lines_before,
        )
    return None


def _parse_error(
    body: csvread.Body, dialect: Dialect, exc: pa.ArrowInvalid, later: bool
) -> DecodeError:
    # A quote that never closes took the rest of the file into its field, and Arrow
    # counts the fields of that record: the quote is the error, where it opens.
    unclosed = _never_closed(body, dialect)
    if unclosed is not None:
        return unclosed
    found = _ROW.search(str(exc))
    line = _bad_csv_line(body.text, len(body.names), dialect) or (
        _record_line(body.text, int(found.group(1)), dialect) if found else None
    )
    message = str(exc)
    if "straddl" in message:
        message = (
            f"a row is longer than the {CSV_BLOCK_BYTES >> 20} MiB record-size limit"
            " (a missing newline?)"
        )
    elif "UTF8" in message:
        message = "not valid UTF-8; re-save the file as UTF-8"
    elif later and "conversion error" in message:
        message += FIXED_TYPES
    return DecodeError(message, line=None if line is None else line + body.lines_before)


def _in_table_dialect(
    data: bytes, own: Dialect, table: Dialect, text: Collection[str], columns: Collection[str]
) -> tuple[pa.Table, Dialect]:
    """Read a file with its table's dialect, which its own detection disagrees with.

    The table's delimiter and header hold, but for a file whose first row its own
    detection reads as data (typed as the rows below it, DuckDB's verdict) and that
    does not name the table's `columns`: read with a header, that row would be lost
    to column names. The lines before the header and the date formats of the columns
    are the file's own, and so are what the table's first file could not show:
    quoting and comments where it had none, a decimal comma where it had only decimal
    points (or none), a delimiter where it had one column. It fails with a reason that
    names both dialects when the result does not parse the file, or reads another number
    of columns from it.
    """
    dialect = replace(table, skip_rows=own.skip_rows, formats=own.formats)
    if not table.delimited:
        dialect = replace(dialect, delimiter=own.delimiter, delimited=True)
    if table.header and not own.header and not _names_columns(data, dialect, columns):
        dialect = replace(dialect, header=False)
    if not table.quote:
        dialect = replace(dialect, quote=own.quote, escape=own.escape)
    if not table.comment:
        dialect = replace(dialect, comment=own.comment)
    if table.decimal == ".":
        dialect = replace(dialect, decimal=own.decimal)
    if dialect == own:
        return _parse_csv(data, own, text=text), own
    try:
        result = _parse_csv(data, dialect, text=text)
    except DecodeError as exc:
        raise DecodeError(
            f"it does not parse in its table's dialect ({dialect.describe()}): {exc};"
            f" on its own it reads as {own.describe()}", line=exc.line, offset=exc.offset,
        ) from None
    width = len(csvread.split(data, own).names)
    if result.num_columns != width:
        raise DecodeError(
            f"its table's dialect ({dialect.describe()}) reads {result.num_columns} columns"
            f" from it, but it has {width}: on its own it reads as {own.describe()}"
        )
    return result, dialect


def _names_columns(data: bytes, dialect: Dialect, columns: Collection[str]) -> bool:
    """Does the file's first row, read as a header, name only columns of its table
    (`2023,2024`, a header its detection takes for data)?"""
    known = {folded(name) for name in columns}
    try:
        names = csvread.split(data, replace(dialect, header=True)).names
    except csv.Error:
        return False
    return bool(known) and all(folded(name) in known for name in names)


def read_csv(
    data: bytes, pins: CsvOptions | None = None, table: Dialect | None = None,
    text: Collection[str] = (), columns: Collection[str] = (),
) -> tuple[pa.Table, Dialect]:
    """A whole CSV file, and the dialect it was read with: its own, detected with the
    table's pins applied, or `table`, the dialect its table's first file pinned, whose
    `columns` the service knows. The columns named in `text` (hinted `string`) are read
    as text."""
    data = _line_feeds(_utf8(data))
    _check_not_utf16(data)
    _check_record_size(data)
    if _BLANK.fullmatch(data):  # stops at the first character that is not white space
        raise DecodeError("Empty CSV file", line=1)
    # The table's decimal separator, unless pinned otherwise, spares the sniffer a second look.
    if table is not None and table.decimal != "." and (pins is None or pins.decimal is None):
        pins = replace(pins or CsvOptions(), decimal=table.decimal)
    own = sniff.detect(data, pins)
    try:
        return _read_as(data, own, table, text, columns)
    except DecodeError as first_error:
        # Found plain in its first lines, it may not be further on: DuckDB's sniffer,
        # which reads a MB, is asked before the file is taken for broken.
        again = sniff.second_look(data, pins, own)
        if again is None:
            raise
        try:
            return _read_as(data, again, table, text, columns)
        except DecodeError:
            raise first_error from None


def _read_as(
    data: bytes, own: Dialect, table: Dialect | None, text: Collection[str],
    columns: Collection[str],
) -> tuple[pa.Table, Dialect]:
    """The file read in its `own` dialect, or in its table's (`_in_table_dialect`)."""
    if table is None:
        return _parse_csv(data, own, text=text), own
    return _in_table_dialect(data, own, table, text, columns)


def read_block(data: bytes, dialect: Dialect | None, first: pa.Schema) -> pa.Table:
    """A later block of a streamed file: no header, no lines to skip, block 0's dialect,
    and `first`, block 0's schema, for its column names and types."""
    _check_record_size(data)
    return _parse_csv(data, replace(dialect or PLAIN, header=False, skip_rows=0), first)
