"""Cutting a text file into blocks of whole records, as it is read.

Plain synchronous code; the service runs `Cutter.feed` in a thread, since it
scans megabytes. A block ends after a newline that is not inside a quoted
field: for CSV, a newline with an even number of quote characters before it
(RFC 4180 quotes are balanced, and an escaped quote is two), for JSON Lines,
any newline (JSON strings hold no raw newline).

A quote inside a field that does not open with one (`12" pipe`) is a
character to the CSV reader, but upsets the count: from there till another
such quote, every newline outside a quoted field has an odd number before it,
and every newline inside one an even number. So, once the delimiter is known
(pinned, or found in the file's first block), each chunk is looked at for such
a quote (`bytescan.literal_quote`: a quote the count takes to open a field,
after a byte where no field starts), and the carry too, the first time. Where
there is one, or where the count finds no record end within `max_record`, the
file's quotes are read from its last cut as the reader reads them
(`bytescan.last_field_newline`), and so on to its end.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bytescan import Fields

QUOTE = ord('"')
NEWLINE = ord("\n")
BOM = codecs.BOM_UTF8
# Newlines looked at one by one from a chunk's end before the rest is searched at once.
WALKED_LINES = 8


def _count(data: bytes, byte: bytes = b"\n") -> int:
    from . import bytescan  # numpy: the service's process loads it once a file is streamed

    return bytescan.count(data, byte)


class RecordTooLong(ValueError):
    """No record ends within the limit: a missing newline, or a quote that never closes."""

    def __init__(self, line: int, limit: int):
        super().__init__(
            f"no record ends within {limit >> 20} MiB after line {line}"
            " (a missing newline, or a quote that never closes?)"
        )
        self.line = line


@dataclass
class Piece:
    """Whole records, and where they start in the file."""

    data: bytes
    first_line: int  # 1-based line number of data's first line


class Cutter:
    def __init__(
        self, quoted: bool, max_record: int, first_line: int = 1, literal_quotes: bool = False,
        delimiter: bytes | None = None,
    ):
        self.quoted = quoted
        self.max_record = max_record
        # Quotes read as the reader reads them, field by field, not counted: set once a
        # quote is found where no field starts (inside an unquoted field), or a count
        # finds no record end.
        self.literal_quotes = literal_quotes
        # The file's delimiter, where known (pinned, or found in its first block); else
        # the likeliest in its first line (`_head`).
        self.delimiter = delimiter
        self._head = b""  # the data's first line, once whole, or its first HEAD_BYTES
        self._fields: Fields | None = None  # with literal_quotes: where the carry ends
        # A record not yet ended, as the chunks it came in: joined once, when it ends. A
        # record that runs on (a quote never closed) would otherwise be copied, and its
        # quotes counted, once a chunk: quadratic in its length, in the service's process.
        self._carry: list[bytes] = []
        self._carried = 0  # its length
        self._odd = 0  # the parity of its quotes
        # The delimiter the carry was looked at with for a literal quote (None: not looked
        # at, as before the delimiter was known), and the bytes handed out before it.
        self._looked: bytes | None = None
        self._handed_out = 0
        self._line = first_line

    @property
    def line(self) -> int:
        """The line number the next piece starts on."""
        return self._line

    def _cut(self, chunk: bytes, odd: int) -> tuple[int, int]:
        """The end of the last whole record in `chunk`, or 0 if none ends there, and the
        parity of the chunk's own quotes; `odd` is the parity of those carried over."""
        from . import bytescan

        if self.literal_quotes:
            # At the data's start, after a byte order mark: the reader skips it.
            at_start = self._fields is None and not self._handed_out
            newline, self._fields = bytescan.last_field_newline(
                chunk, self.delimiter or b",", self._fields or bytescan.RECORD_START,
                begin=_past_mark(chunk) if at_start else 0,
            )
            return newline + 1, 0
        newline = chunk.rfind(b"\n")
        # A chunk with no quote at all, outside a quoted field, ends where its last line
        # does: `in` stops at the first quote, where a count reads every byte.
        if not self.quoted or (not odd and QUOTE not in chunk):
            return newline + 1, 0
        own = _count(chunk, b'"') % 2
        odd ^= own  # quotes before the chunk's end
        tail = len(chunk)
        # Most cuts are within a line or two of the end; past a few, as inside a quoted
        # field that runs on, the rest is searched with numpy, not line by line.
        for _ in range(WALKED_LINES):
            if newline < 0:
                return 0, own
            odd ^= chunk.count(QUOTE, newline, tail) % 2
            if not odd:
                return newline + 1, own
            tail = newline
            newline = chunk.rfind(b"\n", 0, newline)
        # `odd`: the parity of the quotes before `tail`.
        return bytescan.last_unquoted_newline(chunk, tail, odd) + 1, own

    def feed(self, chunk: bytes, final: bool = False) -> Piece:
        """The whole records completed by `chunk`; with `final`, everything left.

        Megabytes are copied once, into the piece: a copy holds the GIL, and with it
        the event loop of the thread that called this one.
        """
        if final:
            # Everything left is the last record, newline or not (an empty last chunk, too).
            end = len(chunk)
        else:
            self._keep_head(chunk)
            end, own = self._cut(chunk, self._odd)
            if self._literal_quote(chunk) or self._runs_past_limit(chunk, end):
                self._to_literal()
                # The count went wrong at the quote, or, counted, a record runs past the
                # limit: a literal quote's mark too, whether or not a newline past the limit
                # seems to end it. From the carry's start, a record's, field by field.
                chunk = b"".join((*self._carry, chunk))
                self._carry, self._carried = [], 0
                end, own = self._cut(chunk, 0)
            if self._too_long(chunk, end):
                line = self._line  # where the carried record starts, or the one after the cut
                if end:
                    line += sum(c.count(b"\n") for c in self._carry)
                    line += chunk.count(b"\n", 0, end)
                raise RecordTooLong(line, self.max_record)
            if end == 0:
                if chunk:
                    self._carry.append(chunk)
                self._carried += len(chunk)
                self._odd ^= own
                return Piece(b"", self._line)
        if self._carry:
            data = b"".join((*self._carry, memoryview(chunk)[:end]))
        else:
            data = chunk if end == len(chunk) else chunk[:end]
        rest = chunk[end:]
        self._carry = [rest] if rest else []
        self._carried = len(rest)
        # The cut is outside a quoted field: the quotes before it are even. (Read field by
        # field, the state at the chunk's end is the rest's: `_cut` keeps it.)
        counted = self.quoted and not self.literal_quotes
        self._odd = _count(rest, b'"') % 2 if counted and rest else 0
        piece = Piece(data, self._line)
        self._line += _count(data)
        self._handed_out += len(data)
        return piece

    def _too_long(self, chunk: bytes, end: int) -> bool:
        """Is the record not yet ended, after the cut at `end` (0: none), over the limit?
        After a cut it starts there: the record the carry began has ended."""
        pending = len(chunk) - end if end else self._carried + len(chunk)
        return pending > self.max_record

    def _keep_head(self, chunk: bytes) -> None:
        wanted = self.delimiter is None and self.quoted and not self.literal_quotes
        if wanted and b"\n" not in self._head and len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]

    def _delimiter(self) -> bytes:
        return self.delimiter or likeliest_delimiter(self._head)

    def _literal_quote(self, chunk: bytes) -> bool:
        """Is there a quote in `chunk`, or in the carry not yet looked at, that the reader
        reads as a character, where the count would take it to open a field? Looked for
        only once the delimiter is known (pinned, or the file's first block read): read
        with a wrong one, every quoted field would look like such a quote's mark. (So the
        cuts of the first block, made before, may be wrong: a literal quote there and a
        quoted field of lines after it, both in that block. The stream looks at that
        block once it is read, and reads the file again if so:
        `BlockReader.misread_first_block`.)"""
        if not self.quoted or self.literal_quotes or not self.delimiter:
            return False
        from . import bytescan

        data = chunk
        odd, before = self._odd, self._carry[-1][-1] if self._carry else NEWLINE
        at_start = not self._handed_out  # the carry starts where the data does
        if self._looked != self.delimiter or at_start:
            # From the carry's start, a record's: a quote in it was counted, not looked at
            # (or the data's first bytes are a byte order mark, in pieces).
            data, odd, before = b"".join((*self._carry, chunk)), 0, NEWLINE
            self._looked = self.delimiter
            if at_start:
                data = data[_past_mark(data):]  # the reader skips it: a field starts after it
        return QUOTE in data and bytescan.literal_quote(data, odd, self.delimiter, before) >= 0

    def _runs_past_limit(self, chunk: bytes, end: int) -> bool:
        """Does the record carried over run past max_record, by the count? It ends at the
        first newline of `chunk` with an even count of quotes before it, the carry's too;
        `end` (just past the chunk's last such newline, 0 if none) says if there is one."""
        room = self.max_record - self._carried  # what of `chunk` the record may take
        if len(chunk) <= room or not self.quoted or self.literal_quotes:
            return False  # (an unquoted file's records are cut at any newline)
        if not end or len(chunk) - end > self.max_record:
            return True  # (or the one after the count's last cut runs past it already)
        odd, start = self._odd, 0
        # Most records end within a line or two; past a few, the rest is searched at once.
        for _ in range(WALKED_LINES):
            newline = chunk.find(b"\n", start, room)
            if newline < 0:
                return True
            odd ^= chunk.count(QUOTE, start, newline) % 2
            if not odd:
                return False
            start = newline + 1
        from . import bytescan

        return bytescan.first_unquoted_newline(chunk, start, room, odd) < 0

    def _to_literal(self) -> None:
        """Quotes read field by field from here on: they were counted till now."""
        self.literal_quotes = True
        self._fields = None  # where the carried record starts: a record's start
        self.delimiter = self._delimiter()


# The delimiters a sniffer finds, in the order a tie is broken.
DELIMITERS = (b",", b";", b"\t", b"|")
HEAD_BYTES = 64 << 10


def counted_wrong(data: bytes, delimiter: bytes) -> bool:
    """Might a count of quotes have cut `data`, the start of a file, in the wrong places:
    does it hold a quote the count takes to open a field where no field starts (`12"
    pipe`), read with `delimiter`?"""
    if QUOTE not in data:
        return False
    from . import bytescan

    return bytescan.literal_quote(data[_past_mark(data):], 0, delimiter) >= 0


def _past_mark(data: bytes) -> int:
    """Where the first field of data that starts a file starts: past a UTF-8 byte order
    mark, which the reader skips."""
    return len(BOM) if data.startswith(BOM) else 0


def likeliest_delimiter(data: bytes) -> bytes:
    """The delimiter that recurs most in the first line of `data` (a header, most often),
    outside quoted fields (`"id, n";"amount, EUR"`); a comma where none does."""
    line = b"".join(data[:HEAD_BYTES].split(b"\n", 1)[0].split(b'"')[::2])
    return max(DELIMITERS, key=line.count) if any(d in line for d in DELIMITERS) else b","


def split_rows(
    data: bytes, first_line: int, quoted: bool, max_rows: int, rows: int | None = None,
    literal_quotes: bool = False, delimiter: bytes | None = None,
) -> list[Piece]:
    """Whole records `data` as pieces of about `max_rows` records at most (lines, where
    a quoted field spans some). A block's cost in a worker grows with its rows as well
    as its bytes: each row gets its source columns, some 80 bytes, so a block of two-byte
    rows would take forty times its size. `rows`: the newlines in `data`, if counted
    already (a count is a pass over the bytes)."""
    if rows is None:
        rows = _count(data)
    if rows <= max_rows:
        return [Piece(data, first_line)]
    step = max(1, len(data) * max_rows // rows)
    cutter = Cutter(quoted, len(data), first_line, literal_quotes, delimiter)
    pieces = []
    for start in range(0, len(data), step):
        piece = cutter.feed(data[start:start + step], final=start + step >= len(data))
        if piece.data:
            pieces.append(piece)
    return pieces


def header(first: bytes, quoted: bool, delimiter: bytes | None = None) -> bytes:
    """The first record of a CSV block (the column names); JSON Lines has none. With a
    `delimiter`, its quotes are read field by field (`Cutter.literal_quotes`), else counted."""
    if not quoted:
        return b""
    if delimiter is not None:
        from . import bytescan

        end = bytescan.first_field_newline(first, delimiter, _past_mark(first))
        return first[: end + 1] if end >= 0 else first
    odd, start = 0, 0
    while (newline := first.find(b"\n", start)) >= 0:
        odd ^= first.count(QUOTE, start, newline) % 2
        start = newline + 1
        if not odd:
            return first[:start]
    return first
