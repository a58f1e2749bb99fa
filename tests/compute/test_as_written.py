"""A CSV's values in a column that a file before it in the task made text are kept as
written, as a later run would read them: not read as numbers, flags or times and cast."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.compute.task import process
from ingest.config import Features
from ingest.jobs import Job, TableSpec, Task, TaskResult

TEXT = b"id,t,v,f\n1,x,abc,maybe\n"
TYPED = b"id,t,v,f\n2,2024-01-01T10:00:00,1.10,TRUE\n3,2024-01-02T10:00:00,1e3,FALSE\n"
AS_WRITTEN = [
    ("2024-01-01T10:00:00", "1.10", "TRUE"), ("2024-01-02T10:00:00", "1e3", "FALSE"),
]


def job(name: str, data: bytes) -> Job:
    return Job(name, hashlib.sha256(data).hexdigest(), data)


def _part(result: TaskResult, table: str) -> list[dict[str, object]]:
    (part,) = [p for p in result.parts if p.table == table]
    assert isinstance(part.data, bytes)
    rows: list[dict[str, object]] = pq.read_table(pa.BufferReader(part.data)).to_pylist()
    return rows


def _typed_rows(result: TaskResult) -> list[tuple[object, ...]]:
    return [(r["t"], r["v"], r["f"]) for r in _part(result, "records") if r["id"] in (2, 3)]


def _described(result: TaskResult, name: str) -> set[object]:
    return {r["source_column"] for r in _part(result, "features") if r["source_file"] == name}


@pytest.mark.parametrize("typed_name, typed_data", [
    ("typed.csv", TYPED), ("typed.csv.gz", gzip.compress(TYPED)),
], ids=["csv", "gzip"])
@pytest.mark.parametrize("between", [0, 3], ids=["next", "three-files-later"])
def test_values_after_a_file_that_made_their_columns_text_are_as_written(
    typed_name: str, typed_data: bytes, between: int
) -> None:
    # Files in between, of the same header, make the task's small CSVs parse together.
    others = tuple(job(f"n{i}.csv", b"id,t,v,f\n9,y,z,w\n") for i in range(between))
    result = process(Task((job("text.csv", TEXT), *others, job(typed_name, typed_data)),
                          Features()))
    assert all(o.failure is None for o in result.outcomes)
    assert _typed_rows(result) == AS_WRITTEN
    assert _described(result, typed_name) == {"id"}  # no numbers' features for text


def test_a_file_that_types_a_column_first_keeps_it_and_text_after_it_is_rescued() -> None:
    result = process(Task((job("typed.csv", TYPED), job("text.csv", TEXT)), Features()))
    rows = _part(result, "records")
    assert [r["v"] for r in rows] == [1.1, 1000.0, None]
    assert rows[2]["_rescued_data"] == '{"t": "x", "v": "abc", "f": "maybe"}'
    assert _described(result, "typed.csv") == {"id", "v"}


def test_the_table_as_the_service_knew_it_decides_too() -> None:
    # The table holds `t` as a timestamp: the text file's `x` is rescued, and the typed
    # file keeps its times, though the text file comes first in the task.
    first = process(Task((job("first.csv", b"id,t\n0,2023-12-31T00:00:00\n"),), Features()))
    (part,) = [p for p in first.parts if p.table == "records"]
    assert isinstance(part.data, bytes)
    schema = pq.read_schema(pa.BufferReader(part.data)).remove_metadata()
    assert schema.field("t").type == pa.timestamp("us")
    spec = TableSpec("records", schema=schema.serialize().to_pybytes(), version=1)
    result = process(Task((job("text.csv", TEXT), job("typed.csv", TYPED)), Features(),
                          specs=(spec,)))
    rows = _part(result, "records")
    assert rows[0]["t"] is None and '"t": "x"' in str(rows[0]["_rescued_data"])
    assert [str(r["t"]) for r in rows[1:]] == ["2024-01-01 10:00:00", "2024-01-02 10:00:00"]


def test_a_json_lines_file_keeps_its_numbers_spelled_as_json_in_a_text_column() -> None:
    # A JSON number is typed by its file, not read from text: it is cast, as in a later run.
    result = process(Task(
        (job("text.csv", TEXT), job("typed.jsonl", b'{"id": 4, "v": 1.10}\n')), Features()
    ))
    assert [r["v"] for r in _part(result, "records")] == ["abc", "1.1"]


@pytest.mark.parametrize("name", ["times.jsonl", "times.jsonl.gz"])
def test_a_json_lines_files_times_after_a_file_that_made_their_column_text_are_as_written(
    name: str,
) -> None:
    # Read as timestamps, then cast to text in the task's part: in UTC, the zone gone.
    times = b'{"id": 5, "t": "2024-01-01T10:00:00+05:00"}\n{"id": 6, "t": "2024-01-01T10:00:00"}\n'
    timed = job(name, times)
    if name.endswith(".gz"):  # measured by the service, as it measures every gzip'd file
        data = gzip.compress(times)
        timed = replace(timed, data=data, sha256=hashlib.sha256(data).hexdigest(),
                        in_memory=len(data) + len(times))
    result = process(Task((job("text.csv", TEXT), timed), Features()))
    assert all(o.failure is None for o in result.outcomes)
    assert [r["t"] for r in _part(result, "records")] == [
        "x", "2024-01-01T10:00:00+05:00", "2024-01-01T10:00:00",
    ]


def test_a_column_named_in_another_case_is_kept_as_written_too() -> None:
    # The table's `V` is the typed file's `v`.
    result = process(Task(
        (job("text.csv", b"id,V\n0,abc\n"), job("typed.csv", b"id,v\n1,1.10\n2,2.50\n")),
        Features(),
    ))
    assert [r["V"] for r in _part(result, "records")] == ["abc", "1.10", "2.50"]
    assert _described(result, "typed.csv") == {"id"}
