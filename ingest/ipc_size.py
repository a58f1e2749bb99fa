"""What an Arrow IPC file or stream expands to, read from its message headers alone.

Plain synchronous code, called in a thread of the main process and in workers. Arrow compresses
an IPC body buffer by buffer (LZ4 or ZSTD), each prefixed with its uncompressed
length; the buffers' places are in the record batch's flatbuffer header, which
pyarrow does not expose without decoding the body. So the few fields needed are
read here, as the Arrow columnar format specifies them (format/Message.fbs),
and no body is ever decompressed or held:

    stream  := (0xFFFFFFFF, int32 length, Message flatbuffer, body)* then 0xFFFFFFFF, 0
    file    := "ARROW1\\0\\0", stream, footer, int32, "ARROW1"
    Message := version: short, header_type: ubyte, header: table, bodyLength: long
    RecordBatch := length: long, nodes: [FieldNode], buffers: [Buffer], compression: table
    DictionaryBatch := id: long, data: RecordBatch
"""

from __future__ import annotations

import struct
from typing import BinaryIO

MAGIC = b"ARROW1"
CONTINUATION = b"\xff\xff\xff\xff"
DICTIONARY_BATCH, RECORD_BATCH = 2, 3
BUFFER = struct.Struct("<qq")  # Buffer: offset and length within the body
NOT_COMPRESSED = -1  # a compressed body's buffer left as it was


class _Table:
    """One flatbuffer table: its fields by index, as the schema declares them."""

    def __init__(self, data: bytes, position: int):
        self.data = data
        self.position = position
        self.vtable = position - struct.unpack_from("<i", data, position)[0]
        self.vtable_size = struct.unpack_from("<H", data, self.vtable)[0]

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        if slot >= self.vtable_size:
            return 0
        offset: int = struct.unpack_from("<H", self.data, self.vtable + slot)[0]
        return self.position + offset if offset else 0

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        at = self._field(index)
        return int(struct.unpack_from(fmt, self.data, at)[0]) if at else default

    def table(self, index: int) -> _Table | None:
        at = self._field(index)
        return _Table(self.data, at + struct.unpack_from("<I", self.data, at)[0]) if at else None

    def structs(self, index: int, kind: struct.Struct) -> list[tuple[int, ...]]:
        at = self._field(index)
        if not at:
            return []
        start = at + struct.unpack_from("<I", self.data, at)[0]
        count = struct.unpack_from("<I", self.data, start)[0]
        return [kind.unpack_from(self.data, start + 4 + i * kind.size) for i in range(count)]


def _message(fh: BinaryIO) -> bytes | None:
    """The next message's flatbuffer, or None at the end of the stream."""
    prefix = fh.read(4)
    if prefix == CONTINUATION:
        prefix = fh.read(4)
    if len(prefix) < 4:
        return None
    (length,) = struct.unpack("<i", prefix)
    if length <= 0:
        return None
    metadata = fh.read(length)
    if len(metadata) < length:
        raise ValueError("an Arrow message is cut short")
    return metadata


def _batch(header: _Table, fh: BinaryIO, body: int) -> int:
    """What one batch's body takes, beyond the file, once its buffers are decompressed."""
    if header.table(3) is None:  # not compressed: the decoded batch is a view of the file
        return 0
    total = 0
    for offset, length in header.structs(2, BUFFER):
        if offset < 0 or length < 0:
            raise ValueError("an Arrow buffer with a negative offset or length")
        if length < 8:
            continue  # an empty buffer carries no length prefix
        fh.seek(body + offset)
        (plain,) = struct.unpack("<q", fh.read(8))
        total += length - 8 if plain == NOT_COMPRESSED else plain
    return total


def expanded(fh: BinaryIO) -> int:
    """Bytes the decoded batches of an Arrow IPC file (or stream) take beyond the file.
    Raises ValueError or struct.error if the headers are not Arrow's, OSError if unreadable."""
    total = 0
    if fh.read(8)[:6] != MAGIC:
        fh.seek(0)
    while (metadata := _message(fh)) is not None:
        message = _Table(metadata, struct.unpack_from("<I", metadata, 0)[0])
        kind = message.scalar(1, "<B")
        body_length = message.scalar(3, "<q")
        body = fh.tell()
        if body_length < 0:
            raise ValueError("an Arrow message with a negative body length")
        header = message.table(2)
        if header is not None and kind == DICTIONARY_BATCH:
            header = header.table(1)
        if header is not None and kind in (DICTIONARY_BATCH, RECORD_BATCH):
            total += _batch(header, fh, body)
        fh.seek(body + body_length)
    return total
