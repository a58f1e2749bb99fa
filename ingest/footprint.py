"""What an input becomes in memory, found before it is read.

Plain synchronous code, called in a thread of the main process: the byte budget
is charged with this, not with the file's size on disk, and a file too big for
memory_mb is streamed or refused on its account. A worker measures the bytes it
is given again (`of_bytes`) before it decodes them: they must not have grown.

    .gz        the compressed bytes plus the plain ones, counted by decompressing
               and keeping nothing (`inflate.plain_size`), up to a cap
    .npy       (`of_bytes` only, in the worker that reads it) the file plus what its
               header's array becomes as a table's columns (`array_bytes`): a header
               of a few bytes can claim a billion values of no width
    .npz       the archive plus each member's size from the zip's central
               directory, or what its .npy header claims, if more
    .parquet   the file plus, for each column, the footer's uncompressed size or
               rows x the column's width, whichever is more
    .arrow     the file plus each compressed body buffer's uncompressed length
    others     the size on disk

A file these cannot bound (a zip member that claims more than its method can
produce, or a method whose expansion has no bound) says why, and is refused.
One whose metadata cannot be read counts its size on disk: the worker that
decodes it reports what is wrong, at no greater cost than any file's.
"""

from __future__ import annotations

import io
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from . import ipc_size, regular
from .inflate import plain_size

if TYPE_CHECKING:
    import numpy as np
    import pyarrow.parquet as pq

# Deflate's densest coding gives about 1032 bytes for one (the zlib FAQ); with the
# member's headers and the .npy header, a little more is allowed.
DEFLATE_MAX_RATIO = 1040
# Bytes per value of a column whose values vary in length, besides the values themselves:
# an offset and, where there are nulls, a bit of validity.
VARIABLE_WIDTH_BYTES = 8
PARQUET_WIDTHS = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}
# A NumPy text or bytes value reaches Arrow as a Python object (`decode._strings`): about
# this much besides its characters, and its place in a list.
PYTHON_STRING_BYTES = 56
# Bytes per value of a NumPy number as a table holds it: every width widened to 64 bits.
WIDENED_BYTES = 8


@dataclass(frozen=True)
class Footprint:
    """What a file takes in memory when read whole."""

    bytes: int  # past the cap it was measured to, only "more than the cap"
    unbounded: str = ""  # why its expansion cannot be known before it is read


def measured(name: str) -> bool:
    """Whether a file of this name expands in memory, so that its size on disk is no guide."""
    return name.lower().endswith((".gz", ".npz", ".parquet", ".arrow", ".feather", ".ipc"))


def footprint(path: str | Path, name: str, size: int, cap: int) -> Footprint:
    """What the file at `path` becomes in memory. `cap`: past it, a precise answer is not
    needed (a gzip file stops being decompressed there). Raises OSError if it cannot be read."""
    if name.lower().endswith(".gz"):
        return Footprint(size + plain_size(path, max(cap - size, 0)))
    if not measured(name):  # an .npy is measured by its worker (`compute/bounded.py`)
        return Footprint(size)
    with open(path, "rb", opener=regular.opener) as fh:
        return _from_headers(fh, name, size)


def of_bytes(name: str, data: bytes) -> Footprint:
    """What a file already in memory becomes, from its headers; not for a gzip file."""
    return _from_headers(io.BytesIO(data), name, len(data))


def _from_headers(source: BinaryIO, name: str, size: int) -> Footprint:
    # Loaded for the first file that needs it: most inputs are text, and the service's
    # process need not pay for pyarrow at start-up.
    import pyarrow as pa

    lower = name.lower()
    try:
        if lower.endswith(".npy"):
            return Footprint(size + _header_bytes(source))
        if lower.endswith(".npz"):
            return _npz(source, size)
        if lower.endswith(".parquet"):
            return Footprint(size + _parquet(source))
        if lower.endswith((".arrow", ".feather", ".ipc")):
            return Footprint(size + ipc_size.expanded(source))
    # Not what its name says: the worker reports it. pyarrow reports a damaged footer as an
    # OSError, zipfile an encrypted member as a RuntimeError.
    except (zipfile.BadZipFile, pa.ArrowException, ValueError, EOFError, struct.error,
            zlib.error, OSError, RuntimeError, NotImplementedError, SyntaxError,
            tokenize.TokenError):
        pass
    return Footprint(size)


def _npz(source: BinaryIO, size: int) -> Footprint:
    total = size
    with zipfile.ZipFile(source) as archive:
        for member in archive.infolist():
            why = _unbounded(member)
            if why:
                return Footprint(total, f"its member {member.filename!r} {why}")
            total += max(member.file_size, _npy_bytes(archive, member))
    return Footprint(total)


def _unbounded(member: zipfile.ZipInfo) -> str:
    """Why a zip member's size cannot be trusted, or "" if it can.

    zipfile stops a member at the size the central directory declares, so that size
    bounds the member, as long as its method cannot make more than it reads at once.
    """
    if member.compress_type == zipfile.ZIP_STORED:
        if member.file_size != member.compress_size:
            return "is stored uncompressed, yet declares a size other than its length"
        return ""
    if member.compress_type == zipfile.ZIP_DEFLATED:
        if member.file_size > max(member.compress_size, 1) * DEFLATE_MAX_RATIO:
            return (
                f"declares {member.file_size} bytes from {member.compress_size} compressed,"
                f" more than deflate can produce (about {DEFLATE_MAX_RATIO}:1)"
            )
        return ""
    return (
        f"is compressed with method {member.compress_type}, whose expansion cannot be"
        " bounded before it is read; save it with numpy.savez or numpy.savez_compressed"
    )


def _npy_bytes(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> int:
    """The bytes the member's .npy header says its array takes: numpy allocates them
    before it reads the data. Only the header is decompressed."""
    if not member.filename.endswith(".npy"):
        return 0
    with archive.open(member) as fh:
        return _header_bytes(fh)


def _header_bytes(source: IO[bytes]) -> int:
    """What the array an .npy header describes becomes, from the header alone."""
    import numpy as np

    version = np.lib.format.read_magic(source)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(source)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(source)
    if any(size < 0 for size in shape):  # numpy's reader lets it through; its load does not
        raise ValueError(f"a negative size in the shape {shape}")
    return array_bytes(int(np.prod(shape, dtype=object)), dtype)


def array_bytes(values: int, dtype: np.dtype[Any]) -> int:
    """What `values` values of `dtype` take in memory as they are read: numpy's array,
    then its columns as a table holds them. A value of no width (`|S0`) still takes its
    place in each."""
    fields = [dtype[name] for name in dtype.names] if dtype.names else [dtype]
    widened = sum(
        f.itemsize + PYTHON_STRING_BYTES if f.kind in "SU" else max(f.itemsize, WIDENED_BYTES)
        for f in fields
    )
    return values * (dtype.itemsize + widened)


def _parquet(source: BinaryIO) -> int:
    """The decoded columns: a run-length or dictionary encoding can make a column of
    a billion equal values a few bytes even before compression, so the footer's
    uncompressed sizes alone say too little."""
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(source)
    widths = [_width(metadata.schema.column(j)) for j in range(metadata.num_columns)]
    total = 0
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        for j in range(group.num_columns):
            column = group.column(j)
            total += max(column.total_uncompressed_size, column.num_values * widths[j])
    return total


def _width(column: pq.ColumnSchema) -> int:
    """Bytes per value once decoded, by the column's physical type."""
    kind = column.physical_type
    if kind == "FIXED_LEN_BYTE_ARRAY":
        return int(column.length)
    return PARQUET_WIDTHS.get(kind, VARIABLE_WIDTH_BYTES)
