"""Fuzzed CSVs: the worker's decode reads each one or refuses it with a DecodeError, never crashes.

The bytes are drawn from what makes dialect detection hard: every delimiter
it knows, both quote characters, backslashes, CR and LF, comment marks, a
BOM, digits with decimal points and commas, dates, and bytes that are not
UTF-8.
"""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.compute.csvfile import _parse_csv
from ingest.compute.decode import DecodeError, decode_file
from ingest.compute.sniff import plain, plain_delimited, sniff
from ingest.compute.task import check_columns
from ingest.dialect import CsvOptions, Dialect

PIECES = [
    b",", b";", b"\t", b"|", b'"', b"'", b"\\", b"\n", b"\r\n", b"\r", b"#", b" ",
    b"1", b"2.5", b"3,75", b"-4", b"1e3", b"2024-01-02", b"03/04/2024", b"12:30:00",
    b"a", b"name", b"NA", b"true", b"\xef\xbb\xbf", b"\xe9", b"\x00",
]
csv_bytes = st.lists(st.sampled_from(PIECES), max_size=200).map(b"".join)
# Mostly rows of the same width, as real files are: detection has something to find.
rows = st.lists(
    st.lists(st.sampled_from(PIECES[10:24]), min_size=1, max_size=5).map(b",".join),
    min_size=1, max_size=20,
)


def read_or_refuse(data: bytes) -> None:
    try:
        table, dialect = decode_file("fuzz.csv", data)
        table = check_columns(table)
    except DecodeError:
        return
    assert isinstance(table, pa.Table)
    assert isinstance(dialect, Dialect)
    assert len(set(table.column_names)) == table.num_columns


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_bytes)
def test_fuzzed_bytes_are_read_or_refused_never_crash(data: bytes) -> None:
    read_or_refuse(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, st.sampled_from([b",", b";", b"\t", b"|"]), st.booleans())
def test_fuzzed_rows_in_any_delimiter_are_read_or_refused(
    lines: list[bytes], delimiter: bytes, crlf: bool
) -> None:
    newline = b"\r\n" if crlf else b"\n"
    data = newline.join(line.replace(b",", delimiter) for line in lines) + newline
    read_or_refuse(data)


names = st.lists(
    st.from_regex(r"[a-h][a-h_ 0-9]{0,5}", fullmatch=True), min_size=2, max_size=5, unique=True
)
cells = st.sampled_from(
    [b"1", b"-2.5", b"3e2", b"", b"x", b"yes", b"2024-01-02", b"2024-01-02 12:30:00",
     b"12:30:00", b"NA", b"0.1", b"true", b" 4", b"2023-1-5", b"31.12.2023", b"31 12 2023",
     b"1,5"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names, st.lists(st.lists(cells, min_size=5, max_size=5), min_size=1, max_size=8))
def test_the_plain_check_never_disagrees_with_duckdbs_sniffer(
    header: list[str], table: list[list[bytes]]
) -> None:
    width = len(header)
    data = ",".join(header).encode() + b"\n"
    data += b"".join(b",".join(row[:width]) + b"\n" for row in table)
    if not plain(data):
        return
    found = sniff(data, CsvOptions())
    assert (found.delimiter, found.header, found.skip_rows) == (",", True, 0), data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names, st.lists(st.lists(cells, min_size=5, max_size=5), min_size=1, max_size=8),
    st.sampled_from([b";", b"\t", b"|"]),
)
def test_a_file_plain_but_for_its_delimiter_gets_the_dialect_duckdbs_sniffer_finds(
    header: list[str], table: list[list[bytes]], delimiter: bytes
) -> None:
    width = len(header)
    data = delimiter.join(name.encode() for name in header) + b"\n"
    data += b"".join(delimiter.join(row[:width]) + b"\n" for row in table)
    found = plain_delimited(data)
    if found is None:
        return
    theirs = sniff(data, CsvOptions())
    # The sniffer names a format for ISO 8601 dates too, which Arrow reads without one.
    assert replace(found, formats=()) == replace(theirs, formats=()), data
    assert _parse_csv(data, found).to_pylist() == _parse_csv(data, theirs).to_pylist(), data


@pytest.mark.parametrize("data", [
    b"id;v\n1;2.5\n", b"id\tname\n1\tx\n", b"a|b|c\n1|2|\n3||x\n",
])
def test_a_plain_file_in_another_delimiter_is_recognised(data: bytes) -> None:
    delimiter = next(d for d in ";\t|" if d.encode() in data)
    expected = Dialect(delimiter=delimiter, quote="")
    assert plain_delimited(data) == expected == sniff(data, CsvOptions())


def test_excels_na_first_in_a_row_is_a_null_as_in_a_comma_file_not_a_comment() -> None:
    # DuckDB's sniffer takes `#` for a comment mark here, and drops the row.
    for delimiter in (b",", b";"):
        data = b"price;qty\n#N/A;1\n2.5;2\n".replace(b";", delimiter)
        table, dialect = decode_file("x.csv", data)
        assert dialect.comment == ""
        assert table.column("price").to_pylist() == [None, 2.5]


ROWS = b"1;x\n" * 20


@pytest.mark.parametrize("data", [
    b"id;name\n" + ROWS + b'2;"a;b"\n',  # a quote past the rows looked at
    b"id;name\n" + ROWS + b"2;'a'\n",
    b"id;v\n" + b"1;2\n" * 20000 + b"3;10,50\n",  # a decimal comma past the head
    b"a;b\n" + b"1;2\n" * 20 + b"# end\n",  # a comment
    b"id;d\n1;\n2;31.12.2023\n",  # a date that needs a format, in a later row
    b"id;d\n1;2023-1-5\n",
    b"id;d\n1;31 12 2023\n",
    b"id;v\n1;2,5\n",  # a decimal comma: the sniffer's to find
    b"id;name\n1;Smith, John\n",  # a comma in text
    b'id;name\n1;"x"\n',  # a quote
    b"id;v|w\n1;2|3\n",  # two delimiters in the header
    b"id;2024\n1;2\n",  # a header name that is a number
    b"id,v\n1,2\n",  # the comma: `plain`'s
    b"#id;v\n1;2\n",  # a comment mark
    b"id;v\n1;2\n3\n",  # ragged
    b"id;v\n03/04/2024;2\n",  # a date that needs a format
])
def test_a_file_not_plain_in_another_delimiter_is_left_to_the_sniffer(data: bytes) -> None:
    assert plain_delimited(data) is None
