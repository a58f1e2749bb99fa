"""A task's files parsed together and featurised in runs give what each file gives alone:
the same outcomes, rows, schema, features and footers."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import conform
from ingest.compute.as_written import as_written
from ingest.compute.encode import Featurised, encode
from ingest.compute.runs import runs
from ingest.compute.task import _featurise_one, process, read_again
from ingest.compute.together import parse_groups
from ingest.config import Features
from ingest.dialect import PLAIN
from ingest.jobs import EncodedPart, Failure, Job, Outcome, TableSpec, Task, TaskResult


def job(name: str, data: bytes, table: str = "records") -> Job:
    return Job(name, hashlib.sha256(data).hexdigest(), data, table=table)


def one_by_one(task: Task) -> TaskResult:
    """The task as every file alone would make it: parsed together where it can be, then
    fitted and featurised file by file, and read again where `as_written` says."""
    parsed = {
        index: (group.table.slice(start, rows), group.dialect)
        for group in parse_groups(task.jobs) for index, start, rows in group.members
    }
    targets = conform.Targets()
    outcomes: list[Outcome] = []
    done: list[Featurised] = []
    for index, j in enumerate(task.jobs):
        table, dialect = parsed.get(index, (None, PLAIN))
        result = _featurise_one(j, task, table, targets, dialect)
        if isinstance(result, Failure):
            outcomes.append(Outcome(j.source_file, j.sha256, failure=result))
        else:
            featurised, dialect = result
            ((_, _, rows),) = featurised.sources
            outcomes.append(Outcome(j.source_file, j.sha256, rows, None, dialect))
            done.append(featurised)
    # As a task does: a CSV that an earlier file made text in a column is read again.
    done = as_written(done, outcomes, task.jobs, task, read_again)
    versions = {spec.name: spec.version for spec in task.specs}
    parts = encode(done, task.compression, task.features.sets, None, versions)
    return TaskResult(tuple(outcomes), tuple(parts))


def _contents(result: TaskResult) -> list[tuple[object, ...]]:
    found = []
    for part in result.parts:
        assert isinstance(part, EncodedPart)
        table = pq.read_table(pa.BufferReader(part.data))
        if "ingested_at" in table.column_names:
            table = table.drop_columns(["ingested_at"])
        rows = [
            {k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for row in table.to_pylist()
        ]
        found.append((part.table, part.sources, table.schema, table.schema.metadata, rows))
    return found


def assert_as_alone(task: Task) -> None:
    with np.errstate(invalid="ignore"):  # inf - inf, in both alike
        together, alone = process(task), one_by_one(task)
    assert together.outcomes == alone.outcomes
    assert _contents(together) == _contents(alone)


_CELL = st.one_of(
    st.integers(-1000, 1000).map(str), st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.sampled_from(["", "nan", "inf", "-inf", "1e3", "abc", "dev-1", "x y", "2026-01-02"]),
)
_HEADERS = [b"timestamp,device,v\n", b"timestamp,v,w,v\n", b"a,b\n"]


@st.composite
def _tasks(draw: st.DrawFn) -> Task:
    """Files of a few headers (so their columns differ), one-row files, files whose text
    column holds words or numbers, ragged and header-only files, files routed to two
    tables, files delimited by commas, `;` or tabs, in any order."""
    jobs = []
    for i in range(draw(st.integers(1, 12))):
        header = draw(st.sampled_from(_HEADERS))
        width = header.count(b",") + 1
        rows = draw(st.lists(st.lists(_CELL, min_size=width, max_size=width), max_size=5))
        if rows and draw(st.booleans()) and draw(st.booleans()):
            rows[-1] = rows[-1][:-1]  # ragged
        delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
        header = header.replace(b",", delimiter.encode())
        body = b"".join(delimiter.join(row).encode() + b"\n" for row in rows)
        table = draw(st.sampled_from(["records", "records", "sensors"]))
        jobs.append(job(f"f{i}.csv", header + body, table))
    specs = (TableSpec("records"), TableSpec("sensors", hints=(("w", "float64"),)))
    return Task(tuple(jobs), Features(), specs=specs)


@settings(max_examples=150, deadline=None)
@given(_tasks())
def test_files_featurised_in_runs_give_what_each_gives_alone(task: Task) -> None:
    assert_as_alone(task)


def test_a_task_of_files_of_one_header_is_one_run_and_as_each_alone() -> None:
    jobs = tuple(
        job(f"f{i}.csv", b"timestamp,device,v\n" + b"%d,dev-%d,%d.5\n" % (i, i, i) * (i % 3 + 1))
        for i in range(20)
    )
    (run,) = runs(parse_groups(jobs), jobs).values()
    assert [index for index, _, _ in run.members] == list(range(20))
    assert_as_alone(Task(jobs, Features()))


def test_a_file_between_that_is_parsed_alone_splits_the_run_and_keeps_its_place() -> None:
    jobs = (
        job("a.csv", b"id,v\nabc,1\n"),
        job("b.csv", b"id,v\ndef,2\n"),
        job("numbers.csv", b"id,v\n3,3\n"),  # its id column is numbers alone
        job("quoted.csv", b'id,v\n"ghi",4\n'),
        job("c.csv", b"id,v\njkl,5\n"),
    )
    found = runs(parse_groups(jobs), jobs)
    assert {first: [m[0] for m in run.members] for first, run in found.items()} == {
        0: [0, 1], 4: [4],
    }
    assert_as_alone(Task(jobs, Features()))


def test_a_reserved_column_fails_every_file_of_a_run_on_its_own() -> None:
    jobs = tuple(job(f"f{i}.csv", b"source_file,v\nx,%d\n" % i) for i in range(3))
    result = process(Task(jobs, Features()))
    assert [o.failure.error if o.failure else None for o in result.outcomes] == ["DecodeError"] * 3
    assert_as_alone(Task(jobs, Features()))
