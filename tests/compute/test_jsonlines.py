"""A task's JSON Lines files, parsed up front and featurised in runs, give what each file
gives alone: the same outcomes and errors, rows, schema, features and footers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.compute.jsonlines import parse_jsonl
from ingest.compute.runs import runs
from ingest.compute.task import process
from ingest.config import Features
from ingest.jobs import Job, TableSpec, Task

from .test_runs import assert_as_alone, job

_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-50, 50).map(str),
    st.sampled_from(["", "abc", "dev-1", "1.5", "nan", "2026-01-02", "2026-01-02T03:04:05"]),
)
_KEYS = ["timestamp", "device", "v", "w", "source_file"]


def _line(row: dict[str, object]) -> bytes:
    return json.dumps(row).encode() + b"\n"


@st.composite
def _files(draw: st.DrawFn) -> bytes:
    """A JSON Lines file: rows of a few keys (the keys and their order vary between files
    and between rows), values of one kind per key or mixed; empty, one-row, blank lines,
    a line that is not JSON."""
    keys = draw(st.lists(st.sampled_from(_KEYS), unique=True, max_size=4))
    kinds = {key: draw(_VALUE.map(lambda _: _VALUE)) for key in keys}
    mixed = draw(st.booleans())
    rows = draw(st.lists(
        st.fixed_dictionaries({k: (_VALUE if mixed else kinds[k]) for k in keys}), max_size=6
    ))
    lines = [_line(row) for row in rows]
    if lines and draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), b"\n")
    if lines and draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), b'{"v": 1,\n')
    return b"".join(lines)


@st.composite
def _uniform(draw: st.DrawFn) -> bytes:
    """A file like most of a drop folder's: the same keys in every row, numbers in most."""
    rows = draw(st.integers(0, 4))
    device = draw(st.sampled_from(['"dev-1"', '"2"', "null", "3"]))
    values = draw(st.lists(st.one_of(st.integers(-5, 5), st.floats(-1e3, 1e3)),
                           min_size=rows, max_size=rows))
    return b"".join(
        b'{"timestamp":%d,"device":%s,"v":%s}\n' % (i, device.encode(), json.dumps(v).encode())
        for i, v in enumerate(values)
    )


@st.composite
def _tasks(draw: st.DrawFn) -> Task:
    jobs = []
    for i in range(draw(st.integers(1, 10))):
        data = draw(st.one_of(_files(), _uniform(), _uniform()))
        suffix = draw(st.sampled_from([".jsonl", ".jsonl", ".ndjson", ".csv"]))
        if suffix == ".csv":
            data = b"timestamp,v\n%d,1.5\n" % i
        table = draw(st.sampled_from(["records", "records", "sensors"]))
        jobs.append(job(f"f{i}{suffix}", data, table))
    specs = (TableSpec("records"), TableSpec("sensors", hints=(("w", "float64"),)))
    return Task(tuple(jobs), Features(), specs=specs)


@settings(max_examples=200, deadline=None)
@given(_tasks())
def test_json_lines_files_in_runs_give_what_each_gives_alone(task: Task) -> None:
    assert_as_alone(task)


def _groups(jobs: tuple[Job, ...]) -> list[list[int]]:
    found = runs(parse_jsonl(jobs, (), contextlib.nullcontext), jobs)
    return [[index for index, _, _ in run.members] for run in found.values()]


def test_files_of_one_schema_are_one_run_and_as_each_alone() -> None:
    jobs = tuple(
        job(f"f{i}.jsonl", b'{"timestamp":%d,"device":"dev-%d","v":%d.5}\n' % (i, i, i)
            * (i % 3 + 1))
        for i in range(20)
    )
    assert _groups(jobs) == [list(range(20))]
    assert_as_alone(Task(jobs, Features()))


def test_a_file_of_another_schema_or_a_bad_file_splits_the_run_and_keeps_its_verdict() -> None:
    jobs = (
        job("a.jsonl", b'{"id":"abc","v":1.5}\n'),
        job("b.jsonl", b'{"id":"def","v":2.5}\n'),
        job("ints.jsonl", b'{"id":"ghi","v":3}\n'),  # v is int64 alone
        job("bad.jsonl", b'{"id":"jkl","v":4.5}\n{"id":\n'),
        job("c.jsonl", b'{"id":"mno","v":5.5}\n'),
        job("d.ndjson", b'{"id":"pqr","v":6.5}\n'),
    )
    assert sorted(_groups(jobs)) == [[0, 1], [2], [4, 5]]
    result = process(Task(jobs, Features()))
    failure = result.outcomes[3].failure
    assert failure is not None and failure.error == "DecodeError" and failure.line == 2
    assert [o.rows for o in result.outcomes] == [1, 1, 1, 0, 1, 1]
    assert all(o.dialect is None for o in result.outcomes)
    assert_as_alone(Task(jobs, Features()))


def test_long_files_with_text_that_is_mostly_numbers_keep_their_own_verdicts() -> None:
    # Over 256 rows a file's text columns are judged from a sample, as alone.
    numbers = b"".join(b'{"code":"%d","v":%d.5}\n' % (i, i) for i in range(300))
    words = b"".join(b'{"code":"w%d","v":%d.5}\n' % (i, i) for i in range(300))
    jobs = (job("n1.jsonl", numbers), job("w.jsonl", words), job("n2.jsonl", numbers + b"\n"))
    assert _groups(jobs) == [[0, 1, 2]]
    assert_as_alone(Task(jobs, Features()))


def test_a_reserved_column_fails_every_file_of_a_run_on_its_own() -> None:
    jobs = tuple(job(f"f{i}.jsonl", b'{"source_sha256":"x","v":%d}\n' % i) for i in range(3))
    result = process(Task(jobs, Features()))
    assert [o.failure.error if o.failure else None for o in result.outcomes] == ["DecodeError"] * 3
    assert_as_alone(Task(jobs, Features()))


def test_each_file_is_parsed_in_a_step_of_its_own() -> None:
    """Each file's parse has its own beat and time limit, as its features have."""
    steps: list[int] = []

    @contextlib.contextmanager
    def step() -> Iterator[None]:
        steps.append(len(steps))
        yield

    jobs = (
        job("a.jsonl", b'{"v":1}\n'), job("b.csv", b"v\n1\n"), job("lost.ndjson", b""),
        job("bad.jsonl", b"{\n"), job("c.ndjson", b'{"v":2}\n'),
    )
    groups = parse_jsonl(jobs, {2}, step)
    assert len(steps) == 3  # a, bad and c: b is a CSV, and lost is skipped
    assert [[index for index, _, _ in g.members] for g in groups] == [[0, 4]]
