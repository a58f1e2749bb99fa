"""The CSVs people actually have (tests/data/csv/) read as DuckDB's auto-detection reads them.

Each file of the corpus is decoded as a worker decodes it and compared with
`read_csv` of DuckDB with no options: the same column names, row count and
values. Where we differ, on purpose, the test says why:
- a decimal comma (`12,5` in a `;` file) is detected, so the column is numbers;
  DuckDB, told nothing, reads text. It is compared with DuckDB told
  `decimal_separator = ','`.
- Latin-1 text is refused by both; we quarantine it with the offset of the
  first byte that is not UTF-8 (README, "Policies worth knowing").
- `NULL`, `NA`, `nan` and the like read as null, as pyarrow reads them by
  default (a table's `null_values` replaces the list); DuckDB reads only the
  empty field as null, and so the whole column as text.
An empty field is null in both, in a text column too.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import duckdb
import pytest

from ingest.compute.decode import DecodeError, decode_file
from ingest.compute.task import check_columns
from ingest.dialect import PLAIN, Dialect

CORPUS = Path(__file__).resolve().parents[1] / "data" / "csv"
FILES = sorted(p.name for p in CORPUS.glob("*.csv"))
DECIMAL_COMMA = {"semicolon_decimal_comma.csv", "notes_semicolon.csv", "excel_semicolon.csv"}
NOT_UTF8 = {"latin1.csv"}
NULL_WORDS = {"null_words.csv"}


def _cell(value: object) -> object:
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC).replace(tzinfo=None)
    if isinstance(value, datetime.time):  # ingest keeps a time of day as its text
        return value.isoformat()
    return value


def _same(ours: object, theirs: object) -> bool:
    a, b = _cell(ours), _cell(theirs)
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool | type(None)):
        return not isinstance(b, bool) and math.isclose(a, b, rel_tol=1e-12)
    return a == b


def duckdb_reads(path: Path, **options: str) -> tuple[list[str], list[tuple[object, ...]]]:
    extra = "".join(f", {key} = '{value}'" for key, value in options.items())
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cursor = con.execute(f"SELECT * FROM read_csv('{path.as_posix()}'{extra})")
    return [c[0] for c in cursor.description], cursor.fetchall()


def ingest_reads(path: Path) -> tuple[list[str], list[tuple[object, ...]], Dialect | None]:
    table, dialect = decode_file(path.name, path.read_bytes())
    table = check_columns(table)
    return table.column_names, [tuple(row.values()) for row in table.to_pylist()], dialect


def matches(path: Path, **options: str) -> bool:
    names, rows = duckdb_reads(path, **options)
    our_names, our_rows, _ = ingest_reads(path)
    return names == our_names and len(rows) == len(our_rows) and all(
        _same(a, b) for ours, theirs in zip(our_rows, rows, strict=True)
        for a, b in zip(ours, theirs, strict=True)
    )


@pytest.mark.parametrize("name", sorted(set(FILES) - DECIMAL_COMMA - NOT_UTF8 - NULL_WORDS))
def test_a_corpus_file_reads_as_duckdb_auto_detection_reads_it(name: str) -> None:
    path = CORPUS / name
    names, rows = duckdb_reads(path)
    our_names, our_rows, dialect = ingest_reads(path)
    assert our_names == names, dialect
    assert len(our_rows) == len(rows), dialect
    for ours, theirs in zip(our_rows, rows, strict=True):
        assert all(_same(a, b) for a, b in zip(ours, theirs, strict=True)), (ours, theirs, dialect)


@pytest.mark.parametrize("name", sorted(DECIMAL_COMMA))
def test_a_decimal_comma_is_detected_and_reads_as_duckdb_told_of_it(name: str) -> None:
    path = CORPUS / name
    assert not matches(path), "DuckDB, told nothing, reads the decimal comma as text"
    assert matches(path, decimal_separator=",")
    _, _, dialect = ingest_reads(path)
    assert dialect is not None and dialect.decimal == "," and dialect.delimiter == ";"


def test_latin1_is_refused_by_both_and_quarantined_with_the_offset_of_its_first_bad_byte() -> None:
    path = CORPUS / "latin1.csv"
    with pytest.raises(duckdb.Error):
        duckdb_reads(path)
    with pytest.raises(DecodeError) as caught:
        ingest_reads(path)
    assert caught.value.offset == path.read_bytes().index(b"\xe9")


def test_null_words_read_as_null_where_duckdb_reads_text() -> None:
    path = CORPUS / "null_words.csv"
    assert duckdb_reads(path)[1] == [(1, "NULL"), (2, "3")]
    assert ingest_reads(path)[1] == [(1, None), (2, 3)]
    assert matches(path, nullstr="NULL")


def test_of_the_files_duckdb_reads_nine_in_ten_match_it_and_all_have_its_row_counts() -> None:
    readable = sorted(set(FILES) - NOT_UTF8)
    matched = sum(matches(CORPUS / name) for name in readable)
    # Every file but those whose values differ on purpose (above): 54 of 58.
    assert matched == len(readable) - len(DECIMAL_COMMA) - len(NULL_WORDS)
    assert matched / len(readable) >= 0.9
    for name in readable:
        assert len(ingest_reads(CORPUS / name)[1]) == len(duckdb_reads(CORPUS / name)[1]), name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("headerless_pipe.csv", "delimiter='|' quote=none header=no"),
        ("tab_export.csv", "delimiter='\\t' quote=none header=yes"),
        ("single_quotes.csv", "delimiter=',' quote=\"'\" header=yes"),
        ("backslash_escape.csv", "delimiter=',' quote='\"' header=yes escape='\\\\'"),
        ("notes_before_header.csv", "delimiter=',' quote=none header=yes skip_rows=3"),
        ("us_dates.csv", "delimiter=',' quote=none header=yes column0='%m/%d/%Y'"),
        (
            "semicolon_decimal_comma.csv",
            "delimiter=';' quote=none header=yes decimal=',' column0='%d.%m.%Y'",
        ),
    ],
)
def test_the_detected_dialect_is_described_in_one_line(name: str, expected: str) -> None:
    _, _, dialect = ingest_reads(CORPUS / name)
    assert dialect is not None and dialect.describe() == expected


def test_a_head_cut_inside_a_quoted_field_still_finds_the_dialect(tmp_path: Path) -> None:
    # Over the sniffer's 1 MiB sample, with a line break in every quoted field: a cut at the
    # last newline before 1 MiB falls inside one about half the time; this one does.
    rows = b"".join(
        b'%d\t"line a %d\nline b, more text here %d"\t%d\n' % (i, i, i, i) for i in range(30_000)
    )
    data = b"id\ttxt\tv\n" + rows
    assert data.count(b'"', 0, data.rfind(b"\n", 0, 1 << 20)) % 2
    path = tmp_path / "multiline.csv"
    path.write_bytes(data)
    names, rows_read = duckdb_reads(path)
    our_names, our_rows, dialect = ingest_reads(path)
    assert dialect is not None and dialect.delimiter == "\t"
    assert our_names == names == ["id", "txt", "v"]
    assert our_rows == rows_read and len(our_rows) == 30_000


@pytest.mark.parametrize("data, values", [
    (b"city\tpopulation\nSpringfield\t1,234\nShelbyville\t12,500\nOgdenville\t999\n",
     ["1,234", "12,500", "999"]),
    (b"sku;units\nA1;1,200\nB2;15,000\nC3;2,500\n", ["1,200", "15,000", "2,500"]),
], ids=["tab", "semicolon"])
def test_commas_that_may_group_thousands_are_not_read_as_decimal_commas(
    data: bytes, values: list[str]
) -> None:
    # Read as decimals, 1,234 people were 1.234: a thousand times too few, silently.
    # As DuckDB reads them: the text as written.
    table = decode_file("counts.csv", data)[0]
    assert table.column(1).to_pylist() == values


def test_a_decimal_comma_beside_them_is_still_one() -> None:
    table = decode_file("units.csv", b"sku;units\nA1;1,5\nB2;15,25\nC3;2,5\n")[0]
    assert table.column("units").to_pylist() == [1.5, 15.25, 2.5]


@pytest.mark.parametrize("data, texts", [
    (b'id,title,n\n1,"Big" Joe,5\n2,plain,6\n3,other,7\n', ['"Big" Joe', "plain", "other"]),
    (b'id,desc,size\n1,"A" grade,10\n2,B grade 12",12\n3,C,14\n',
     ['"A" grade', 'B grade 12"', "C"]),
    (b'tconst\tprimaryTitle\tstartYear\ntt01\t"Weird Al" Yankovic Live\t1999\ntt02\tHeat\t1995\n',
     ['"Weird Al" Yankovic Live', "Heat"]),
], ids=["comma", "inch-mark", "tab"])
def test_quotes_inside_a_field_duckdb_reads_unquoted_are_kept(
    data: bytes, texts: list[str], tmp_path: Path
) -> None:
    # Taken for quoting, they were dropped (`Big Joe`), or the file quarantined.
    assert decode_file("titles.csv", data)[0].column(1).to_pylist() == texts
    (tmp_path / "titles.csv").write_bytes(data)
    found = duckdb.sql(f"SELECT * FROM read_csv('{tmp_path / 'titles.csv'}')").fetchall()
    assert [row[1] for row in found] == texts


def test_a_quote_that_never_closes_is_still_a_broken_file() -> None:
    with pytest.raises(DecodeError, match="never closed"):
        decode_file("broken.csv", b'id,title\n1,"abc\n2,def\n')


PLAIN_HEAD = b"id,name,value\n" + b"".join(b"%d,n%d,%d.5\n" % (i, i, i) for i in range(30))


@pytest.mark.parametrize("tail, last, in_table", [
    (b"# end of export\n", (29, "n29", 29.5), False),
    (b"# end of export\n", (29, "n29", 29.5), True),
    # (In a table whose dialect pins `"`, the table's quote holds.)
    (b"31,'smith, john',3.5\n", (31, "smith, john", 3.5), False),
], ids=["comment-at-the-end", "comment-at-the-end-in-its-table", "single-quotes-further-on"])
def test_a_file_plain_in_its_first_lines_and_not_further_on_reads_as_duckdb_reads_it(
    tail: bytes, last: tuple[object, ...], in_table: bool, tmp_path: Path
) -> None:
    # Its first lines looked plain, and the plain dialect's parse failed on the line past
    # them: the file was quarantined, where DuckDB reads it.
    path = tmp_path / "export.csv"
    path.write_bytes(PLAIN_HEAD + tail)
    table, _ = decode_file(path.name, path.read_bytes(), table=PLAIN if in_table else None)
    ours = [tuple(row.values()) for row in table.to_pylist()]
    names, theirs = duckdb_reads(path)
    assert (table.column_names, ours) == (names, theirs)
    assert ours[-1] == last


def test_a_file_broken_further_on_still_says_where_its_plain_reading_failed() -> None:
    with pytest.raises(DecodeError, match=r"Row #31: Expected 3 columns, got 2"):
        decode_file("ragged.csv", PLAIN_HEAD + b"31,n31\n")


def read_as_duckdb_does(
    folder: Path, data: bytes
) -> tuple[list[tuple[object, ...]], Dialect | None]:
    """The file's rows as ingest reads them, checked equal to DuckDB's, and its dialect."""
    path = folder / "input.csv"
    path.write_bytes(data)
    names, theirs = duckdb_reads(path)
    our_names, ours, dialect = ingest_reads(path)
    assert (our_names, ours) == (names, theirs)
    return ours, dialect


def test_dates_below_an_empty_first_value_read_as_duckdb_reads_them(tmp_path: Path) -> None:
    # The plain file's check for dates that need a format looked at its first row only:
    # with that row's date empty, `12/31/2023` stayed text, where DuckDB reads dates.
    ours, _ = read_as_duckdb_does(
        tmp_path, b"id,day,v\n1,,1.5\n2,12/31/2023,2.5\n3,01/15/2024,3.5\n"
    )
    assert ours[1][1] == datetime.date(2023, 12, 31)


@pytest.mark.parametrize("data", [
    b"val\n1\n\n3\n",
    b"name\nx\n\ny\n\n",
    b"val\n" + b"".join(b"%d\n" % i for i in range(30)) + b"\n\n7\n",
])
def test_an_empty_line_of_a_file_of_one_column_is_a_missing_value(
    tmp_path: Path, data: bytes
) -> None:
    # It was no row, as in a wider file: the rows below moved up, one short.
    ours, _ = read_as_duckdb_does(tmp_path, data)
    assert (None,) in ours


def test_an_empty_line_of_a_wider_file_is_no_row(tmp_path: Path) -> None:
    ours, _ = read_as_duckdb_does(tmp_path, b"a,b\n1,2\n\n3,4\n")
    assert ours == [(1, 2), (3, 4)]


def test_a_title_line_with_a_value_over_headerless_rows_is_a_note(tmp_path: Path) -> None:
    # Two fields over three columns were taken for a ragged header, and the file
    # quarantined; a line that holds a value beside a word is no header. Read as DuckDB
    # reads it.
    _, dialect = read_as_duckdb_does(
        tmp_path, b"Report date,2024-01-01\n1,alpha,1.5\n2,beta,2.5\n3,gamma,3.5\n"
    )
    assert dialect is not None and (dialect.skip_rows, dialect.header) == (1, False)
    # An SAP export's `Stand:` line over its rows: the same, its decimal commas read.
    sap = decode_file("sap.csv", b"Stand:;31.12.2024\n1000;A;12,5\n1001;B;13,5\n1002;C;14,5\n")
    assert sap[0].to_pylist()[0] == {"column0": 1000, "column1": "A", "column2": 12.5}


def test_rows_of_values_the_sniffer_skips_are_not_notes() -> None:
    # Ragged rows over one wide last row: DuckDB skips all but the last and reads one
    # row. Rows of numbers are no title: the file is broken, and said so at its row.
    with pytest.raises(DecodeError, match="Expected 2 columns, got 3"):
        decode_file("ragged.csv", b"a,b\n1,2\n3,4,5\n6,7,8,9\n")
