"""Bytes to an Arrow table, chosen by the file's extension.

Runs in a worker process. Parse errors are raised as `DecodeError`, which
carries the line or byte offset where the format reports one.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

# Arrow reports "Row #N" when it reads single-threaded, which a worker does anyway.
_ROW = re.compile(r"Row #(\d+)")
_JSON_ROW = re.compile(r"in row (\d+)")


class DecodeError(Exception):
    """Raised when the bytes are not a valid file of the format their name claims."""

    def __init__(self, message: str, line: int | None = None, offset: int | None = None):
        super().__init__(message)
        self.line = line
        self.offset = offset


def _csv(data: bytes | pa.Buffer) -> pa.Table:
    try:
        return pa_csv.read_csv(
            pa.BufferReader(data), read_options=pa_csv.ReadOptions(use_threads=False)
        )
    except pa.ArrowInvalid as exc:
        found = _ROW.search(str(exc))
        raise DecodeError(str(exc), line=int(found.group(1)) if found else None) from None


def _csv_gz(data: bytes) -> pa.Table:
    try:
        # Decompressed in full first: a truncated stream must fail here, not after some rows.
        plain = zlib.decompress(data, wbits=31)
    except zlib.error as exc:
        raise DecodeError(f"not a complete gzip stream: {exc}", offset=0) from None
    return _csv(plain)


def _jsonl(data: bytes) -> pa.Table:
    try:
        return pa_json.read_json(
            pa.BufferReader(data), read_options=pa_json.ReadOptions(use_threads=False)
        )
    except pa.ArrowInvalid as exc:
        found = _JSON_ROW.search(str(exc))
        # Arrow counts JSON rows from 0; people count lines from 1.
        raise DecodeError(str(exc), line=int(found.group(1)) + 1 if found else None) from None


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
    return pa.table(_array_columns(array))


def _npz(data: bytes) -> pa.Table:
    columns: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            for key in archive.files:
                array = archive[key]
                if array.ndim != 1:
                    raise DecodeError(f"array {key!r} has shape {array.shape}; expected 1-D")
                columns[key] = array
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        raise DecodeError(f"not a valid .npz file: {exc}", offset=0) from None
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise DecodeError(f"arrays have different lengths: {sorted(lengths)}")
    return pa.table(columns)


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


def decode(name: str, data: bytes) -> pa.Table:
    """Decode `data` by the extension of `name` into an Arrow table."""
    lower = name.lower()
    for suffix, decoder in DECODERS.items():
        if lower.endswith(suffix):
            return decoder(data)
    raise DecodeError(f"no decoder for {name!r}; known extensions: {', '.join(DECODERS)}")
