"""A big file's blocks of whole records, read as the stream asks for them.

Runs on the event loop; the hashing, inflating and cutting go to a thread.

    file --aiofiles--> chunks --thread: hash, inflate if gzip'd, cut--> blocks

The digest and length are of the bytes on disk, compressed or not: a file's
identity is its bytes. A gzip'd file is read a megabyte at a time and inflated
no more than a block at a time (`inflate.Inflater`), so a file that expands a
thousandfold never sits in memory whole.

Inflating here, not in the workers, lets the cut between records be made on
plain text, where it is made for a plain file. It costs the main process
little: on a loaded 2-core machine zlib gave 116 MB/s of plain CSV in a thread,
while a worker parsed and encoded 13 MB/s, so one thread keeps up with nine
workers.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib

from aiofiles.threadpool.binary import AsyncBufferedReader

from ..cut import Cutter, Piece, counted_wrong, header, likeliest_delimiter, split_rows
from ..inflate import RAW_BYTES, Inflater, inner_name

# The longest record a block may carry over; the decoder's own record-size guard.
MAX_RECORD_BYTES = 16 << 20
# What a row costs a worker beyond its text (its source columns, offsets): a block holds
# at most block_bytes / ROW_BYTES rows, so short rows make blocks of fewer bytes. Rows of
# 64 bytes or more (most files) are not split.
ROW_BYTES = 64


class BlockReader:
    """A file's blocks of whole records; only the first starts with the header."""

    def __init__(
        self, fh: AsyncBufferedReader, name: str, block_bytes: int, delimiter: str | None = None,
        literal_quotes: bool = False,
    ):
        self.fh = fh
        self.quoted = inner_name(name).lower().endswith(".csv")
        self.block_bytes = block_bytes
        # A CSV's delimiter, where known: for its quotes, if they come to be read field by
        # field (`Cutter.literal_quotes`; from the first byte, if asked).
        self.cutter = Cutter(
            self.quoted, MAX_RECORD_BYTES, literal_quotes=literal_quotes,
            delimiter=delimiter.encode() if delimiter else None,
        )
        # Block 0, cut by a count of quotes before the delimiter was known: kept until it is
        # looked at with the one it was read with (`misread_first_block`).
        self._first: bytes | None = None
        self.inflater = Inflater() if name.lower().endswith(".gz") else None
        self._lone_cr: bool | None = None  # a CSV's lines end in CR alone: its first chunk says
        self._held = b""
        self._raw_eof = False
        self.digest = hashlib.sha256()
        self.first = True
        self.length = 0  # bytes read from disk
        self.eof = False
        self._ready: collections.deque[tuple[bytes, int]] = collections.deque()

    async def next(self) -> tuple[bytes, int] | None:
        """(data, the file's line number of its first line), or None at the end.
        Raises GzipError if a gzip'd file is not a complete gzip stream."""
        if self._ready:
            return self._ready.popleft()
        while not self.eof:
            if self.inflater is None:
                chunk: bytes = await self.fh.read(self.block_bytes)
                self.length += len(chunk)
                self.eof = len(chunk) < self.block_bytes
                block = await asyncio.to_thread(self._block, chunk, chunk)
            else:
                chunk = await self._inflated()
                block = await asyncio.to_thread(self._block, b"", chunk)
            if block is not None:
                return block
        return None

    async def _inflated(self) -> bytes:
        """Up to a block of plain bytes; fewer only at the end, which sets `eof`."""
        assert self.inflater is not None
        pieces: list[bytes] = []
        size = 0
        while size < self.block_bytes:
            raw = b""
            if self.inflater.hungry and not self._raw_eof:
                raw = await self.fh.read(RAW_BYTES)
                self.length += len(raw)
                self._raw_eof = len(raw) < RAW_BYTES
            piece = await asyncio.to_thread(self._inflate, raw, self.block_bytes - size)
            if piece:
                pieces.append(piece)
                size += len(piece)
            elif self._raw_eof and self.inflater.hungry:
                self.inflater.close()
                self.eof = True
                break
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _inflate(self, raw: bytes, size: int) -> bytes:
        """Called in a thread: hash what was read, and inflate up to `size` bytes."""
        assert self.inflater is not None
        if raw:
            self.digest.update(raw)
            self.inflater.feed(raw)
        return self.inflater.read(size)

    def _block(self, raw: bytes, chunk: bytes) -> tuple[bytes, int] | None:
        """Called in a thread: it hashes, scans and copies megabytes."""
        if raw:
            self.digest.update(raw)
        piece = self.cutter.feed(self._line_feeds(chunk), self.eof)
        if self.first:
            data = self._held + piece.data
            if len(data) == len(self._header(data)) and not self.eof:
                self._held = data  # block 0 sets the column types: it needs a record
                return None
            self.first = False
            cutter = self.cutter
            if self.quoted and cutter.delimiter is None and not cutter.literal_quotes:
                self._first = data
            return self._split(data, 1, first=True)
        if not piece.data:
            return None
        return self._split(piece.data, piece.first_line, rows=self.cutter.line - piece.first_line)

    def misread_first_block(self, sniffed: bytes | None) -> bytes | None:
        """Block 0 of a CSV, cut before its delimiter was known, by the count of quotes
        alone: does it hold a quote that upsets the count (`12" pipe`)? Then its cuts, and
        its rows, may be wrong: the delimiter to read the file again with, field by field;
        else None. Looked at with the likeliest delimiter of its first line, not only the
        one block 0 was read with (`sniffed`; None if it failed to parse), which was
        sniffed in bytes such a cut may have ended inside a quoted field. Where the two
        differ, both must find such a quote: a header that misleads the guess makes every
        quoted field look like one. Called in a thread, once; block 0's bytes are let go
        of here."""
        first, self._first = self._first, None
        if first is None:
            return None
        guess = likeliest_delimiter(first)
        if not counted_wrong(first, guess):
            return None
        if sniffed is not None and sniffed != guess and not counted_wrong(first, sniffed):
            return None
        return guess

    def _line_feeds(self, chunk: bytes) -> bytes:
        """A CSV whose lines end in a lone CR (classic Mac OS), with LF in their place, as
        a file read whole is read (`csvfile._line_feeds`): blocks are cut at LFs, and line
        numbers count them. The digest is of the bytes as they are."""
        if self._lone_cr is None:
            self._lone_cr = self.quoted and b"\n" not in chunk and b"\r" in chunk
        return chunk.replace(b"\r", b"\n") if self._lone_cr else chunk

    def _header(self, data: bytes) -> bytes:
        literal = self.cutter.literal_quotes
        return header(data, self.quoted, self.cutter.delimiter or b"," if literal else None)

    def _split(
        self, data: bytes, first_line: int, first: bool = False, rows: int | None = None
    ) -> tuple[bytes, int]:
        """The block, or its first piece of at most block_bytes / ROW_BYTES rows; the
        others are handed out next."""
        max_rows = max(1, self.block_bytes // ROW_BYTES)
        pieces = split_rows(
            data, first_line, self.quoted, max_rows, rows, self.cutter.literal_quotes,
            self.cutter.delimiter,
        )
        head = pieces[0].data
        if first and len(pieces) > 1 and len(head) == len(self._header(head)):
            # Block 0's column types fix the rest: it keeps records beside its header.
            pieces[:2] = [Piece(head + pieces[1].data, first_line)]
        self._ready.extend((p.data, p.first_line) for p in pieces[1:])
        return pieces[0].data, pieces[0].first_line
