"""task.process: a Task in, a TaskResult out; bad input comes back as a Failure, never raised.

Each test runs a task of one file and reads its encoded part files back.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.compute.task import RESERVED_COLUMNS, process
from ingest.config import Features
from ingest.jobs import EncodedPart, Failure, Job, TableSpec, Task, WrittenPart
from ingest.partfile import to_parquet

ROOT = Path(__file__).resolve().parents[2]
CSV = b"timestamp,temperature,humidity\n1,20.5,40.0\n2,,41.5\n3,21.0,42.0\n"


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make tests/plugin_sets.py importable as `tests.plugin_sets`, like a user's package."""
    monkeypatch.syspath_prepend(str(ROOT))
    yield


def job(
    name: str,
    data: bytes,
    *,
    sets: tuple[str, ...] = ("summary",),
    window: int = 0,
    tables: tuple[str, ...] = ("records", "features"),
) -> Task:
    one = Job(source_file=name, sha256=hashlib.sha256(data).hexdigest(), data=data)
    return Task((one,), Features(sets=sets, window=window), tables)


@dataclass
class One:
    """A one-file task's outcome, with its part files read back."""

    source_file: str
    sha256: str
    rows: int
    failure: Failure | None
    records: pa.Table | None
    features: pa.Table | None


def run(task: Task) -> One:
    result = process(task)
    (outcome,) = result.outcomes
    tables = {p.table: pq.read_table(pa.BufferReader(p.data)) for p in result.parts}
    assert len(tables) == len(result.parts), "one part per table for a one-file task"
    return One(
        outcome.source_file, outcome.sha256, outcome.rows, outcome.failure,
        tables.get("records"), tables.get("features"),
    )


def table_of(table: pa.Table | None) -> pa.Table:
    assert table is not None
    return table


def failure_of(outcome: One) -> Failure:
    assert outcome.failure is not None, "expected a Failure"
    assert outcome.records is None and outcome.features is None
    return outcome.failure


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    sink = io.BytesIO()
    np.savez(sink, **arrays)
    return sink.getvalue()


# --- success ----------------------------------------------------------------------------


def test_records_round_trip_with_source_file_and_sha256_added() -> None:
    j = job("site/a.csv", CSV)
    sha256 = j.jobs[0].sha256
    outcome = run(j)
    assert outcome.failure is None
    assert (outcome.source_file, outcome.sha256, outcome.rows) == ("site/a.csv", sha256, 3)
    records = table_of(outcome.records)
    assert records.column_names == [
        "timestamp", "temperature", "humidity", "source_file", "source_sha256", "_rescued_data",
    ]
    assert records.column("_rescued_data").null_count == 3
    assert records.schema.field("source_file").type == pa.string()
    assert records.schema.field("source_sha256").type == pa.string()
    assert records.column("source_file").to_pylist() == ["site/a.csv"] * 3
    assert records.column("source_sha256").to_pylist() == [sha256] * 3
    assert records.column("temperature").to_pylist() == [20.5, None, 21.0]


def test_features_round_trip_one_row_per_numeric_column() -> None:
    j = job("a.csv", CSV)
    table = table_of(run(j).features)
    rows = {r["source_column"]: r for r in table.to_pylist()}
    assert set(rows) == {"temperature", "humidity"}  # timestamp is the time column
    assert rows["temperature"]["count"] == 2
    assert rows["temperature"]["null_count"] == 1
    assert rows["humidity"]["mean"] == pytest.approx(41.166666666666664, rel=1e-12)
    assert {r["source_sha256"] for r in rows.values()} == {j.jobs[0].sha256}
    assert {r["source_file"] for r in rows.values()} == {"a.csv"}


def test_window_from_the_job_reaches_the_features() -> None:
    data = b"x\n" + b"".join(b"%d\n" % i for i in range(10))
    table = table_of(run(job("w.csv", data, window=4)).features)
    assert table.column("window").to_pylist() == [0, 1, 2]
    assert table.column("count").to_pylist() == [4, 4, 2]


@pytest.mark.parametrize(
    ("name", "data", "rows"),
    [
        ("a.csv.gz", gzip.compress(CSV), 3),
        ("a.jsonl", b'{"v": 1.5}\n{"v": 2.5}\n', 2),
        ("a.npz", _npz(v=np.arange(5.0), w=np.arange(5)), 5),
        ("a.parquet", _parquet(pa.table({"v": [1.0, 2.0], "s": ["a", "b"]})), 2),
    ],
    ids=["csv.gz", "jsonl", "npz", "parquet"],
)
def test_each_format_gives_records_and_features(name: str, data: bytes, rows: int) -> None:
    outcome = run(job(name, data))
    assert outcome.failure is None
    assert outcome.rows == rows
    assert table_of(outcome.records).num_rows == rows
    assert table_of(outcome.features).num_rows >= 1


def test_only_the_requested_tables_are_returned() -> None:
    only_features = run(job("a.csv", CSV, tables=("features",)))
    assert only_features.records is None
    assert table_of(only_features.features).num_rows == 2
    only_records = run(job("a.csv", CSV, tables=("records",)))
    assert only_records.features is None
    assert table_of(only_records.records).num_rows == 3


def test_to_parquet_round_trips_a_table_with_microsecond_timestamps() -> None:
    table = pa.table({"a": [1, None], "t": pa.array([1, 2], pa.timestamp("ns", tz="UTC"))})
    back = pq.read_table(pa.BufferReader(to_parquet(table, "zstd", {b"k": b"v"})))
    assert back.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert back.column("a").to_pylist() == [1, None]
    assert back.schema.metadata[b"k"] == b"v"


def test_plugin_set_columns_reach_the_features(plugins: None) -> None:
    outcome = run(job("a.csv", CSV, sets=("summary", "tests.plugin_sets:spread")))
    table = table_of(outcome.features)
    assert "spread" in table.column_names and "mean" in table.column_names


# --- failures are data ------------------------------------------------------------------


def test_ragged_csv_is_a_failure_with_type_message_and_line() -> None:
    outcome = run(job("bad.csv", b"a,b\n1,2\n3\n4,5\n"))
    failure = failure_of(outcome)
    assert failure.error == "DecodeError"
    assert "Expected 2 columns" in failure.message
    assert failure.line == 3
    assert outcome.rows == 0


def test_bad_json_line_is_a_failure_with_its_line() -> None:
    failure = failure_of(run(job("bad.jsonl", b'{"a": 1}\n{"a": }\n')))
    assert (failure.error, failure.line) == ("DecodeError", 2)


def test_truncated_gzip_is_a_failure_with_a_byte_offset() -> None:
    failure = failure_of(run(job("cut.csv.gz", gzip.compress(CSV)[:-5])))
    assert failure.error == "DecodeError"
    assert failure.offset == 0
    assert failure.line is None


def test_unknown_extension_is_a_failure() -> None:
    assert failure_of(run(job("notes.txt", b"hello"))).error == "DecodeError"


def test_any_decoder_exception_is_a_failure_not_a_raise() -> None:
    # A truncated .npz makes zipfile raise its own error; it still comes back as data.
    outcome = run(job("cut.npz", _npz(v=np.arange(10.0))[:-10]))
    assert failure_of(outcome).message


@pytest.mark.parametrize("column", RESERVED_COLUMNS)
def test_reserved_column_name_in_the_input_is_a_failure(column: str) -> None:
    data = f"x,{column}\n1,a\n".encode()
    failure = failure_of(run(job("clash.csv", data)))
    assert failure.error == "DecodeError"
    assert repr(column) in failure.message


def test_source_file_column_in_parquet_input_is_a_failure() -> None:
    data = _parquet(pa.table({"source_file": ["elsewhere.csv"], "v": [1.0]}))
    assert "source_file" in failure_of(run(job("p.parquet", data))).message


def test_duplicate_column_names_are_made_unique_as_duckdb_does() -> None:
    outcome = run(job("dup.csv", b"a,b,a,a\n1,2,3,4\n"))
    records = table_of(outcome.records)
    assert records.column_names[:4] == ["a", "b", "a_1", "a_2"]
    assert records.column("a_1").to_pylist() == [3]


def test_an_empty_column_name_is_named_by_its_position() -> None:
    outcome = run(job("anon.csv", b"a,,c\n1,2,3\n"))
    assert table_of(outcome.records).column_names[:3] == ["a", "column1", "c"]


def test_rescued_data_is_a_reserved_column_name() -> None:
    failure = failure_of(run(job("r.csv", b"a,_rescued_data\n1,2\n")))
    assert "_rescued_data" in failure.message


def test_plugin_set_that_raises_is_a_failure_not_an_exception(plugins: None) -> None:
    sets = ("summary", "tests.plugin_sets:explode")
    failure = failure_of(run(job("a.csv", CSV, sets=sets)))
    assert failure.error == "ZeroDivisionError"
    assert failure.message == "plugin divided by zero"


def test_plugin_set_from_a_missing_module_is_a_failure() -> None:
    failure = failure_of(run(job("a.csv", CSV, sets=("no_such_module_xyz:fn",))))
    assert failure.error == "ModuleNotFoundError"
    assert "no_such_module_xyz" in failure.message


def test_plugin_set_that_is_not_callable_is_a_failure(plugins: None) -> None:
    failure = failure_of(run(job("a.csv", CSV, sets=("tests.plugin_sets:not_callable",))))
    assert failure.error == "TypeError"


# --- what crosses the process boundary is plain and picklable ---------------------------


def test_task_and_successful_result_round_trip_through_pickle() -> None:
    j = job("a.csv", CSV)
    assert pickle.loads(pickle.dumps(j)) == j
    result = process(j)
    assert pickle.loads(pickle.dumps(result)) == result


def test_failed_result_round_trips_through_pickle() -> None:
    result = process(job("bad.csv", b"a,b\n1\n"))
    assert pickle.loads(pickle.dumps(result)) == result
    assert isinstance(result.outcomes[0].failure, Failure)
    assert result.parts == ()


def test_failure_carries_only_builtins() -> None:
    failure = failure_of(run(job("bad.csv", b"a,b\n1\n")))
    for value in vars(failure).values():
        assert value is None or type(value) in (str, int)


def test_process_is_a_top_level_function_that_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(process)) is process


def test_a_task_of_many_files_makes_one_records_part_per_table_and_isolates_failures() -> None:
    def one(name: str, data: bytes, table: str = "records") -> Job:
        return Job(name, hashlib.sha256(data).hexdigest(), data, table=table)

    jobs = (
        one("a.csv", CSV),
        one("b.csv", CSV.replace(b"20.5", b"19.5")),
        one("c.jsonl", b'{"v": 1.5}\n{"v": 2.5}\n'),
        one("bad.csv", b"a,b\n1,2\n3\n"),
        one("s.csv", b"station,temp\nx,1\n", table="sensors"),
    )
    result = process(Task(jobs, Features()))

    failed = [o.source_file for o in result.outcomes if o.failure is not None]
    assert failed == ["bad.csv"]
    by_table = {p.table: p for p in result.parts}
    assert sorted(by_table) == ["features", "records", "sensors"]
    assert by_table["records"].sources == ("a.csv", "b.csv", "c.jsonl")
    records = pq.read_table(pa.BufferReader(by_table["records"].data))
    assert records.column_names == [
        "timestamp", "temperature", "humidity", "v", "source_file", "source_sha256",
        "_rescued_data",
    ]
    assert records.column("v").to_pylist() == [None] * 6 + [1.5, 2.5]
    features = by_table["features"]
    assert features.sources == ("a.csv", "b.csv", "c.jsonl", "s.csv")
    tables = pq.read_table(pa.BufferReader(features.data)).column("source_table").to_pylist()
    assert tables.count("sensors") == 1 and set(tables) == {"records", "sensors"}
    footer = pq.read_metadata(pa.BufferReader(features.data)).metadata
    assert b"bad.csv" not in footer[b"ingest.sources"]


# --- where the parts go -------------------------------------------------------------------


def _two_files(stage: Path | None) -> Task:
    jobs = tuple(
        Job(name, hashlib.sha256(data).hexdigest(), data)
        for name, data in (("a.csv", CSV), ("c.jsonl", b'{"v": 1.5}\n{"v": 2.5}\n'))
    )
    return Task(jobs, Features(), stage=None if stage is None else str(stage))


def test_a_staged_task_writes_its_parts_where_told_and_they_hold_what_the_bytes_hold(
    tmp_path: Path,
) -> None:
    staged = process(_two_files(tmp_path / "task-1"))
    in_memory = process(_two_files(None))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"task-1-{i}.parquet" for i in range(len(staged.parts))
    ]
    assert staged.outcomes == in_memory.outcomes
    assert len(staged.parts) == 2  # one records part (one table) and one features part
    for written, encoded in zip(staged.parts, in_memory.parts, strict=True):
        assert isinstance(written, WrittenPart) and isinstance(encoded, EncodedPart)
        assert (written.table, written.sources) == (encoded.table, encoded.sources)
        on_disk = pq.read_table(written.path)
        from_bytes = pq.read_table(pa.BufferReader(encoded.data))
        if written.table == "features":
            on_disk, from_bytes = on_disk.drop(["ingested_at"]), from_bytes.drop(["ingested_at"])
        assert on_disk.equals(from_bytes)
        assert pq.read_metadata(written.path).metadata == pq.read_metadata(
            pa.BufferReader(encoded.data)
        ).metadata


def test_a_stage_that_cannot_be_written_sends_the_bytes_back(tmp_path: Path) -> None:
    result = process(_two_files(tmp_path / "gone" / "task-1"))
    assert [o.failure for o in result.outcomes] == [None, None]
    assert len(result.parts) == 2 and all(isinstance(p, EncodedPart) for p in result.parts)
    assert list(tmp_path.iterdir()) == []


def test_files_read_into_one_segment_each_get_their_own_bytes(tmp_path: Path) -> None:
    from ingest import shared

    other = b"timestamp,pressure\n7,1013.5\n"
    segment = shared.create(shared.prefix_for(tmp_path), len(CSV) + len(other))
    assert segment is not None
    try:
        shared.view(segment)[:] = CSV + other
        jobs = (
            Job("a.csv", "", b"", shared=segment.name, size=len(CSV)),
            Job("empty.csv", "", b"", shared=segment.name, size=0, offset=len(CSV)),
            Job("b.csv", "", b"", shared=segment.name, size=len(other), offset=len(CSV)),
        )
        result = process(Task(jobs, Features()))
    finally:
        shared.remove(segment)
    a, empty, b = result.outcomes
    assert (a.sha256, a.rows, a.failure) == (hashlib.sha256(CSV).hexdigest(), 3, None)
    assert empty.sha256 == hashlib.sha256(b"").hexdigest() and empty.failure is not None
    assert (b.sha256, b.rows, b.failure) == (hashlib.sha256(other).hexdigest(), 1, None)


def test_a_job_whose_bytes_are_in_shared_memory_gives_what_the_bytes_give(
    tmp_path: Path,
) -> None:
    from ingest import shared

    segment = shared.create(shared.prefix_for(tmp_path), len(CSV))
    assert segment is not None
    try:
        shared.view(segment)[:] = CSV
        sha = hashlib.sha256(CSV).hexdigest()
        via_segment = run(Task(
            (Job("a.csv", sha, b"", shared=segment.name, size=len(CSV)),), Features()
        ))
        via_bytes = run(Task((Job("a.csv", sha, CSV),), Features()))
    finally:
        shared.remove(segment)
    assert via_segment.failure is None and via_segment.rows == 3
    assert table_of(via_segment.records).equals(table_of(via_bytes.records))


def test_a_job_whose_shared_memory_is_gone_fails_alone_as_input_lost(tmp_path: Path) -> None:
    from ingest import shared

    segment = shared.create(shared.prefix_for(tmp_path), len(CSV))
    assert segment is not None
    name = segment.name
    shared.remove(segment)  # as if /dev/shm were cleared under the service
    sha = hashlib.sha256(CSV).hexdigest()
    result = process(Task((Job("gone.csv", sha, b"", shared=name), Job("b.csv", sha, CSV)),
                          Features()))
    lost, kept = result.outcomes
    assert lost.failure is not None and lost.failure.error == "InputLost"
    assert "drop the file again" in lost.failure.message
    assert kept.failure is None and kept.rows == 3
    assert [p.sources for p in result.parts if p.table == "records"] == [("b.csv",)]


def test_a_header_only_file_in_a_task_does_not_fail_the_files_beside_it() -> None:
    jobs = tuple(
        Job(name, hashlib.sha256(data).hexdigest(), data)
        for name, data in (("empty.csv", b"a,b\n"), ("full.csv", b"a,b\n1,2\n"))
    )
    result = process(Task(jobs, Features()))
    assert [(o.source_file, o.rows, o.failure) for o in result.outcomes] == [
        ("empty.csv", 0, None), ("full.csv", 1, None),
    ]
    (records,) = [p for p in result.parts if p.table == "records"]
    assert records.sources == ("empty.csv", "full.csv")


@pytest.mark.parametrize("written", [
    "1.10", "1e3", "TRUE", "10:30", "2024-01-01T10:00:00", "2024-01-01T10:00:00Z",
    "2024-01-01 10:00:00", "31.12.2024",
])
def test_a_csv_value_bound_for_a_column_its_table_holds_as_text_is_kept_as_written(
    written: str,
) -> None:
    # Read as a number, a flag or a time and cast back to text, it would be spelled anew.
    schema = pa.schema([
        ("id", pa.int64()), ("code", pa.string()), ("source_file", pa.string()),
        ("source_sha256", pa.string()), ("_rescued_data", pa.string()),
    ]).serialize().to_pybytes()
    data = f"id,code\n1,{written}\n2,{written}\n".encode()
    one = Job("b.csv", hashlib.sha256(data).hexdigest(), data)
    result = process(Task((one,), Features(), specs=(TableSpec("records", schema=schema),)))
    [outcome] = result.outcomes
    assert outcome.failure is None
    [part] = [p for p in result.parts if p.table == "records"]
    records = pq.read_table(pa.BufferReader(part.data))  # type: ignore[arg-type]
    assert records.column("code").to_pylist() == [written, written]
    assert records.column("_rescued_data").to_pylist() == [None, None]
    [features] = [p for p in result.parts if p.table == "features"]
    table = pq.read_table(pa.BufferReader(features.data))  # type: ignore[arg-type]
    assert "code" not in table.column("source_column").to_pylist()


@pytest.mark.parametrize("second", [b"id,v\n2,2.5\n", b"id,v,w\n2,2.5,x\n3,3.5,y\n"])
def test_a_features_row_names_its_column_as_the_tasks_part_does(second: bytes) -> None:
    # The first file gives the table `V`; the second's `v` fills it, and its features
    # row names `V`, as a second run's would: a query on `V` finds both files.
    jobs = tuple(
        Job(name, hashlib.sha256(data).hexdigest(), data)
        for name, data in (("a.csv", b"id,V\n1,1.5\n"), ("b.csv", second))
    )
    result = process(Task(jobs, Features()))
    (records,) = [p for p in result.parts if p.table == "records"]
    (features,) = [p for p in result.parts if p.table == "features"]
    assert isinstance(records, EncodedPart) and isinstance(features, EncodedPart)
    assert "v" not in pq.read_schema(pa.BufferReader(records.data)).names
    rows = pq.read_table(pa.BufferReader(features.data)).to_pylist()
    assert {(r["source_file"], r["source_column"]) for r in rows} == {
        ("a.csv", "id"), ("a.csv", "V"), ("b.csv", "id"), ("b.csv", "V"),
    }
