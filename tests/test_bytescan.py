"""numpy's byte counts and blank-line search give what Python's bytes methods give."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import bytescan

_BYTES = st.lists(st.sampled_from([b"\n", b"\r", b"a", b",", b"1", b"\xff"]), max_size=40).map(
    b"".join
)


@given(_BYTES, st.sampled_from([b"\n", b",", b"\xff", b"ab"]), st.integers(-3, 45))
def test_count_is_bytes_count(data: bytes, byte: bytes, start: int) -> None:
    assert bytescan.count(data, byte, start) == data.count(byte, start)


@given(_BYTES)
def test_blank_line_is_two_newlines_in_a_row(data: bytes) -> None:
    assert bytescan.blank_line(data) == (b"\n\n" in data)


def test_the_edges() -> None:
    assert bytescan.count(b"") == 0 and not bytescan.blank_line(b"")
    assert not bytescan.blank_line(b"\n") and bytescan.blank_line(b"\n\n")
    assert bytescan.count(b"a\nb\n", start=2) == 1 and bytescan.count(b"a\n", start=2) == 0


def _last_unquoted_newline(data: bytes, end: int, odd: int) -> int:
    """Newline by newline from the start, as the definition reads."""
    found, quotes = -1, odd ^ data[:end].count(b'"') % 2  # back to the quotes before `data`
    for index, byte in enumerate(data[:end]):
        if byte == ord("\n") and quotes % 2 == 0:
            found = index
        quotes += byte == ord('"')
    return found


_QUOTED = st.lists(st.sampled_from([b"\n", b'"', b"a", b","]), max_size=60).map(b"".join)


@pytest.mark.parametrize("window", [1, 3, 1 << 20])
@given(data=_QUOTED, end=st.integers(0, 60), odd=st.integers(0, 1))
def test_the_last_newline_outside_quotes_is_the_one_a_walk_from_the_start_finds(
    window: int, data: bytes, end: int, odd: int
) -> None:
    end = min(end, len(data))
    assert bytescan.last_unquoted_newline(data, end, odd, window) == _last_unquoted_newline(
        data, end, odd
    )


def _first_unquoted_newline(data: bytes, start: int, end: int, odd: int) -> int:
    """Byte by byte from `start`, as the definition reads."""
    quotes = odd
    for index in range(start, min(end, len(data))):
        if data[index] == ord("\n") and quotes % 2 == 0:
            return index
        quotes += data[index] == ord('"')
    return -1


@pytest.mark.parametrize("window", [1, 3, 1 << 20])
@given(data=_QUOTED, start=st.integers(0, 60), end=st.integers(0, 60), odd=st.integers(0, 1))
def test_the_first_newline_outside_quotes_is_the_one_a_walk_from_the_start_finds(
    window: int, data: bytes, start: int, end: int, odd: int
) -> None:
    start, end = min(start, len(data)), min(end, len(data))
    assert bytescan.first_unquoted_newline(data, start, end, odd, window) == (
        _first_unquoted_newline(data, start, end, odd)
    )


def _literal_quote(data: bytes, odd: int, delimiters: bytes, before: int) -> int:
    """Byte by byte, as the definition reads."""
    quotes = odd
    for index, byte in enumerate(data):
        if byte == ord('"'):
            previous = data[index - 1] if index else before
            if quotes % 2 == 0 and previous not in (*delimiters, *b'\r\n"'):
                return index
            quotes += 1
    return -1


@pytest.mark.parametrize("window", [1, 3, 1 << 20])
@given(data=st.lists(st.sampled_from([b"\n", b'"', b"a", b",", b";", b"\r"]), max_size=60).map(
    b"".join), odd=st.integers(0, 1), before=st.sampled_from(b'\na,"'))
def test_a_literal_quote_is_the_one_a_walk_from_the_start_finds(
    window: int, data: bytes, odd: int, before: int
) -> None:
    found = bytescan.literal_quote(data, odd, b",", before, window)
    assert found == _literal_quote(data, odd, b",", before)


_FIELDS = st.lists(st.sampled_from([b"0", b"1", b"9", b",", b"\n", b'"', b".", b"a"]), max_size=30)


@given(_FIELDS.map(b"".join), st.integers(0, 32), st.integers(0, 34))
def test_zero_padded_finds_a_field_that_starts_with_a_zero_and_a_digit(
    data: bytes, start: int, end: int
) -> None:
    start = min(start, len(data))
    expected = re.search(rb'(?:^|[,\n"])0[0-9]', data[start:end]) is not None
    assert bytescan.zero_padded(data, b',\n"', start, end) == expected


def test_zero_padded_edges() -> None:
    assert bytescan.zero_padded(b"007", b",") and not bytescan.zero_padded(b"0", b",")
    assert not bytescan.zero_padded(b"1,0.5\n0,2", b",\n")
    assert bytescan.zero_padded(b"1;02", b";") and not bytescan.zero_padded(b"1,02", b";")


@given(st.lists(st.lists(st.sampled_from(["0", "01", "1", "007", "x0", "0.5", ""]), min_size=1,
                         max_size=4), max_size=6))
def test_zero_padded_columns_are_those_of_the_fields_found(lines: list[list[str]]) -> None:
    data = b"h\n" + "\n".join(",".join(line) for line in lines).encode()
    expected = sorted({i for line in lines for i, field in enumerate(line)
                       if re.match(r"0[0-9]", field)})
    assert bytescan.zero_padded_columns(data, b",", 2, len(data)) == expected


def _outside_newlines(data: bytes, delimiter: bytes) -> tuple[list[int], bool]:
    """Byte by byte, as pyarrow's CSV reader reads quotes: the newlines outside quoted
    fields, and whether the data ends inside one."""
    inside, field_start, found, i = False, True, [], 0
    while i < len(data):
        byte = data[i : i + 1]
        if inside:
            if byte == b'"' and data[i + 1 : i + 2] == b'"':
                i += 2
                continue
            if byte == b'"':
                inside, field_start = False, False
            i += 1
            continue
        if byte == b'"' and field_start:
            inside, field_start = True, False
        else:
            if byte == b"\n":
                found.append(i)
            field_start = byte in (b"\n", b"\r", delimiter)
        i += 1
    return found, inside


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from([b'"', b'"', b"a", b",", b";", b"\n", b"\r", b" "]), max_size=24)
    .map(b"".join),
    st.sampled_from([b",", b";"]),
    st.lists(st.integers(0, 24), max_size=4),
    st.integers(1, 8),
)
def test_quotes_read_field_by_field_find_the_newlines_the_reader_ends_records_at(
    data: bytes, delimiter: bytes, cuts: list[int], window: int
) -> None:
    # Fed in pieces (a run of quotes split between them), a window at a time.
    state, last = bytescan.RECORD_START, -1
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(bounds):
        found, state = bytescan.last_field_newline(data[start:end], delimiter, state, window)
        if found >= 0:
            last = start + found
    _, state = bytescan.last_field_newline(b"x", delimiter, state)  # ends a held-back run
    expected, inside = _outside_newlines(data + b"x", delimiter)
    assert (last, state.inside) == (expected[-1] if expected else -1, inside)
    assert bytescan.first_field_newline(data, delimiter) == (expected[0] if expected else -1)
