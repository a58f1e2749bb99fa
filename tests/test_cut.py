"""Cutting a file into blocks of whole records as it is read, whatever the chunk sizes."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.cut import Cutter, Piece, RecordTooLong, header, likeliest_delimiter, split_rows

cells = st.text(alphabet='ab,"\n x', max_size=8)  # csv.writer leaves a lone CR unquoted
rows = st.lists(st.lists(cells, min_size=2, max_size=2), min_size=1, max_size=40)


def _csv(table: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([["a", "b"], *table])
    return buffer.getvalue().encode()


@settings(max_examples=200, deadline=None)
@given(rows, st.one_of(st.integers(1, 64), st.integers(65, 1000)), st.booleans())
def test_blocks_are_whole_records_in_order_with_their_first_line(
    table: list[list[str]], chunk: int, trailing_newline: bool
) -> None:
    data = _csv(table)
    if not trailing_newline:
        data = data.removesuffix(b"\n")
    cutter = Cutter(quoted=True, max_record=1 << 20)
    pieces = [cutter.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    pieces.append(cutter.feed(b"", final=True))

    assert b"".join(p.data for p in pieces) == data
    parsed: list[list[str]] = []
    offset = 0
    for piece in pieces:
        assert piece.first_line == data.count(b"\n", 0, offset) + 1
        offset += len(piece.data)
        parsed += list(csv.reader(io.StringIO(piece.data.decode(), newline="")))
    assert parsed == [["a", "b"], *table]


@settings(max_examples=200, deadline=None)
@given(rows, st.one_of(st.integers(1, 64), st.integers(65, 1000)))
def test_quotes_read_field_by_field_cut_an_rfc_file_as_counted_quotes_do(
    table: list[list[str]], chunk: int
) -> None:
    data = _csv(table)
    counted = Cutter(quoted=True, max_record=1 << 20)
    literal = Cutter(quoted=True, max_record=1 << 20, literal_quotes=True)
    for start in range(0, len(data), chunk):
        piece = data[start : start + chunk]
        assert literal.feed(piece) == counted.feed(piece)


def _pyarrow_rows(data: bytes, delimiter: str = ",") -> list[dict[str, object]]:
    """The rows of two text columns, as pyarrow reads `data` whole."""
    return pa_csv.read_csv(
        pa.BufferReader(data), read_options=pa_csv.ReadOptions(column_names=["a", "b"]),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(column_types={"a": pa.string(), "b": pa.string()}),
    ).to_pylist()


# Fields as a loose CSV writes them: a quote inside a field that does not open with one
# (`12" pipe`) is a character, and a field that opens with one is quoted.
literal_field = st.from_regex(r'[a-z0-9;|]{1,3}"[a-z0-9 ";|]{0,4}', fullmatch=True).map(
    str.encode
)
plain_field = st.text(alphabet="ab x1;|", max_size=5).map(str.encode)


def _quoted_field(alphabet: str) -> st.SearchStrategy[bytes]:
    return st.text(alphabet=alphabet, max_size=8).map(
        lambda t: ('"' + t.replace('"', '""') + '"').encode()
    )


def _loose_csv(fields: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    rows = st.lists(st.tuples(fields, fields), min_size=1, max_size=40)
    return rows.map(lambda table: b"".join(a + b"," + b + b"\n" for a, b in table))


def _cut_all(cutter: Cutter, data: bytes, chunk: int) -> list[Piece]:
    pieces = [cutter.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    pieces.append(cutter.feed(b"", final=True))
    assert b"".join(p.data for p in pieces) == data
    return pieces


def _rows_of(pieces: list[Piece]) -> list[dict[str, object]]:
    return [row for p in pieces if p.data for row in _pyarrow_rows(p.data)]


@settings(max_examples=300, deadline=None)
@given(_loose_csv(st.one_of(literal_field, plain_field, _quoted_field('ab,"x '))),
       st.integers(1, 200), st.integers(40, 400))
def test_a_quote_inside_an_unquoted_field_of_one_line_records_cuts_between_them(
    data: bytes, chunk: int, max_record: int
) -> None:
    # Counted, such a quote leaves no newline with an even count after it (till another
    # such quote): no record would end within the limit. The cutter then reads quotes
    # field by field. (No delimiter is known: no quote is judged by where it stands.)
    longest = max(len(line) + 1 for line in data.split(b"\n"))
    if longest > max_record:
        return
    pieces = _cut_all(Cutter(quoted=True, max_record=max_record), data, chunk)
    assert _rows_of(pieces) == _pyarrow_rows(data)


@settings(max_examples=300, deadline=None)
@given(_loose_csv(st.one_of(literal_field, plain_field, _quoted_field('ab,"\n x'))),
       st.integers(1, 200))
def test_quotes_read_field_by_field_cut_where_the_reader_ends_records(
    data: bytes, chunk: int
) -> None:
    # `;` and `|` inside unquoted fields: a quote after one is a character in a comma file.
    cutter = Cutter(quoted=True, max_record=1 << 20, literal_quotes=True, delimiter=b",")
    pieces = _cut_all(cutter, data, chunk)
    assert _rows_of(pieces) == _pyarrow_rows(data)


def test_a_literal_quote_then_fields_of_many_lines_are_read_as_the_reader_reads_them() -> None:
    # The quote in `12" pipe` leaves every later newline outside quotes with an odd count
    # before it: no record would end within the limit, and the cutter reads quotes field
    # by field from there, around the quoted fields of many lines that come after, too.
    data = b'id,desc\n1,12" pipe\n' + b"".join(
        b'%d,"a, b"\n' % i if i < 200 else b'%d,"note\nof lines"\n' % i if i % 7 == 0
        else b"%d,plain\n" % i for i in range(2, 400)
    )
    cutter = Cutter(quoted=True, max_record=200)
    pieces = _cut_all(cutter, data, 64)
    assert cutter.literal_quotes
    assert _rows_of(pieces) == _pyarrow_rows(data)
    halves = split_rows(data, 1, True, 100, literal_quotes=True)
    assert _rows_of(halves) == _pyarrow_rows(data)
    assert len(halves) > 3


def test_the_delimiter_read_field_by_field_is_the_files() -> None:
    # In a comma file, `x;"y` holds a literal quote; read with `;` as a delimiter, the quote
    # would open a field, and the next cut would fall inside `"multi ... B"`.
    data = b'a,b\n1,12" pipe\n2,x;"y\n3,"multi\nA,B"\n4,z\n'
    for chunk in (1, 5, 64):
        pieces = _cut_all(Cutter(True, 1 << 20, literal_quotes=True, delimiter=b","), data, chunk)
        assert _rows_of(pieces) == _pyarrow_rows(data)
        assert all(p.data.count(b'"multi') == p.data.count(b'B"') for p in pieces)
    assert likeliest_delimiter(b"a;b;c,d\n1;2;3\n") == b";"
    assert likeliest_delimiter(b"a\tb\n") == b"\t" and likeliest_delimiter(b"ab\n") == b","
    # Not known, it is guessed from the first line when quotes come to be read so.
    semicolons = b'a;b\n1;12" pipe\n' + b"".join(b'%d;"x, y"\n' % i for i in range(50))
    cutter = Cutter(quoted=True, max_record=100)
    pieces = _cut_all(cutter, semicolons, 30)
    assert cutter.literal_quotes and cutter.delimiter == b";"
    assert all(p.data.endswith(b"\n") for p in pieces[:-1] if p.data)
    assert sum(len(p.data.splitlines()) for p in pieces) == 52


def test_a_header_with_a_literal_quote_is_one_record() -> None:
    first = b'id,note 12"\n1,"a, b"\n'
    assert header(first, quoted=True, delimiter=b",") == b'id,note 12"\n'
    assert header(b'x,"two\nline"\n1,2\n', quoted=True, delimiter=b",") == b'x,"two\nline"\n'


@pytest.mark.parametrize("chunk", [7, 64, 300, 1500])
def test_a_quoted_field_of_many_lines_is_cut_around_not_inside(chunk: int) -> None:
    # More lines inside a quoted field than the cutter walks back one by one (WALKED_LINES):
    # where its last record ends is then searched for in the rest of the chunk.
    note = "\n".join(f"line {i}" for i in range(40))
    table = [[str(i), note if i % 3 == 0 else f"x{i}"] for i in range(30)]
    data = _csv(table)
    cutter = Cutter(quoted=True, max_record=1 << 20)
    pieces = [cutter.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    pieces.append(cutter.feed(b"", final=True))

    assert b"".join(p.data for p in pieces) == data
    parsed: list[list[str]] = []
    for piece in pieces:
        parsed += list(csv.reader(io.StringIO(piece.data.decode(), newline="")))
    assert parsed == [["a", "b"], *table]
    assert sum(1 for p in pieces if p.data) > 2


def test_a_last_record_without_a_newline_survives_an_empty_final_chunk() -> None:
    # The reader's last full-size chunk is not known to be the last: EOF comes as b"".
    cutter = Cutter(quoted=True, max_record=1 << 20)
    assert cutter.feed(b"a,b\n1,2\n3,4").data == b"a,b\n1,2\n"
    last = cutter.feed(b"", final=True)
    assert (last.data, last.first_line) == (b"3,4", 3)


def test_the_header_is_the_first_whole_record() -> None:
    assert header(b'x,"two\nline"\n1,2\n', quoted=True) == b'x,"two\nline"\n'
    assert header(b'{"a": 1}\n', quoted=False) == b""


def test_a_record_longer_than_the_limit_is_refused_with_the_line_it_starts_on() -> None:
    cutter = Cutter(quoted=True, max_record=100)
    cutter.feed(b'a,b\n1,2\n3,"open\n')
    with pytest.raises(RecordTooLong) as raised:
        for _ in range(10):
            cutter.feed(b"x" * 40 + b"\n")
    assert raised.value.line == 3


def test_a_record_just_under_the_limit_then_a_full_chunk_is_no_record_too_long() -> None:
    # The carried record ends in the next chunk: only what follows its end is carried on
    # (counted, or read field by field: the cut is the same).
    for literal in (False, True):
        cutter = Cutter(quoted=True, max_record=100, literal_quotes=literal)
        assert cutter.feed(b'a,"' + b"x" * 90).data == b""
        piece = cutter.feed(b'"\n' + b"1,2\n" * 20 + b"3," + b"y" * 9)  # 93 + 11 over 100
        assert piece.data == b'a,"' + b"x" * 90 + b'"\n' + b"1,2\n" * 20
        assert cutter.feed(b"\n4,5\n").data == b"3," + b"y" * 9 + b"\n4,5\n"


@pytest.mark.parametrize(
    "line",
    [
        b"1700000000000,dev-00000,2.06672,12.7033\n",  # no quote at all
        b'1700000000000,"dev-00000","a, b",12.7033\n',  # quoted fields, one line each
        b'1700000000000,"dev 0\nof\nten\nlines\nin\nall\nwith\nthese\nones\nhere",1\n',
    ],
)
def test_chunks_as_long_as_the_limit_keep_counting_quotes(line: bytes) -> None:
    # A service reading in blocks of max_record carries a line's start from each chunk to
    # the next: the carried record ends within the limit, so quotes are still counted (a
    # reading field by field costs the service's process several times the count).
    data = b"timestamp,device,note,v\n" + line * 2_000
    chunk = 4_096 + 7
    cutter = Cutter(quoted=True, max_record=chunk)
    pieces = _cut_all(cutter, data, chunk)
    assert not cutter.literal_quotes
    assert b"".join(p.data for p in pieces) == data
    assert all(p.data.endswith(b"\n") for p in pieces if p.data)
    parsed = [row for p in pieces for row in csv.reader(io.StringIO(p.data.decode(), newline=""))]
    assert parsed == list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_a_record_that_ends_past_the_limit_by_the_count_turns_to_field_by_field() -> None:
    # A literal quote, then another forty records later (no delimiter known, so no quote is
    # judged by where it stands): the count sees one record running from the first to a
    # newline past the limit, though a newline seems to end it.
    data = b'a,b\n1,12" pipe\n' + b"2,x\n" * 40 + b'3,13" pipe\n' + b"4,y\n" * 40
    cutter = Cutter(quoted=True, max_record=100)
    pieces = _cut_all(cutter, data, 100)
    assert cutter.literal_quotes
    assert _rows_of(pieces) == _pyarrow_rows(data)


@pytest.mark.parametrize(
    "data",
    [
        b'0",0"0\n,11111\n0",0"0\n0","aaaaaaa\n"\n',
        # A literal quote, then a quoted field of two lines: counted, the newline inside
        # that field has an even number before it, and the record seems short.
        b'a,b\n' + b"1,x\n" * 30 + b'2,12" pipe\n3,"a\nb"\n' + b"4,y\n" * 30,
    ],
)
def test_a_literal_quote_is_found_where_it_stands_before_the_count_cuts(data: bytes) -> None:
    # With the delimiter known, a quote the count would take to open a field, after a
    # byte where no field starts, turns the cut to field by field at once.
    for chunk in (7, 20, 64):
        cutter = Cutter(quoted=True, max_record=64, delimiter=b",")
        pieces = _cut_all(cutter, data, chunk)
        assert cutter.literal_quotes
        assert _rows_of(pieces) == _pyarrow_rows(data), chunk


@pytest.mark.parametrize(
    ("data", "chunk", "pinned", "known_after_first", "literal"),
    [
        # The literal quote in the first chunk, counted while the delimiter was not known,
        # is carried: the carry is looked at from its start once the delimiter is known.
        (b'a,b\n1,12" x\n2,"p\nq,"\n3,y\n', 16, None, b",", True),
        # Looked at with the carry's count: the quote before `12"` closes a field.
        (b'a,b\n2,"p\nq,"\n3,12" x\n4,"a\nb"\n5,y\n', 10, b",", None, True),
        # The reader skips a byte order mark: a field starts after it.
        (b'\xef\xbb\xbf"a\nb",c\n1,2\n', 8, b",", None, False),
        (b'\xef\xbb\xbf"a\nb",c\n1,2\n', 2, b",", None, False),  # the mark in two chunks
        ('\ufeff"id","desc"\n1,"x\ny"\n'.encode(), 5, b",", None, False),
    ],
)
def test_a_literal_quote_is_looked_for_in_every_byte_once_the_delimiter_is_known(
    data: bytes, chunk: int, pinned: bytes | None, known_after_first: bytes | None,
    literal: bool,
) -> None:
    # As the service does: a table's delimiter pinned, or set once the first block is read.
    cutter = Cutter(quoted=True, max_record=16, delimiter=pinned)
    pieces = []
    for start in range(0, len(data), chunk):
        pieces.append(cutter.feed(data[start : start + chunk]))
        cutter.delimiter = cutter.delimiter or known_after_first
    pieces.append(cutter.feed(b"", final=True))
    assert b"".join(p.data for p in pieces) == data
    assert cutter.literal_quotes == literal
    assert _rows_of(pieces) == _pyarrow_rows(data)


def test_the_delimiter_to_read_fields_by_is_guessed_from_the_first_line() -> None:
    # The record carried when quotes come to be read field by field has more commas than
    # semicolons; the file's first line says `;`.
    data = (
        b'a;b\n1;12" pipe, a, b, c\n' + b'2;"x, y"\n' * 20 + b'3;"p\nq"\n' + b"4;z\n" * 20
    )
    cutter = Cutter(quoted=True, max_record=60)
    pieces = _cut_all(cutter, data, 30)
    assert cutter.literal_quotes and cutter.delimiter == b";"
    assert [row for p in pieces if p.data for row in _pyarrow_rows(p.data, ";")] == (
        _pyarrow_rows(data, ";")
    )


@settings(max_examples=300, deadline=None)
@given(_loose_csv(st.one_of(literal_field, plain_field, _quoted_field('ab,"\n x'))),
       st.integers(1, 400), st.integers(45, 400))
def test_with_the_delimiter_known_literal_quotes_and_fields_of_lines_cut_as_the_reader_reads(
    data: bytes, chunk: int, max_record: int
) -> None:
    # Every record here is under 45 bytes: none is too long, whatever its quotes.
    cutter = Cutter(quoted=True, max_record=max_record, delimiter=b",")
    pieces = _cut_all(cutter, data, chunk)
    assert _rows_of(pieces) == _pyarrow_rows(data)


def test_json_lines_cut_at_any_newline() -> None:
    cutter = Cutter(quoted=False, max_record=1 << 20)
    assert cutter.feed(b'{"a": "\\"q"}\n{"a": 2').data == b'{"a": "\\"q"}\n'
    assert cutter.feed(b"}\n", final=True).data == b'{"a": 2}\n'


def test_split_rows_cuts_between_records_and_keeps_line_numbers() -> None:
    csv = b"h,x\n" + b"".join(b'%d,"a\nb"\n' % i for i in range(1000))
    pieces = split_rows(csv, 7, quoted=True, max_rows=100)

    assert b"".join(p.data for p in pieces) == csv
    assert all(p.data.count(b"\n") <= 120 for p in pieces)
    assert all(p.data.endswith(b'"\n') for p in pieces), "no piece ends inside a quoted field"
    line = 7
    for piece in pieces:
        assert piece.first_line == line
        line += piece.data.count(b"\n")

    jsonl = b"".join(b'{"v": %d}\n' % i for i in range(1000))
    pieces = split_rows(jsonl, 1, False, 300)
    assert b"".join(p.data for p in pieces) == jsonl
    assert [p.data.count(b"\n") for p in pieces] == [307, 297, 297, 99]  # cut by bytes
    assert [p.first_line for p in pieces] == [1, 308, 605, 902]
    assert split_rows(jsonl, 3, False, 1000) == [Piece(jsonl, 3)]


def test_a_row_count_given_to_split_rows_is_the_one_it_would_have_counted() -> None:
    csv = b"a,b\n" + b"".join(b'%d,"x\ny"\n' % i for i in range(500))
    cutter = Cutter(True, len(csv), first_line=4)
    piece = cutter.feed(csv, final=True)
    rows = cutter.line - piece.first_line
    assert rows == csv.count(b"\n")
    assert split_rows(piece.data, 4, True, 50, rows) == split_rows(piece.data, 4, True, 50)


def test_quotes_read_field_by_field_from_the_first_byte_skip_a_byte_order_mark() -> None:
    # The reader skips the mark, then reads a quoted field of two lines: no record ends
    # inside it, wherever a chunk ends.
    data = b'\xef\xbb\xbf"a\nb",c\n1,2\n'
    cutter = Cutter(True, 1 << 20, literal_quotes=True, delimiter=b",")
    assert cutter.feed(data[:9]).data == b""
    assert cutter.feed(data[9:], final=True).data == data
    assert header(data, quoted=True, delimiter=b",") == b'\xef\xbb\xbf"a\nb",c\n'
    assert _rows_of(_cut_all(Cutter(True, 1 << 20, literal_quotes=True, delimiter=b","),
                             data, 9)) == _pyarrow_rows(data)
