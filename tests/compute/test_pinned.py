"""A table's pins and pinned dialect, honoured by the worker; what each file was read with."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.compute.task import process
from ingest.config import Features
from ingest.dialect import PLAIN, CsvOptions, Dialect
from ingest.jobs import Job, Outcome, TableSpec, Task, TaskResult

SEMICOLON = Dialect(";", "", "", True, 0, "", ",")


def pinned(jobs: tuple[Job, ...], **table: object) -> Task:
    """A task whose files go to a table that pins `table` (csv=..., dialect=...)."""
    return Task(jobs, Features(), specs=(TableSpec("records", **table),))


def job(name: str, data: bytes) -> Job:
    return Job(name, hashlib.sha256(data).hexdigest(), data)


def rows_of(result: TaskResult, name: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for part in result.parts:
        if part.table == "records" and name in part.sources:
            table = pq.read_table(pa.BufferReader(part.data))  # type: ignore[union-attr]
            rows += [r for r in table.to_pylist() if r.pop("source_file") == name]
    for row in rows:
        row.pop("source_sha256")
        assert row.pop("_rescued_data") is None
    return rows


def only(result: TaskResult) -> Outcome:
    (outcome,) = result.outcomes
    return outcome


def test_pinned_delimiter_and_header_are_used_where_detection_would_guess_otherwise() -> None:
    # One row of text: no sniffer can tell a header from data, or ';' from ','.
    data = b"north;a,b\nsouth;c,d\n"
    result = process(pinned((job("s.csv", data),), csv=CsvOptions(";", header=False)))
    assert only(result).failure is None
    assert rows_of(result, "s.csv") == [
        {"column0": "north", "column1": "a,b"}, {"column0": "south", "column1": "c,d"},
    ]
    dialect = only(result).dialect
    assert dialect is not None and (dialect.delimiter, dialect.header) == (";", False)


def test_pinned_null_values_apply_to_plain_files_parsed_in_one_task() -> None:
    jobs = tuple(job(f"p{i}.csv", b"a,b\n%d,-999\n%d,2.5\n" % (i, i)) for i in range(3))
    result = process(pinned(jobs, csv=CsvOptions(null_values=("-999",))))
    for j in jobs:
        assert [r["b"] for r in rows_of(result, j.source_file)] == [None, 2.5]


def test_a_file_whose_own_dialect_differs_is_read_in_the_tables_where_that_parses() -> None:
    # Alone, nothing here says the comma is a decimal comma; its table's first file did.
    data = b"station;temp\nnorth;1\nsouth;2\n"
    result = process(pinned((job("later.csv", data),), dialect=SEMICOLON))
    outcome = only(result)
    assert outcome.failure is None
    assert outcome.dialect == SEMICOLON
    assert rows_of(result, "later.csv") == [
        {"station": "north", "temp": 1}, {"station": "south", "temp": 2},
    ]


def test_a_decimal_comma_pinned_by_the_table_reads_a_later_files_numbers() -> None:
    data = b"station;temp\nnorth;1,5\nsouth;2,25\n"
    result = process(pinned((job("later.csv", data),), dialect=SEMICOLON))
    assert [r["temp"] for r in rows_of(result, "later.csv")] == [1.5, 2.25]


def test_a_file_the_tables_dialect_cannot_read_is_quarantined_naming_both_dialects() -> None:
    data = b"station,temp,flow\nnorth,1.5,3\nsouth,2.5,4\n"
    outcome = only(process(pinned((job("comma.csv", data),), dialect=SEMICOLON)))
    assert outcome.failure is not None
    message = outcome.failure.message
    assert "table's dialect (delimiter=';'" in message
    assert "1 columns" in message and "it has 3" in message
    assert "on its own it reads as delimiter=','" in message


def test_lines_before_the_header_are_each_files_own_under_a_pinned_dialect() -> None:
    table = Dialect(";", "", "", True, 2)
    data = b"Report\n\nstation;temp\nnorth;1\n"  # two lines of notes, as the first file had
    shorter = b"Report\nstation;temp\nsouth;2\n"  # one line: its own count is used
    result = process(pinned((job("a.csv", data), job("b.csv", shorter)), dialect=table))
    assert [o.failure for o in result.outcomes] == [None, None]
    assert rows_of(result, "b.csv") == [{"station": "south", "temp": 2}]


def test_outcomes_say_what_each_file_was_read_with() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3.0))
    jobs = (
        job("a.csv", b"t,v\n1,2.5\n"), job("b.csv", b"t,v\n2,3.5\n"),  # parsed together
        job("pipe.csv", b"1|x\n2|y\n"), job("n.npy", buffer.getvalue()),
    )
    result = process(Task(jobs, Features()))
    dialects = [o.dialect for o in result.outcomes]
    assert dialects[:2] == [PLAIN, PLAIN]
    assert dialects[2] is not None and dialects[2].delimiter == "|" and not dialects[2].header
    assert dialects[3] is None


def test_quotes_a_tables_first_file_never_had_are_read_in_a_later_file() -> None:
    table = Dialect("|", "", "", False)  # as sniffed from a headerless file with no quotes
    data = b'1|"a|b"|x\n2|"c"|y\n'
    result = process(pinned((job("quoted.csv", data),), dialect=table))
    assert only(result).failure is None
    assert [r["column1"] for r in rows_of(result, "quoted.csv")] == ["a|b", "c"]


def test_a_tables_delimiter_holds_where_the_file_alone_would_guess_another() -> None:
    table = Dialect("|", "", "", False)
    data = b"1|2,5\n"  # one row: alone, the sniffer may well call the comma the delimiter
    result = process(pinned((job("short.csv", data),), dialect=table))
    assert only(result).failure is None
    assert rows_of(result, "short.csv") == [{"column0": 1, "column1": "2,5"}]


def schema_of(**columns: pa.DataType) -> bytes:
    """A table's committed schema: its columns, then those ingest adds."""
    added = [("source_file", pa.string()), ("source_sha256", pa.string()),
             ("_rescued_data", pa.string())]
    return pa.schema([*columns.items(), *added]).serialize().to_pybytes()


def test_a_later_files_first_row_of_data_is_not_taken_for_its_tables_header() -> None:
    # The table's first file had a header; this one has none. Read with one, its first
    # row would become two column names, and its values be lost.
    known = schema_of(station=pa.string(), temp=pa.float64())
    jobs = (job("b.csv", b"y,2.5\nz,3.5\nw,4.5\n"), job("c.csv", b"3,4\n5,6\n"))
    result = process(pinned(jobs, dialect=PLAIN, schema=known))
    assert [o.failure for o in result.outcomes] == [None, None]
    none = {"station": None, "temp": None}
    assert rows_of(result, "b.csv") == [
        {**none, "column0": "y", "column1": 2.5}, {**none, "column0": "z", "column1": 3.5},
        {**none, "column0": "w", "column1": 4.5},
    ]
    # column0 is text in this task (b.csv's), column1 a double: c.csv's values, so typed.
    assert [(r["column0"], r["column1"]) for r in rows_of(result, "c.csv")] == [
        ("3", 4.0), ("5", 6.0),
    ]
    assert [o.rows for o in result.outcomes] == [3, 2]
    assert all(o.dialect is not None and not o.dialect.header for o in result.outcomes)


def test_a_first_row_that_names_the_tables_columns_stays_its_header() -> None:
    # Alone, `2023` over numbers reads as data; its table knows it as a column name.
    known = schema_of(site=pa.string(), **{"2023": pa.float64()})
    result = process(pinned((job("later.csv", b"site,2023\nx,1.5\n"),), dialect=PLAIN,
                            schema=known))
    assert only(result).failure is None
    assert rows_of(result, "later.csv") == [{"site": "x", "2023": 1.5}]
