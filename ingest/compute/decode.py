"""Bytes to an Arrow table, chosen by the file's extension.

Runs in a worker process. Parse errors are raised as `DecodeError`, which
carries the line or byte offset where the format reports one.
"""

from __future__ import annotations

import collections
import gzip
import io
import json
import re
import tokenize
import uuid
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as pa_ipc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ..blocks import JSON_LINES, LINE_FORMATS
from ..conform import typed_text
from ..dialect import CsvOptions, Dialect
from ..isotime import dates_in_text, timestamps_in_text
from ..nested_types import holds, mapped
from .csvfile import read_block, read_csv
from .failures import FIXED_TYPES, DecodeError
from .json_dates import dates_as_written
from .mixed import read_mixed

__all__ = ["FIXED_TYPES", "DecodeError", "decode", "decode_block", "decode_file", "read_csv"]

_JSON_ROW = re.compile(r"in row (\d+)")


def _lines(data: bytes) -> Iterator[str]:
    # utf-8-sig: a first line after a byte order mark is JSON as Arrow's reader takes it.
    return io.TextIOWrapper(
        io.BytesIO(data), encoding="utf-8-sig", errors="replace", newline=""
    )


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
    null, at any depth (empty throughout the first block, or `[]`), its timestamps, which
    Arrow's reader would refuse past microseconds, and its dates, which it reads only as
    timestamps: each block types those itself (`isotime`, `json_dates`)."""
    if first is None:
        return None
    return pa.schema([
        f for f in first
        if not _holds_null(f.type) and not pa.types.is_timestamp(f.type)
        and not pa.types.is_date(f.type)
    ])


def _holds_null(kind: pa.DataType) -> bool:
    return holds(kind, pa.types.is_null)


def _jsonl(
    data: bytes, first: pa.Schema | None = None, text: Collection[str] = ()
) -> pa.Table:
    """A JSON Lines file, or a block of one after `first`; the columns named in `text`
    (its table's text columns), and those `first` read as text, keep their strings as
    written, never read as timestamps or dates: cast back to text, `10:00:00+05:00`
    would be spelled anew, in UTC."""
    as_text = set(text)
    if first is not None:
        as_text.update(f.name for f in first if pa.types.is_string(f.type))
    parse = pa_json.ParseOptions(explicit_schema=_typed(first), unexpected_field_behavior="infer")
    # One block for the whole buffer: Arrow numbers the rows of an error within its block.
    read = pa_json.ReadOptions(use_threads=False, block_size=max(len(data), 1 << 20))
    _check_utf8(data)
    try:
        table = pa_json.read_json(pa.BufferReader(data), read_options=read, parse_options=parse)
        if first is None and not table.num_rows:
            # Blank lines alone, of which Arrow makes a table of nothing: an empty file, as
            # Arrow says of one of no bytes (a later block of them is the file's end).
            raise DecodeError("Empty JSON file")
        if not _whole(table):
            relisted = read_mixed(data)
            if relisted is None:
                raise DecodeError("a list Arrow's JSON reader could not read")
            return _times_in(relisted, as_text, first)
        if as_text:
            table = _as_written(table, data, read, as_text)
        return typed_text(timestamps_in_text(dates_as_written(table, data, read), as_text))
    except pa.ArrowInvalid as exc:
        # Kinds mixed in a column (`1`, then `"x"`): read line by line, as is a later block
        # whose values do not fit its first block's types (`2.5` in a column of integers,
        # text in one of numbers): the table's rules then rescue what does not fit.
        mixed = "changed from" in str(exc) or (
            first is not None and "Failed to convert JSON" in str(exc)
        )
        if mixed and _bad_json_line(data) is None and (table := read_mixed(data)) is not None:
            return _times_in(table, as_text, first)
        found = _JSON_ROW.search(str(exc))
        row = int(found.group(1)) if found else None
        line = _bad_json_line(data) or (_json_row_line(data, row) if row is not None else None)
        raise DecodeError(str(exc) + (FIXED_TYPES if first else ""), line=line) from None


def _times_in(table: pa.Table, text: Collection[str], first: pa.Schema | None) -> pa.Table:
    """A file read line by line (`read_mixed`) with its columns of times typed as Arrow's
    reading types them: ISO timestamps as timestamps, and in a whole file (not a later
    block, which keeps its first block's types) dates alone as dates."""
    if first is None:
        table = dates_in_text(table, text)
    table = timestamps_in_text(table, text)
    # A column typed so is no longer text: it keeps no mark of text as Arrow's reading's.
    return table.cast(pa.schema(
        [f.remove_metadata() if pa.types.is_temporal(f.type) else f for f in table.schema],
        table.schema.metadata,
    ))


def _as_written(
    table: pa.Table, data: bytes, read: pa_json.ReadOptions, text: Collection[str]
) -> pa.Table:
    """`table` with its columns named in `text` that Arrow's reader took as timestamps
    (`2024-01-01T10:00:00`, a form it infers) read again as the strings they are."""
    found = [(index, field) for index, field in enumerate(table.schema)
             if field.name in text and pa.types.is_timestamp(field.type)]
    if not found:
        return table
    parse = pa_json.ParseOptions(
        explicit_schema=pa.schema([(field.name, pa.string()) for _, field in found]),
        unexpected_field_behavior="ignore",
    )
    again = pa_json.read_json(pa.BufferReader(data), read_options=read, parse_options=parse)
    for index, field in found:
        table = table.set_column(
            index, field.with_type(pa.string()), again.column(field.name)
        )
    return table


def _whole(table: pa.Table) -> bool:
    """Is Arrow's reading of a JSON Lines file whole? Its reader (as of pyarrow 26) makes
    a list whose first value is null (`[null, 1]`) one value short, an array no reader
    opens; such a file is read line by line instead (`read_mixed`). Only a table that
    holds a list is checked: the check reads every offset."""
    if not any(_holds_list(f.type) for f in table.schema):
        return True
    try:
        table.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _holds_list(kind: pa.DataType) -> bool:
    return holds(kind, lambda k: pa.types.is_list(k) or pa.types.is_large_list(k))


def _check_utf8(data: bytes) -> None:
    """Arrow's JSON reader takes text that is not UTF-8 into its strings as it is, and
    no reader opens a Parquet file that holds such a string: the file is refused."""
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Where, in the error's line (a block's is its file's line); not in its text.
        raise DecodeError(
            "not valid UTF-8; re-save the file as UTF-8",
            line=data.count(b"\n", 0, exc.start) + 1, offset=exc.start,
        ) from None


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
    # Arrow takes only native byte order; a big-endian array (FITS, MATLAB, HDF5 exports
    # write them) is swapped, as numpy reads it.
    columns = {
        name: column if column.dtype.isnative else column.astype(column.dtype.newbyteorder("="))
        for name, column in columns.items()
    }
    try:
        return typed_text(pa.table({
            name: _strings(name, column) if column.dtype.kind in "SU" else column
            for name, column in columns.items()
        }))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DecodeError(f"array cannot become a table column: {exc}") from None


def _strings(name: str, column: np.ndarray) -> pa.Array:
    """numpy's fixed-width bytes or text, each value as numpy reads it (only the NULs that
    pad it to its width dropped): Arrow's conversion ends each at its first NUL."""
    if column.dtype.kind == "U":
        _check_code_points(name, column)
    return pa.array(column.tolist(), pa.binary() if column.dtype.kind == "S" else pa.string())


def _check_code_points(name: str, column: np.ndarray) -> None:
    """numpy's text holds any 32-bit number as a character; one that is no Unicode
    character (a lone surrogate, or past U+10FFFF) has no UTF-8 to be written as."""
    if column.dtype.itemsize == 0 or not len(column):
        return
    codes = np.ascontiguousarray(column).view(np.uint32).reshape(len(column), -1)
    bad = ((codes >= 0xD800) & (codes <= 0xDFFF)) | (codes > 0x10FFFF)
    rows = np.flatnonzero(bad.any(axis=1))
    if len(rows):
        raise DecodeError(
            f"column {name!r} holds text that is not Unicode, row {int(rows[0]) + 1} the first"
            " (a lone surrogate, or a code point past U+10FFFF)"
        )


def _array_columns(array: np.ndarray, prefix: str = "c") -> dict[str, np.ndarray]:
    if array.dtype.names:
        return {name: array[name] for name in array.dtype.names}
    if array.ndim == 1:
        return {f"{prefix}0": array}
    if array.ndim == 2:
        return {f"{prefix}{i}": array[:, i] for i in range(array.shape[1])}
    raise DecodeError(f"expected a 1-D or 2-D array, got shape {array.shape}")


NPY_MAGIC = b"\x93NUMPY"
# A zip file begins with a member's header, or, with no member, with its directory's end.
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# What numpy's reading of a header that is not the Python literal it should be raises.
_BAD_HEADER = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError)


def _npy(data: bytes) -> pa.Table:
    # Checked here: numpy takes any other bytes for a pickle, and says so.
    if not data.startswith(NPY_MAGIC):
        raise DecodeError("not a .npy file: it does not begin with \\x93NUMPY", offset=0)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except _BAD_HEADER as exc:
        raise DecodeError(f"not a valid .npy file: {exc}", offset=0) from None
    return _arrow_table(_array_columns(array))


def _npz(data: bytes) -> pa.Table:
    if not data.startswith(ZIP_MAGICS):
        raise DecodeError("not an .npz file: it does not begin as a zip file does", offset=0)
    columns: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            keys = archive.files
            # `x.npy` and `x` are both the array `x`: numpy would give one of them twice.
            twice = sorted(key for key, count in collections.Counter(keys).items() if count > 1)
            if twice:
                raise DecodeError(f"it holds more than one array named {twice[0]!r}")
            for key in keys:
                array = archive[key]
                if not isinstance(array, np.ndarray):
                    raise DecodeError(f"its member {key!r} is not a NumPy array (.npy)")
                if array.ndim != 1:
                    raise DecodeError(f"array {key!r} has shape {array.shape}; expected 1-D")
                if array.dtype.names:
                    raise DecodeError(
                        f"array {key!r} is a structured array: an .npz's arrays are its"
                        " columns, each of one value a row (an .npy's fields are columns)"
                    )
                columns[key] = array
    except (*_BAD_HEADER, zlib.error, zipfile.BadZipFile) as exc:
        raise DecodeError(f"not a valid .npz file: {exc}", offset=0) from None
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise DecodeError(f"arrays have different lengths: {sorted(lengths)}")
    return _arrow_table(columns)


# INT96 timestamps (Spark, Hive and Impala wrote them) read as microseconds: as Arrow's
# default nanoseconds, a date outside 1677-2262 (9999-12-31, an open end) wraps around.
INT96_UNIT = "us"


def _parquet(data: bytes) -> pa.Table:
    try:
        # ParquetFile, not read_table: the dataset reader refuses a repeated column name,
        # which the file's table then takes apart as any other (`a`, `a_1`).
        parquet = pq.ParquetFile(pa.BufferReader(data), coerce_int96_timestamp_unit=INT96_UNIT)
        table = parquet.read(use_threads=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DecodeError(f"not a valid Parquet file: {exc}", offset=0) from None
    return typed_text(_without_extensions(_valid(table)))


def _valid(table: pa.Table) -> pa.Table:
    """A table read from Parquet or Arrow IPC, whose readers take a string as its bytes
    are: one that is not UTF-8 would make a part file no reader opens (0.15 ms a MB)."""
    try:
        table.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise DecodeError(f"holds values no reader would open ({exc})") from None
    return table


def _without_extensions(table: pa.Table) -> pa.Table:
    """Top-level columns of an extension type as values every reader holds: a UUID as its
    text (`f81d4fae-7dec-11d0-a765-00a0c91e6bf6`, as DuckDB shows the UUIDs it writes),
    any other as the values it is stored as. A run-end encoded column as its values,
    as a dictionary-encoded one is read: Arrow casts it to nothing but text."""
    for index, field in enumerate(table.schema):
        kind = field.type
        if pa.types.is_run_end_encoded(kind):
            plain = pa.chunked_array(
                [pc.run_end_decode(chunk) for chunk in table.column(index).chunks],
                kind.value_type,
            )
            table = table.set_column(index, field.with_type(kind.value_type), plain)
            continue
        if not isinstance(kind, pa.BaseExtensionType):
            if pa.types.is_nested(kind) and _plain_type(kind) != kind:
                # One inside a list or a struct (DuckDB writes `[uuid()]` so): value by value.
                values = _plain_values(table.column(index).to_pylist())
                plain = pa.chunked_array([pa.array(values, _plain_type(kind))])
                table = table.set_column(index, field.with_type(plain.type), plain)
            continue
        stored = pa.chunked_array(
            [chunk.storage for chunk in table.column(index).chunks], kind.storage_type
        )
        if kind.extension_name == "arrow.uuid":
            stored = pa.chunked_array([pa.array(
                [None if raw is None else str(uuid.UUID(bytes=raw)) for raw in stored.to_pylist()],
                pa.string(),
            )])
        table = table.set_column(index, pa.field(field.name, stored.type), stored)
    return table


def _plain_type(kind: pa.DataType) -> pa.DataType:
    """`kind` with each extension type inside it as `_without_extensions` makes a column
    of one: a UUID as text, any other as what it is stored as."""
    return mapped(kind, _plain_leaf)


def _plain_leaf(kind: pa.DataType) -> pa.DataType | None:
    if not isinstance(kind, pa.BaseExtensionType):
        return None
    return pa.string() if kind.extension_name == "arrow.uuid" else _plain_type(
        kind.storage_type
    )


def _plain_values(value: object) -> object:
    """Python values of a column so made: a UUID as its text."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [_plain_values(item) for item in value]
    if isinstance(value, tuple):  # a map's (key, item)
        return tuple(_plain_values(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain_values(item) for key, item in value.items()}
    return value


ARROW_FILE_MAGIC = b"ARROW1"


def _arrow(data: bytes) -> pa.Table:
    try:
        table = pa_ipc.open_file(pa.BufferReader(data)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        if data.startswith(ARROW_FILE_MAGIC):  # a file, cut short or damaged: not a stream
            raise DecodeError(f"not a valid Arrow IPC file: {exc}", offset=0) from None
        try:
            table = pa_ipc.open_stream(pa.BufferReader(data)).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise DecodeError(
                f"not a valid Arrow IPC file or stream: {exc}", offset=0
            ) from None
    return typed_text(_without_extensions(_valid(table)))


# Longest suffix first, so ".csv.gz" wins over a plain ".gz".
DECODERS: dict[str, Callable[[bytes], pa.Table]] = {
    ".csv.gz": _csv_gz,
    ".csv": _csv,
    ".npy": _npy,
    ".npz": _npz,
    ".parquet": _parquet,
    ".arrow": _arrow,
    ".feather": _arrow,
    ".ipc": _arrow,
}


def decode_block(
    name: str, data: bytes, first: pa.Schema | None,
    dialect: Dialect | None = None, pins: CsvOptions | None = None, text: Collection[str] = (),
    columns: Collection[str] = (),
) -> tuple[pa.Table, Dialect | None]:
    """One block of a streamed file, and the dialect it was read with. Block 0 (no `first`)
    is read like a whole file: `dialect` is its table's, if pinned. A later block is read
    with block 0's `dialect`, and `first`, block 0's schema, gives its names and types."""
    if name.lower().endswith(".csv"):
        if first is None:
            return read_csv(data, pins, dialect, text, columns)
        return read_block(data, dialect, first), dialect
    if name.lower().endswith(JSON_LINES):
        return _jsonl(data, first, text), None
    raise DecodeError(f"{name!r} cannot be read in blocks; only {', '.join(LINE_FORMATS)} can")


def decode(name: str, data: bytes, text: Collection[str] = ()) -> pa.Table:
    """Decode `data` by the extension of `name` into an Arrow table; a JSON Lines file's
    columns named in `text` keep their strings as written (`_jsonl`)."""
    lower = name.lower()
    if lower.endswith(JSON_LINES):
        return _jsonl(data, None, text)
    for suffix, decoder in DECODERS.items():
        if lower.endswith(suffix):
            return decoder(data)
    known = ", ".join([*DECODERS, *JSON_LINES])
    raise DecodeError(f"no decoder for {name!r}; known extensions: {known}")


def decode_file(
    name: str, data: bytes, pins: CsvOptions | None = None, table: Dialect | None = None,
    text: Collection[str] = (), columns: Collection[str] = (),
) -> tuple[pa.Table, Dialect | None]:
    """Like `decode`, and for CSV also the dialect the file was read with (`read_csv`);
    a CSV's columns named in `text` are read as text."""
    lower = name.lower()
    if lower.endswith(".csv"):
        return read_csv(data, pins, table, text, columns)
    if lower.endswith(".csv.gz"):
        return read_csv(_gunzip(data), pins, table, text, columns)
    return decode(name, data, text), None
