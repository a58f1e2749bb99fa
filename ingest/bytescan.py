"""Scans of a file's bytes with numpy: bytes of one kind counted, blank lines, numbers
written with a leading zero, and where records end.

Plain synchronous code, for both sides: a worker counts every CSV's newlines
and blank lines (`sniff.plain_like`, `together.py`) and its quotes
(`csvfile.py`), and looks for fields like `01234` (`csvread.py`); the service's
thread that cuts a streamed file into blocks counts each block's newlines, for
line numbers, and quotes, and finds where a block's last record ends when it is
not within a few lines of its end, or, after a quote inside an unquoted field,
where the CSV reader ends records (`field_newlines`, `cut.py`).
Python's own `bytes.count(b"\\n")` walks the bytes one at a time, and its
search for `b"\\n\\n"` is slower still, since both bytes recur on every line:
for a 175 KB file they cost 65 and 150 µs, numpy's compare and count about
15 and 25 µs; a count of a 16 MB block's quotes went from 12 ms to 2, of its
newlines from 6.4 ms to 1.9. The answers are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEWLINE = b"\n"


def _matches(data: bytes, byte: bytes, start: int) -> np.ndarray:
    flags: np.ndarray = np.frombuffer(data, np.uint8, offset=start) == byte[0]
    return flags


def count(data: bytes, byte: bytes = NEWLINE, start: int = 0) -> int:
    """`data.count(byte, start)`, for one byte."""
    if len(byte) != 1:
        return data.count(byte, start)
    if start < 0:  # from the end, as bytes.count takes it
        start = max(len(data) + start, 0)
    if start >= len(data):
        return 0
    return int(np.count_nonzero(_matches(data, byte, start)))


def blank_line(data: bytes) -> bool:
    """`b"\\n\\n" in data`: two newlines in a row."""
    newline = _matches(data, NEWLINE, 0)
    return bool(np.logical_and(newline[1:], newline[:-1]).any())


QUOTE = b'"'
# The last newline outside quotes is looked for a window at a time, from the end: the
# arrays made for one are a few times its size, not the block's.
WINDOW_BYTES = 1 << 20


def last_unquoted_newline(
    data: bytes, end: int, odd: int, window_bytes: int = WINDOW_BYTES
) -> int:
    """The index of the last newline in `data[:end]` with an even number of quotes before
    it (with any before `data`), given `odd`, the parity of those before `end`; -1 if there
    is none. For a block where none is near its end, as after a quote that never closes,
    where a walk back from newline to newline in Python would hold the GIL for about a
    second a million lines."""
    while end > 0:
        start = max(0, end - window_bytes)
        window = np.frombuffer(data, np.uint8, end - start, start)
        quotes = window == QUOTE[0]
        before = odd ^ int(np.count_nonzero(quotes)) % 2  # quotes before the window
        # The parity of the quotes up to each byte, the window's own and those before it.
        parity = np.bitwise_xor.accumulate(quotes.view(np.uint8)) ^ before
        found = np.flatnonzero((window == NEWLINE[0]) & (parity == 0))
        if found.size:
            return start + int(found[-1])
        odd, end = before, start
    return -1


def first_unquoted_newline(
    data: bytes, start: int, end: int, odd: int, window_bytes: int = WINDOW_BYTES
) -> int:
    """The index of the first newline in `data[start:end]` with an even number of quotes
    before it (with any before `start`), given `odd`, the parity of those before `start`;
    -1 if there is none. `last_unquoted_newline`'s search, from the other end."""
    while start < end:
        stop = min(end, start + window_bytes)
        window = np.frombuffer(data, np.uint8, stop - start, start)
        parity = np.bitwise_xor.accumulate((window == QUOTE[0]).view(np.uint8)) ^ odd
        found = np.flatnonzero((window == NEWLINE[0]) & (parity == 0))
        if found.size:
            return start + int(found[0])
        odd, start = int(parity[-1]), stop
    return -1


# The bytes a field may start after (a line's end, or a quote: two make one inside a
# quoted field), besides the delimiter.
_CR_LF_QUOTE = (ord("\r"), NEWLINE[0], QUOTE[0])


def literal_quote(
    data: bytes, odd: int, delimiters: bytes, before: int = NEWLINE[0],
    window_bytes: int = WINDOW_BYTES,
) -> int:
    """The index of the first quote in `data` that a count of quotes takes to open a field
    (an even number before it, given `odd`, the parity of those before `data`) where no
    field starts: after a byte other than a delimiter (any of `delimiters`), a line end or
    another quote. The CSV reader reads such a quote as a character (`12" pipe`), and the
    count goes wrong from there; -1 if there is none. `before`: the byte before `data` (a
    newline: a record starts there)."""
    starts = np.zeros(256, np.bool_)
    starts[[*delimiters, *_CR_LF_QUOTE]] = True
    for start in range(0, len(data), window_bytes):
        window = np.frombuffer(data, np.uint8, min(window_bytes, len(data) - start), start)
        at = np.flatnonzero(window == QUOTE[0])
        opening = at[odd::2]  # an even count before each
        if opening.size:
            previous = window[opening - 1]  # the first's, at -1, is set just below
            if opening[0] == 0:
                previous[0] = before
            inside = ~starts[previous]
            if inside.any():
                return start + int(opening[np.argmax(inside)])
        odd ^= at.size & 1
        before = int(window[-1])
    return -1


_DIGIT_ZERO = ord("0")


def zero_padded(data: bytes, before: bytes, start: int = 0, end: int | None = None) -> bool:
    """Does a field in `data[start:end]` start with a zero and another digit (`0123`,
    `00.5`)? A field starts at `start` and after any byte of `before` (the delimiter, the
    newline, the quote). Taken two bytes at a time, as 16-bit words at both alignments:
    half the compares of a byte-wise look, 0.5 ms a MB."""
    return bool(_zero_padded_at(data, before, start, end, first=True).size)


def zero_padded_columns(data: bytes, delimiter: bytes, start: int, end: int) -> list[int]:
    """The columns (by position) of the fields in `data[start:end]` that start with a zero
    and another digit, for records of one line each, with no quotes, from `start` on."""
    at = _zero_padded_at(data, delimiter + NEWLINE, start, end)
    if not at.size:
        return []
    whole = np.frombuffer(data, np.uint8, end - start, start)
    delimiters = np.flatnonzero(whole == delimiter[0])
    newlines = np.flatnonzero(whole == NEWLINE[0])
    line = np.searchsorted(newlines, at) - 1
    line_start = np.where(line >= 0, newlines[np.maximum(line, 0)] + 1, 0) if newlines.size \
        else np.zeros_like(at)
    columns = np.searchsorted(delimiters, at) - np.searchsorted(delimiters, line_start)
    found: list[int] = np.unique(columns).tolist()
    return found


def _zero_padded_at(
    data: bytes, before: bytes, start: int, end: int | None, first: bool = False
) -> np.ndarray:
    """Where (from `start`) the fields that `zero_padded` looks for start; with `first`,
    only those of the first alignment that has any."""
    end = len(data) if end is None else min(end, len(data))
    if end - start < 2:
        return np.zeros(0, np.intp)
    whole = np.frombuffer(data, np.uint8, end - start, start)
    found = [np.zeros(1, np.intp)] if whole[0] == _DIGIT_ZERO and _is_digit(whole[1:2]).any() \
        else []
    for align in (0, 1):
        if first and any(f.size for f in found):
            break
        words = np.frombuffer(data, "<u2", (end - start - align) // 2, start + align)
        # A byte of `before`, then "0" (the word's high byte: little-endian).
        match = words == (before[0] | _DIGIT_ZERO << 8)
        for byte in before[1:]:
            match |= words == (byte | _DIGIT_ZERO << 8)
        zero = np.flatnonzero(match) * 2 + align + 1  # where the "0" is
        zero = zero[zero + 1 < whole.size]
        found.append(zero[_is_digit(whole[zero + 1])])
    return np.concatenate(found) if found else np.zeros(0, np.intp)


def _is_digit(values: np.ndarray) -> np.ndarray:
    found: np.ndarray = (values >= _DIGIT_ZERO) & (values <= _DIGIT_ZERO + 9)
    return found


@dataclass(frozen=True)
class Fields:
    """Where a scan of CSV bytes, quotes read field by field (`field_newlines`), left off:
    inside a quoted field or not, whether the next byte starts a field, and how many
    quotes ended the bytes (a run that may go on in the next ones)."""

    inside: bool = False
    field_start: bool = True
    lead: int = 0


RECORD_START = Fields()


def field_newlines(
    data: bytes, delimiter: bytes, state: Fields, start: int = 0, end: int | None = None
) -> tuple[np.ndarray, Fields]:
    """The newlines of `data[start:end]` outside quoted fields (their indexes in `data`),
    and the state after those bytes; `state` is the state before them.

    Quotes read as pyarrow's CSV reader reads them, not counted: a quote opens a field
    only where the field starts (after the delimiter or a line end), so one inside an
    unquoted field (`12" pipe`) is a literal character; inside a quoted field two quotes
    are one, and a lone one closes it. Runs of quotes of even length change nothing; a
    run of odd length closes a quoted field, or opens one where a field starts."""
    end = len(data) if end is None else min(end, len(data))
    if end <= start:
        return np.zeros(0, np.intp), state
    whole = np.frombuffer(data, np.uint8, end - start, start)
    quotes = np.flatnonzero(whole == QUOTE[0])
    newlines = np.flatnonzero(whole == NEWLINE[0])
    breaks = np.flatnonzero(np.diff(quotes) != 1) + 1
    starts = quotes[np.concatenate(([0], breaks)).astype(np.intp)] if quotes.size else quotes
    ends = quotes[np.concatenate((breaks - 1, [quotes.size - 1])).astype(np.intp)] + 1 \
        if quotes.size else quotes
    lengths = ends - starts
    prev = whole[np.maximum(starts - 1, 0)]
    opens = (prev == NEWLINE[0]) | (prev == _CR) | (prev == delimiter[0])
    if starts.size and starts[0] == 0:
        opens[0], lengths[0] = state.field_start, lengths[0] + state.lead  # a run goes on
    elif state.lead:  # the run held back ended where these bytes start
        starts = np.concatenate(([-1], starts))
        lengths = np.concatenate(([state.lead], lengths))
        opens = np.concatenate(([state.field_start], opens))
    last = int(whole[-1])
    if last == QUOTE[0]:  # the last run may go on in the next bytes: held back
        lead, next_start = int(lengths[-1]), bool(opens[-1])
        starts, lengths, opens = starts[:-1], lengths[:-1], opens[:-1]
    else:
        lead, next_start = 0, last in (NEWLINE[0], _CR, delimiter[0])
    odd = lengths % 2 == 1
    runs, opens = starts[odd], opens[odd]
    if not runs.size:
        outside = newlines[:0] if state.inside else newlines
        return outside + start, Fields(state.inside, next_start, lead)
    # After run i, inside = opens[i] and not inside before it: so, in a stretch of runs
    # that could open, inside alternates, starting from the state before the stretch
    # (outside, after a run that could not open; `state.inside`, at the start).
    index = np.arange(runs.size)
    last_closed = np.maximum.accumulate(np.where(opens, -1, index))
    place = index - last_closed - 1  # where the run is in its stretch
    flip = (last_closed < 0) & state.inside
    after = opens & ((place % 2 == 0) != flip)
    # The state at each newline: after the last odd run before it.
    before = np.searchsorted(runs, newlines) - 1
    at = np.where(before >= 0, after[np.maximum(before, 0)], state.inside)
    return newlines[~at] + start, Fields(bool(after[-1]), next_start, lead)


_CR = ord("\r")


def last_field_newline(
    data: bytes, delimiter: bytes, state: Fields, window_bytes: int = WINDOW_BYTES,
    begin: int = 0,
) -> tuple[int, Fields]:
    """The index of the last newline in `data` after `begin` outside quoted fields (-1 if
    none), and the state after `data`: `field_newlines`, a window at a time, so that its
    arrays are a few times a window's size, not the data's."""
    found = -1
    for start in range(begin, len(data), window_bytes):
        outside, state = field_newlines(data, delimiter, state, start, start + window_bytes)
        if outside.size:
            found = int(outside[-1])
    return found, state


def first_field_newline(data: bytes, delimiter: bytes, start: int = 0) -> int:
    """The index of the first newline in `data` after `start` outside quoted fields, from
    the start of a record; -1 if none."""
    state = RECORD_START
    for at in range(start, len(data), WINDOW_BYTES):
        outside, state = field_newlines(data, delimiter, state, at, at + WINDOW_BYTES)
        if outside.size:
            return int(outside[0])
    return -1
