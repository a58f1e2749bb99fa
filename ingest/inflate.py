"""Gzip, decompressed a bounded piece at a time.

Plain synchronous code: the service runs it in threads (zlib lets go of the
GIL while it inflates) to measure a file and to read one in blocks, and a
worker runs it to read a file whole (`compute/bounded.py`). A gzip file may
hold several members (`cat a.gz b.gz`, pigz, bgzip); each is read in turn, as
`gzip.decompress` reads them. Its ISIZE trailer is the size modulo 2^32, and
whoever wrote the file chose it, so the plain size is only ever known by
decompressing, and no call here produces more than it is asked for.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

from . import regular

GZIP_WBITS = 16 + zlib.MAX_WBITS
# Compressed bytes read at a time: at deflate's densest (about 1032:1, the zlib FAQ) a
# megabyte is a gigabyte of text, which `Inflater.read` hands out in pieces of its caller's size.
RAW_BYTES = 1 << 20
# Plain bytes decompressed at a time while measuring, then dropped.
MEASURE_BYTES = 1 << 20


class GzipError(ValueError):
    """Raised when the bytes are not a complete gzip stream."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


def inner_name(name: str) -> str:
    """The name of what a gzip'd file holds: `a.csv.gz` holds `a.csv`."""
    return name[:-3] if name.lower().endswith(".gz") else name


# Compressed bytes handed to zlib at a call, at first in a member: zlib copies what it
# does not use (at a member's end, or when the piece asked for is full), so a window as
# big as the input made a file of many small members quadratic (the rest of the input
# copied at each member's end). Doubled while a member goes on, up to RAW_BYTES: what is
# copied is then at most about twice what was used.
FIRST_WINDOW = 256
_NOT_ZERO = re.compile(rb"[^\0]")


class Inflater:
    """A gzip stream fed in chunks of compressed bytes, read in pieces of plain ones."""

    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(GZIP_WBITS)
        self._input = b""  # fed; decompressed up to `_at`
        self._at = 0
        self._window = FIRST_WINDOW
        self._member = False  # a member has begun and has not ended
        self.consumed = 0  # compressed bytes decompressed so far: where an error is
        self._error: GzipError | None = None  # raised once the bytes before it are read

    @property
    def error(self) -> GzipError | None:
        """The bytes that are not gzip found so far, raised by the next `read`."""
        return self._error

    @property
    def hungry(self) -> bool:
        """True when everything fed has been decompressed: more input is wanted."""
        return self._at >= len(self._input)

    def feed(self, data: bytes) -> None:
        rest = self._input[self._at:]
        self._input, self._at = (rest + data if rest else data), 0

    def _skip_padding(self) -> None:
        """Past the zero bytes between members, as gzip.decompress skips them, searched for
        in place (a copy of what follows, at each member, is what made many members slow);
        they count as decompressed, so an error's offset is where its bytes are."""
        if self._at < len(self._input) and self._input[self._at] == 0:
            found = _NOT_ZERO.search(self._input, self._at)
            end = found.start() if found else len(self._input)
            self.consumed += end - self._at
            self._at = end

    def read(self, size: int) -> bytes:
        """Up to `size` plain bytes from what was fed; fewer only once it is all read.
        Raises GzipError at bytes that are not gzip, once what came before them is read."""
        if self._error is not None:
            raise self._error
        pieces: list[bytes] = []
        left = size
        with memoryview(self._input) as fed:
            while left > 0:
                if not self._member:
                    self._skip_padding()
                    if self.hungry:
                        break
                given = fed[self._at:self._at + self._window]
                try:
                    piece = self._zlib.decompress(given, left)
                except zlib.error as exc:
                    self._error = GzipError(f"not a complete gzip stream: {exc}", self.consumed)
                    if pieces:
                        break
                    raise self._error from None
                self._member = True
                if self._zlib.eof:
                    used = len(given) - len(self._zlib.unused_data)
                    self._zlib = zlib.decompressobj(GZIP_WBITS)
                    self._member = False
                    self._window = FIRST_WINDOW
                else:
                    used = len(given) - len(self._zlib.unconsumed_tail)
                    if used == len(given):
                        self._window = min(2 * self._window, RAW_BYTES)
                given.release()
                self._at += used
                self.consumed += used
                if piece:
                    pieces.append(piece)
                    left -= len(piece)
                elif self.hungry and self._member:
                    break  # zlib waits for more input
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        """At the end of the input. Raises GzipError if the last member is cut short."""
        if self._error is not None:
            raise self._error
        if self._member or self._input[self._at:].strip(b"\0"):
            raise GzipError(
                "not a complete gzip stream: it ends inside a member (a truncated file?)",
                self.consumed,
            )


def plain_size(path: str | Path, cap: int) -> int:
    """The size of a gzip file once decompressed, found by decompressing it and keeping
    nothing; past `cap` it stops, and the answer is only "more than cap". Bytes that are
    not gzip end the count where they begin: the worker that reads the file reports them.
    Raises OSError if the file cannot be read."""
    inflater = Inflater()
    total, eof = 0, False
    with open(path, "rb", opener=regular.opener) as fh:
        while total <= cap:
            if inflater.hungry and not eof:
                raw = fh.read(RAW_BYTES)
                eof = not raw
                inflater.feed(raw)
            try:
                got = len(inflater.read(MEASURE_BYTES))
            except GzipError:
                break
            total += got
            if not got and eof:
                break
    return total
