"""numpy's byte counts and blank-line search give what Python's bytes methods give."""

from __future__ import annotations

from hypothesis import given
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
