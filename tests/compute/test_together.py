"""Small CSVs parsed together give what each gives alone, and never mix verdicts."""

from __future__ import annotations

import datetime
import hashlib
import math

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.compute.decode import decode, decode_file
from ingest.compute.sniff import plain_dialect
from ingest.compute.task import process
from ingest.compute.together import _MAYBE_FLOAT, parse_groups, parse_together
from ingest.config import Features
from ingest.dialect import PLAIN, CsvOptions, Dialect
from ingest.jobs import Job, TableSpec, Task

from .test_runs import _tasks

HEADER = b"timestamp,a,b\n"
SEMICOLON = Dialect(delimiter=";", quote="")


def job(name: str, data: bytes) -> Job:
    return Job(name, hashlib.sha256(data).hexdigest(), data)


def test_files_sharing_a_header_are_parsed_once_and_sliced_back_to_the_same_values() -> None:
    jobs = tuple(
        job(f"f{i}.csv", HEADER + b"".join(b"%d,%d.5,%d\n" % (i * 10 + r, r, r) for r in range(3)))
        for i in range(5)
    )
    tables = parse_together(jobs)
    assert set(tables) == set(range(5))
    for index, j in enumerate(jobs):
        alone = decode(j.source_file, j.data)
        assert tables[index].to_pylist() == alone.to_pylist()


@pytest.mark.parametrize("delimiter", [b";", b"\t", b"|"])
def test_files_plain_but_for_their_delimiter_are_parsed_together_as_each_alone(
    delimiter: bytes,
) -> None:
    jobs = tuple(
        job(f"f{i}.csv", delimiter.join([b"ts", b"name", b"v"]) + b"\n" + b"".join(
            delimiter.join([b"2024-01-0%d" % (r + 1), b"dev-%d" % i, b"%d.5" % r]) + b"\n"
            for r in range(3)
        ))
        for i in range(4)
    )
    (group,) = parse_groups(jobs)
    assert group.dialect == Dialect(delimiter=delimiter.decode(), quote="")
    tables = parse_together(jobs)
    assert set(tables) == set(range(4))
    for index, j in enumerate(jobs):
        alone, dialect = decode_file(j.source_file, j.data)
        assert tables[index].to_pylist() == alone.to_pylist()
        assert dialect == group.dialect


def test_a_file_whose_head_holds_a_comma_is_left_out_of_a_semicolon_group() -> None:
    # Alone, a comma sends a `;` file to the sniffer, which reads `2,5` as 2.5.
    jobs = (
        job("a.csv", b"id;v\n1;0.5\n"),
        job("b.csv", b"id;v\n2;2,5\n"),
        job("c.csv", b"id;v\n3;1.5\n"),
    )
    assert set(parse_together(jobs)) == {0, 2}
    assert decode("b.csv", jobs[1].data).column("v").to_pylist() == [2.5]


def test_a_table_takes_into_a_group_only_files_in_the_dialect_it_pinned() -> None:
    comma = tuple(job(f"c{i}.csv", b"id,v\n%d,0.5\n" % i) for i in range(2))
    semi = tuple(job(f"s{i}.csv", b"id;v\n%d;0.5\n" % i) for i in range(2))
    groups = parse_groups((*comma, *semi), dialects=lambda j: {PLAIN})
    assert [[index for index, _, _ in g.members] for g in groups] == [[0, 1]]


@pytest.mark.parametrize(("pinned", "ingested"), [(PLAIN, 0), (SEMICOLON, 3), (None, 3)])
def test_a_task_groups_a_tables_files_only_in_the_dialect_its_first_file_pinned(
    pinned: Dialect | None, ingested: int,
) -> None:
    # In a comma table each `;` file is read alone in commas, and refused for its width.
    jobs = tuple(job(f"s{i}.csv", b"id;v\n%d;0.5\n" % i) for i in range(3))
    result = process(Task(jobs, Features(), specs=(TableSpec("records", dialect=pinned),)))
    assert sum(o.failure is None for o in result.outcomes) == ingested
    for outcome in result.outcomes:
        assert outcome.failure is None or "its table's dialect" in outcome.failure.message


@pytest.mark.parametrize("pins", [
    None, CsvOptions(header=True), CsvOptions(skip_rows=0), CsvOptions(delimiter=";"),
    CsvOptions(delimiter=","),
])
def test_a_file_in_a_group_gets_the_rows_and_dialect_it_gets_alone_whatever_agrees_is_pinned(
    pins: CsvOptions | None,
) -> None:
    # Alone, DuckDB's sniffer would take Excel's `#N/A` for a comment mark and drop its row.
    jobs = (
        job("a.csv", b"price;qty\n#N/A;1\n2.5;2\n"), job("b.csv", b"price;qty\n1.5;3\n"),
        job("c.csv", b"price,qty\n#N/A,1\n2.5,2\n"), job("d.csv", b"price,qty\n1.5,3\n"),
    )
    spec = TableSpec("records", csv=pins)
    together = process(Task(jobs, Features(), specs=(spec,))).outcomes
    alone = [process(Task((j,), Features(), specs=(spec,))).outcomes[0] for j in jobs]
    assert [(o.rows, o.dialect, o.failure) for o in together] == [
        (o.rows, o.dialect, o.failure) for o in alone
    ]
    assert [o.rows for o in together if o.failure is None][:1] == [2]


def test_an_empty_text_cell_is_null_parsed_together_as_alone() -> None:
    jobs = tuple(
        job(f"f{i}.csv", b"timestamp,name\n%d,x\n%d,\n" % (i, i + 10)) for i in range(3)
    )
    tables = parse_together(jobs)
    assert set(tables) == set(range(3))
    for index, j in enumerate(jobs):
        assert tables[index].column("name").to_pylist() == ["x", None]
        assert decode(j.source_file, j.data).column("name").to_pylist() == ["x", None]


def test_columns_hinted_text_are_read_as_text_together_as_alone() -> None:
    jobs = tuple(job(f"f{i}.csv", b"timestamp,zip\n%d,0%d\n%d,00%d\n" % (i, i, i, i))
                 for i in range(3))
    groups = parse_groups(jobs, lambda j: ("ZIP",))
    assert [len(g.members) for g in groups] == [3]
    assert groups[0].table.column("zip").to_pylist() == ["00", "000", "01", "001", "02", "002"]
    assert parse_groups(jobs)[0].table.schema.field("zip").type == pa.int64()


def test_a_file_with_a_leading_zero_in_a_number_column_is_parsed_alone() -> None:
    jobs = (
        job("a.csv", b"id,zip,v\n1,10001,0.5\n"),
        job("b.csv", b"id,zip,v\n2,02139,0.25\n"),
        job("c.csv", b"id,zip,v\n3,20500,0.75\n"),
    )
    tables = parse_together(jobs)
    assert set(tables) == {0, 2}, "b.csv reads zip as text alone: it is left out"
    for index in tables:
        alone = decode(jobs[index].source_file, jobs[index].data)
        assert tables[index].to_pylist() == alone.to_pylist()
    alone = decode("b.csv", jobs[1].data)
    assert alone.column("zip").to_pylist() == ["02139"] and alone.column("v").type == pa.float64()


@pytest.mark.parametrize(("header", "row", "alone"), [
    # Timestamps written `... UTC`: alone, the column is timestamps.
    (b"id,at", b"2,2024-01-01 10:00:00 UTC", [datetime.datetime(2024, 1, 1, 10)]),
    # Only null markers: alone, the column is nulls; beside words, "NA" would stay a word.
    (b"v,at", b"1,NA\n2,", [None, None]),
    # Arrow's reader takes " 5" for 5: alone, the column is numbers, with features.
    (b"id|at", b"2| 5", [5]),
    # Dates, timestamps and booleans: alone, the column is so typed (a time of day is
    # read as written, alone as together).
    (b"id,at", b"2,2026-01-02", [datetime.date(2026, 1, 2)]),
    (b"id,at", b"2,2026-01-02T12:30:00", [datetime.datetime(2026, 1, 2, 12, 30)]),
    (b"id,at", b"2,true\n3,FALSE", [True, False]),
])
def test_a_file_that_alone_reads_a_text_column_otherwise_is_parsed_alone(
    header: bytes, row: bytes, alone: list[object],
) -> None:
    delimiter = b"|" if b"|" in header else b","
    words = (b"1" + delimiter + b"x", b"3" + delimiter + b"y")
    jobs = tuple(
        job(f"{name}.csv", header + b"\n" + body + b"\n")
        for name, body in (("a", words[0]), ("b", row), ("c", words[1]))
    )
    assert set(parse_together(jobs)) == {0, 2}, "b.csv reads the column otherwise alone"
    assert decode("b.csv", jobs[1].data).column("at").to_pylist() == alone


def test_a_file_with_dates_below_an_empty_first_value_is_parsed_alone() -> None:
    # Alone, its `day` is dates in a format; in the group, the first file's text.
    jobs = (
        job("a.csv", b"id,day\n1,x\n"),
        job("b.csv", b"id,day\n2,\n3,12/31/2023\n"),
        job("c.csv", b"id,day\n4,y\n"),
    )
    assert set(parse_together(jobs)) == {0, 2}
    assert decode_file("b.csv", jobs[1].data)[0].column("day").to_pylist() == [
        None, datetime.date(2023, 12, 31)
    ]


def test_a_null_marker_is_no_word_to_the_group_check() -> None:
    # Alone, b.csv reads "NA" as null and `id` as numbers, where the group reads text.
    jobs = (
        job("a.csv", b"id,v\nx,1\n"),
        job("b.csv", b"id,v\nNA,2\n3,4\n"),
        job("c.csv", b"id,v\ny,5\n"),
    )
    tables = parse_together(jobs)
    assert set(tables) == {0, 2}
    assert decode("b.csv", jobs[1].data).column("id").to_pylist() == [None, 3]


def test_a_time_of_day_or_a_date_does_not_send_a_file_alone() -> None:
    # `08:30` and `01/02/2024` start with a zero and a digit too, in columns of no number.
    jobs = tuple(job(f"f{i}.csv", b"t,n\n08:3%d,1%d\n" % (i, i)) for i in range(3))
    assert set(parse_together(jobs)) == {0, 1, 2}


def test_a_time_of_day_keeps_its_spelling_together_as_alone() -> None:
    # Arrow read `10:30` as a time, which its cast to text spells `10:30:00`; `7:05`,
    # no time to Arrow, stayed as written: one column, two spellings.
    jobs = tuple(job(f"f{i}.csv", b"n,t\n%d,10:3%d\n%d,11:00\n" % (i, i, i)) for i in range(3))
    tables = parse_together(jobs)
    assert set(tables) == {0, 1, 2}
    for index, j in enumerate(jobs):
        alone = decode(j.source_file, j.data)
        assert alone.column("t").to_pylist() == [f"10:3{index}", "11:00"]
        assert tables[index].to_pylist() == alone.to_pylist()
    assert decode("g.csv", b"n,t\n1,10:30\n2,7:05\n").column("t").to_pylist() == [
        "10:30", "7:05",
    ]
    # Beside files of words in the column, as a file of words is.
    mixed = (job("w.csv", b"n,t\n1,soon\n"), job("x.csv", b"n,t\n2,12:30:00\n"))
    assert set(parse_together(mixed)) == {0, 1}
    assert parse_together(mixed)[1].column("t").to_pylist() == ["12:30:00"]


def test_quoted_or_gzipped_or_lone_files_are_left_to_be_parsed_alone() -> None:
    jobs = (
        job("q.csv", HEADER + b'1,"2",3\n'),
        job("p.csv", HEADER + b"1,2,3\n"),
        job("x.jsonl", b'{"a": 1}\n'),
        job("other.csv", b"x,y\n1,2\n"),
    )
    assert parse_together(jobs) == {}


def test_a_value_that_does_not_fit_the_group_types_sends_every_file_back_alone() -> None:
    jobs = (
        job("ints.csv", HEADER + b"1,2,3\n"),
        job("text.csv", HEADER + b"2,abc,4\n"),
    )
    assert parse_together(jobs) == {}
    result = process(Task(jobs, Features()))
    assert all(o.failure is None for o in result.outcomes)
    (records,) = [p for p in result.parts if p.table == "records"]
    table = pq.read_table(pa.BufferReader(records.data))
    # One table, one schema: the first file made `a` a number column; the text is rescued.
    assert table.schema.field("a").type == pa.int64()
    assert table.column("a").to_pylist() == [2, None]
    assert table.column("_rescued_data").to_pylist() == [None, '{"a": "abc"}']


def test_a_ragged_file_in_a_group_is_quarantined_alone_with_its_own_line() -> None:
    jobs = (
        job("good1.csv", HEADER + b"1,2,3\n2,3,4\n"),
        job("ragged.csv", HEADER + b"1,2,3\n2,3\n"),
        job("good2.csv", HEADER + b"5,6,7\n"),
    )
    result = process(Task(jobs, Features()))
    verdicts = {o.source_file: o.failure for o in result.outcomes}
    assert verdicts["good1.csv"] is None and verdicts["good2.csv"] is None
    failure = verdicts["ragged.csv"]
    assert failure is not None and failure.line == 3
    assert {o.source_file: o.rows for o in result.outcomes if o.failure is None} == {
        "good1.csv": 2, "good2.csv": 1,
    }


def test_a_file_whose_column_is_numbers_is_parsed_alone_when_the_group_reads_text() -> None:
    jobs = (
        job("text.csv", b"id,v\nabc,1.5\ndef,2.5\n"),
        job("ints.csv", b"id,v\n3,30\n"),
        job("more_text.csv", b"id,v\nxyz,3.5\n"),
    )
    tables = parse_together(jobs)
    assert 1 not in tables, "ints.csv is parsed alone"
    result = process(Task(jobs, Features()))
    features_part = next(p for p in result.parts if p.table == "features")
    rows = pq.read_table(pa.BufferReader(features_part.data)).to_pylist()
    described = {(r["source_file"], r["source_column"]) for r in rows}
    # Its `v` keeps its numbers; its `id`, which text.csv before it made text, is text, as
    # a later run reads it: no features row.
    assert ("ints.csv", "v") in described
    assert ("ints.csv", "id") not in described


def test_a_blank_line_keeps_a_file_out_of_the_joint_parse_and_every_file_keeps_its_rows() -> None:
    jobs = (
        job("before.csv", HEADER + b"1,2,3\n2,3,4\n"),
        job("blank_inside.csv", HEADER + b"3,4,5\n\n4,5,6\n"),
        job("blank_at_end.csv", HEADER + b"5,6,7\n\n"),
        job("after.csv", HEADER + b"6,7,8\n"),
    )
    # The reader skips a blank line, so the row count would give it away: such a file is
    # not plain, and is parsed alone.
    assert set(parse_together(jobs)) == {0, 3}
    result = process(Task(jobs, Features()))
    assert [(o.source_file, o.rows, o.failure) for o in result.outcomes] == [
        ("before.csv", 2, None), ("blank_inside.csv", 2, None),
        ("blank_at_end.csv", 1, None), ("after.csv", 1, None),
    ]
    for j in jobs:
        (part,) = [p for p in result.parts if p.table == "records" and j.source_file in p.sources]
        rows = pq.read_table(pa.BufferReader(part.data)).to_pylist()
        mine = [r for r in rows if r["source_file"] == j.source_file]
        assert [{k: r[k] for k in ("timestamp", "a", "b")} for r in mine] == (
            decode(j.source_file, j.data).to_pylist()
        )


def test_a_header_that_repeats_a_text_column_gets_the_verdict_each_file_gets_alone() -> None:
    jobs = tuple(
        job(f"f{i}.csv", b"name,name,v\n" + b"x%d,y,%d\nz,w,%d\n" % (i, i, i + 1))
        for i in range(3)
    )
    parse_together(jobs)  # it once raised KeyError, failing the whole task
    together = process(Task(jobs, Features()))
    for j, outcome in zip(jobs, together.outcomes, strict=True):
        alone = process(Task((j,), Features())).outcomes[0]
        assert (outcome.rows, outcome.failure) == (alone.rows, alone.failure)


def test_a_file_whose_header_was_found_plain_is_still_checked_for_quotes_and_dates() -> None:
    header = b"when,v\n"
    jobs = (
        job("plain1.csv", header + b"2026-01-01,1\n2026-01-02,2\n"),
        job("plain2.csv", header + b"2026-01-03,3\n"),
        job("quoted.csv", header + b"'2026-01-04',4\n"),
        job("european.csv", header + b"04.01.2026,5\n"),
    )
    assert sorted(parse_together(jobs)) == [0, 1]  # the others are parsed alone


_NUMBERISH = st.text(alphabet="0123456789+-.eEinfatyINFATY()_ x,", max_size=12)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_NUMBERISH, st.text(max_size=8)))
def test_every_text_arrow_reads_as_a_float_could_be_a_float_to_the_group_check(
    text: str,
) -> None:
    """A value the group check rules out as a number, Arrow's cast refuses too: a file it
    rules out reads the column as text alone as well."""
    try:
        pc.cast(pa.array([text], pa.string()), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return
    assert pc.match_substring_regex(pa.array([text]), _MAYBE_FLOAT)[0].as_py()


def test_files_of_a_group_with_words_in_a_text_column_are_kept_and_one_of_numbers_is_not() -> None:
    jobs = (
        job("words1.csv", b"id,v\nabc,1.5\n"),
        job("nan_like.csv", b"id,v\nnan(x),2.5\n"),  # Arrow reads nan(x) as a float
        job("numbers.csv", b"id,v\n1e3,3.5\n-inf,4.5\n"),
        job("words2.csv", b"id,v\n,5.5\nxyz,6.5\n"),
    )
    (group,) = parse_groups(jobs)
    assert [index for index, _, _ in group.members] == [0, 3]
    assert [(start, rows) for _, start, rows in group.members] == [(0, 1), (4, 2)]


def test_a_file_with_an_integer_float64_would_round_sends_the_group_back_alone() -> None:
    """Read as float64 with the first file's types, a 20-digit ID would be rounded; alone,
    its column is read as text and the integer kept (`csvread.inexact_columns`)."""
    jobs = (
        job("a.csv", HEADER + b"1,2.5,3\n"),
        job("b.csv", HEADER + b"2,12345678901234567890,4\n"),
    )
    assert parse_together(jobs) == {}
    assert parse_together(tuple(reversed(jobs))) == {}
    alone = decode("b.csv", jobs[1].data)
    assert alone.column("a").to_pylist() == ["12345678901234567890"]


def _values(table: pa.Table) -> list[dict[str, object]]:
    return [
        {k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in table.to_pylist()
    ]


@settings(max_examples=150, deadline=None)
@given(_tasks())
def test_every_file_parsed_in_a_group_holds_the_values_it_holds_alone(task: Task) -> None:
    for index, table in parse_together(task.jobs).items():
        j = task.jobs[index]
        if plain_dialect(j.data, CsvOptions()) is None:
            # A comma file let in by its header, known plain, after `plain_like`'s lighter
            # look; alone, with no column of numbers of its own, the sniffer reads it.
            continue
        alone, _ = decode_file(j.source_file, j.data)
        assert table.column_names == alone.column_names
        assert _values(table) == _values(alone), j.data


def test_a_number_in_a_column_the_first_file_read_as_flags_sends_the_group_back_alone() -> None:
    # Arrow's reader takes `1` for true; alone, the second file reads its column as
    # numbers, which the table's flag column rescues. Together it must do the same.
    jobs = (job("a.csv", b"id,flag\n1,true\n"), job("b.csv", b"id,flag\n2,1\n3,0\n"))
    assert parse_together(jobs) == {}
    result = process(Task(jobs, Features()))
    (records,) = [p for p in result.parts if p.table == "records"]
    table = pq.read_table(pa.BufferReader(records.data))
    assert table.schema.field("flag").type == pa.bool_()
    assert table.column("flag").to_pylist() == [True, None, None]
    assert table.column("_rescued_data").to_pylist() == [
        None, '{"flag": "1"}', '{"flag": "0"}',
    ]


def test_files_of_flag_words_are_still_parsed_together() -> None:
    jobs = tuple(job(f"f{i}.csv", b"id,flag\n%d,true\n%d,False\n" % (i, i)) for i in range(3))
    tables = parse_together(jobs)
    assert set(tables) == {0, 1, 2}
    assert all(t.column("flag").to_pylist() == [True, False] for t in tables.values())
