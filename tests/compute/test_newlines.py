"""numpy's newline counts and blank-line search give what Python's bytes methods give."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.compute import newlines

_BYTES = st.lists(st.sampled_from([b"\n", b"\r", b"a", b",", b"1", b"\xff"]), max_size=40).map(
    b"".join
)


@given(_BYTES, st.integers(0, 45))
def test_count_is_bytes_count(data: bytes, start: int) -> None:
    assert newlines.count(data, start) == data.count(b"\n", start)


@given(_BYTES)
def test_blank_line_is_two_newlines_in_a_row(data: bytes) -> None:
    assert newlines.blank_line(data) == (b"\n\n" in data)


def test_the_edges() -> None:
    assert newlines.count(b"") == 0 and not newlines.blank_line(b"")
    assert not newlines.blank_line(b"\n") and newlines.blank_line(b"\n\n")
    assert newlines.count(b"a\nb\n", 2) == 1 and newlines.count(b"a\n", 2) == 0
