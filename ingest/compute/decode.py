"""Bytes to an Arrow table, chosen by the file's extension.

Runs in a worker process. Parse errors are raised as `DecodeError`, which
carries the line or byte offset where the format reports one.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ..dialect import PLAIN, CsvOptions, Dialect
from . import csvread, sniff
from .csvread import CSV_BLOCK_BYTES

if TYPE_CHECKING:
    from _csv import Reader as _csv_reader

# Arrow reports "Row #N" when it reads single-threaded, which a worker does anyway.
_ROW = re.compile(r"Row #(\d+)")
_JSON_ROW = re.compile(r"in row (\d+)")


FIXED_TYPES = (
    " (a file read in blocks keeps the column types of its first block;"
    " raise [pipeline] memory_mb to read it whole)"
)


class DecodeError(Exception):
    """Raised when the bytes are not a valid file of the format their name claims."""

    def __init__(self, message: str, line: int | None = None, offset: int | None = None):
        super().__init__(message)
        self.line = line
        self.offset = offset


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


def _parse_csv(data: bytes, dialect: Dialect, first: pa.Schema | None = None) -> pa.Table:
    """A CSV file in `dialect`; or, given the first block's schema, a later block, which has
    no header, no lines to skip, and the first block's column names and types."""
    body = csvread.split(data, dialect, first.names if first is not None else None)
    try:
        table = csvread.read(body, dialect, first)
    except pa.ArrowInvalid as exc:
        raise _parse_error(body, dialect, exc, later=first is not None) from None
    # An odd number of quotes means one never closed, and Arrow has swallowed the
    # rest of the file into one field; a strict reading finds where it opened.
    quote = dialect.quote.encode()
    doubled = not (dialect.escape and dialect.escape != dialect.quote)
    if quote and doubled and body.data.count(quote) % 2:
        opened = _unclosed_quote_line(body.data, quote)
        raise DecodeError(
            "a quoted field is never closed",
            line=None if opened is None else opened + body.lines_before,
        )
    _check_text(data, table)
    return table


def _parse_error(
    body: csvread.Body, dialect: Dialect, exc: pa.ArrowInvalid, later: bool
) -> DecodeError:
    found = _ROW.search(str(exc))
    line = _bad_csv_line(body.data, len(body.names), dialect) or (
        _record_line(body.data, int(found.group(1)), dialect) if found else None
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


def _in_table_dialect(data: bytes, own: Dialect, table: Dialect) -> tuple[pa.Table, Dialect]:
    """Read a file with its table's dialect, which its own detection disagrees with.

    The lines before the header and the date formats of the columns are the file's
    own; the rest is the table's. It fails with a reason that names both dialects when
    the table's does not parse the file, or reads another number of columns from it.
    """
    dialect = replace(table, skip_rows=own.skip_rows, formats=own.formats)
    if dialect == own:
        return _parse_csv(data, own), own
    try:
        result = _parse_csv(data, dialect)
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


def read_csv(
    data: bytes, pins: CsvOptions | None = None, table: Dialect | None = None
) -> tuple[pa.Table, Dialect]:
    """A whole CSV file, and the dialect it was read with: its own, detected with the
    table's pins applied, or `table`, the dialect its table's first file pinned."""
    data = _utf8(data)
    _check_record_size(data)
    if not data.strip():
        raise DecodeError("Empty CSV file", line=1)
    if table is None:
        own = sniff.detect(data, pins)
        return _parse_csv(data, own), own
    # The table's decimal separator, unless pinned otherwise, spares the sniffer a second look.
    if table.decimal != "." and (pins is None or pins.decimal is None):
        pins = replace(pins or CsvOptions(), decimal=table.decimal)
    return _in_table_dialect(data, sniff.detect(data, pins), table)


def _csv(data: bytes) -> pa.Table:
    return read_csv(data)[0]


def _gunzip(data: bytes) -> bytes:
    try:
        # Decompressed in full first: a truncated stream must fail here, not after some rows.
        # gzip.decompress, unlike zlib, reads every member of a concatenated (pigz, cat) file.
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DecodeError(f"not a complete gzip stream: {exc}", offset=0) from None


def _csv_gz(data: bytes) -> pa.Table:
    return _csv(_gunzip(data))


def _bad_json_line(data: bytes) -> int | None:
    """Error path only: the physical line of the first line that is not valid JSON.

    Arrow's "in row N" counts from the start of its block and skips blank lines.
    """
    for number, line in enumerate(_lines(data), start=1):
        if line.strip():
            try:
                json.loads(line)
            except ValueError:
                return number
    return None


def _typed(first: pa.Schema | None) -> pa.Schema | None:
    """The first block's column types, for a later block; except where it read a column as
    null (empty throughout the first block): each block types that one for itself."""
    if first is None:
        return None
    return pa.schema([f for f in first if not pa.types.is_null(f.type)])


def _jsonl(data: bytes, first: pa.Schema | None = None) -> pa.Table:
    parse = pa_json.ParseOptions(explicit_schema=_typed(first), unexpected_field_behavior="infer")
    # One block for the whole buffer: Arrow numbers the rows of an error within its block.
    read = pa_json.ReadOptions(use_threads=False, block_size=max(len(data), 1 << 20))
    try:
        return pa_json.read_json(pa.BufferReader(data), read_options=read, parse_options=parse)
    except pa.ArrowInvalid as exc:
        found = _JSON_ROW.search(str(exc))
        row = int(found.group(1)) if found else None
        line = _bad_json_line(data) or (_json_row_line(data, row) if row is not None else None)
        raise DecodeError(str(exc) + (FIXED_TYPES if first else ""), line=line) from None


def _json_row_line(data: bytes, row: int) -> int | None:
    """Error path only: the physical line of Arrow's JSON row `row`, which counts from 0
    and skips blank lines."""
    rows = -1
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            rows += 1
            if rows == row:
                return number
    return None


def _arrow_table(columns: dict[str, np.ndarray]) -> pa.Table:
    try:
        return pa.table(columns)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DecodeError(f"array cannot become a table column: {exc}") from None


def _array_columns(array: np.ndarray, prefix: str = "c") -> dict[str, np.ndarray]:
    if array.dtype.names:
        return {name: array[name] for name in array.dtype.names}
    if array.ndim == 1:
        return {f"{prefix}0": array}
    if array.ndim == 2:
        return {f"{prefix}{i}": array[:, i] for i in range(array.shape[1])}
    raise DecodeError(f"expected a 1-D or 2-D array, got shape {array.shape}")


def _npy(data: bytes) -> pa.Table:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DecodeError(f"not a valid .npy file: {exc}", offset=0) from None
    return _arrow_table(_array_columns(array))


def _npz(data: bytes) -> pa.Table:
    columns: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            for key in archive.files:
                array = archive[key]
                if array.ndim != 1:
                    raise DecodeError(f"array {key!r} has shape {array.shape}; expected 1-D")
                columns[key] = array
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise DecodeError(f"not a valid .npz file: {exc}", offset=0) from None
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise DecodeError(f"arrays have different lengths: {sorted(lengths)}")
    return _arrow_table(columns)


def _parquet(data: bytes) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(data), use_threads=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DecodeError(f"not a valid Parquet file: {exc}", offset=0) from None


def _arrow(data: bytes) -> pa.Table:
    try:
        return pa_ipc.open_file(pa.BufferReader(data)).read_all()
    except pa.ArrowInvalid:
        pass
    try:
        return pa_ipc.open_stream(pa.BufferReader(data)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DecodeError(f"not a valid Arrow IPC file or stream: {exc}", offset=0) from None


# Longest suffix first, so ".csv.gz" wins over a plain ".gz".
DECODERS: dict[str, Callable[[bytes], pa.Table]] = {
    ".csv.gz": _csv_gz,
    ".csv": _csv,
    ".jsonl": _jsonl,
    ".ndjson": _jsonl,
    ".npy": _npy,
    ".npz": _npz,
    ".parquet": _parquet,
    ".arrow": _arrow,
    ".feather": _arrow,
    ".ipc": _arrow,
}


# Formats whose records are lines, so a file can be cut into blocks between records.
BLOCK_DECODERS: dict[str, Callable[[bytes, pa.Schema | None], pa.Table]] = {
    ".csv": lambda data, first: _parse_csv(data, PLAIN, first),
    ".jsonl": _jsonl,
    ".ndjson": _jsonl,
}


def decode_block(
    name: str, data: bytes, first: pa.Schema | None,
    dialect: Dialect | None = None, pins: CsvOptions | None = None,
) -> tuple[pa.Table, Dialect | None]:
    """One block of a streamed file, and the dialect it was read with. Block 0 (no `first`)
    is read like a whole file: `dialect` is its table's, if pinned. A later block is read
    with block 0's `dialect`, and `first`, block 0's schema, gives its names and types."""
    if name.lower().endswith(".csv"):
        if first is None:
            return read_csv(data, pins, dialect)
        _check_record_size(data)
        later = replace(dialect or PLAIN, header=False, skip_rows=0)
        return _parse_csv(data, later, first), dialect
    for suffix, decoder in BLOCK_DECODERS.items():
        if name.lower().endswith(suffix):
            return decoder(data, first), None
    raise DecodeError(f"{name!r} cannot be read in blocks; only {', '.join(BLOCK_DECODERS)} can")


def decode(name: str, data: bytes) -> pa.Table:
    """Decode `data` by the extension of `name` into an Arrow table."""
    lower = name.lower()
    for suffix, decoder in DECODERS.items():
        if lower.endswith(suffix):
            return decoder(data)
    raise DecodeError(f"no decoder for {name!r}; known extensions: {', '.join(DECODERS)}")


def decode_file(
    name: str, data: bytes, pins: CsvOptions | None = None, table: Dialect | None = None
) -> tuple[pa.Table, Dialect | None]:
    """Like `decode`, and for CSV also the dialect the file was read with (`read_csv`)."""
    lower = name.lower()
    if lower.endswith(".csv"):
        return read_csv(data, pins, table)
    if lower.endswith(".csv.gz"):
        return read_csv(_gunzip(data), pins, table)
    return decode(name, data), None
