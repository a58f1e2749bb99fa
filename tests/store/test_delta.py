"""`format = "delta"`: every table is a Delta table that deltalake, Polars and pandas read,
with the same rows as the plain-Parquet glob, through drift, compaction and time travel."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

deltalake = pytest.importorskip("deltalake")
pl = pytest.importorskip("polars")

from ..conftest import FAST, Folder, write_csv  # noqa: E402
from ..delta_read import local, read_delta  # noqa: E402
from ..invariants import check_delta  # noqa: E402

DELTA = {**FAST, "output": {"flush_s": 0.2, "format": "delta"}}


def _counts(table: pa.Table) -> dict[str, int]:
    grouped = table.group_by("source_file").aggregate([("source_file", "count")])
    return dict(zip(grouped["source_file"].to_pylist(),
                    grouped["source_file_count"].to_pylist(), strict=True))


def _glob_counts(folder: Folder, table: str) -> dict[str, int]:
    return {f: n for f, n in folder.query(f"SELECT source_file, count(*) FROM {table} GROUP BY 1")}


def _ledger_inputs(folder: Folder) -> dict[str, int]:
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        return dict(db.execute("SELECT path, rows FROM files WHERE state = 'ingested'"))


def _check_readers(folder: Folder, expected: dict[str, int]) -> None:
    """Each reader of each table: the rows of the glob reading, and of the inputs."""
    for table in ("records", "features"):
        path = str(folder.output / table)
        by_delta = read_delta(path)
        by_polars = pl.read_delta(path)
        by_pandas = deltalake.DeltaTable(path).to_pandas(filesystem=local(path))
        glob = _glob_counts(folder, table)
        assert _counts(by_delta) == glob
        assert dict(by_polars.group_by("source_file").len().iter_rows()) == glob
        assert by_pandas.groupby("source_file").size().to_dict() == glob
        assert len(by_delta) == len(by_polars) == len(by_pandas)
        if table == "records":
            assert glob == expected
        else:
            assert set(glob) == set(expected)
        assert deltalake.DeltaTable(path).count() == len(by_delta)  # from the add stats


def test_every_table_reads_as_delta_with_the_glob_rows_and_the_inputs(folder: Folder) -> None:
    folder.write_config(**DELTA)
    expected = {}
    for i in range(4):
        write_csv(folder.drop / f"s{i}.csv", 50 + i, seed=i)
        expected[f"s{i}.csv"] = 50 + i
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    _check_readers(folder, expected)
    assert _ledger_inputs(folder) == expected
    log = deltalake.DeltaTable(str(folder.output / "records"))
    assert log.transaction_version("ingest") == log.version() + 1  # one commit per batch


def test_add_actions_carry_statistics_from_the_footers(folder: Folder) -> None:
    folder.write_config(**DELTA)
    values = write_csv(folder.drop / "a.csv", 100, seed=3)
    assert folder.ingest("once").returncode == 0
    adds = pa.table(deltalake.DeltaTable(str(folder.output / "records"))
                    .get_add_actions(flatten=True))
    assert adds["num_records"].to_pylist() == [100]
    finite = values[:, 0][~pa.compute.is_nan(pa.array(values[:, 0])).to_numpy(False)]
    assert adds["min.ch0"][0].as_py() == pytest.approx(finite.min())
    assert adds["max.ch0"][0].as_py() == pytest.approx(finite.max())
    assert adds["null_count.ch0"][0].as_py() == int(len(values) - len(finite))


def test_a_timestamp_at_the_end_of_time_is_committed_and_its_file_left_unbounded(
    folder: Folder,
) -> None:
    # Its maximum, rounded up to Delta's milliseconds, was past datetime.max: every commit
    # of the file failed with an OverflowError, and `once` left it uncommitted.
    folder.write_config(**DELTA)
    (folder.drop / "a.jsonl").write_text(
        '{"t": "2024-01-01T00:00:00", "v": 1}\n{"t": "9999-12-31T23:59:59.999999", "v": 2}\n'
    )
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    path = str(folder.output / "records")
    rows = read_delta(path).sort_by("v")
    assert rows["t"].to_pylist() == [
        dt.datetime(2024, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    ]
    adds = pa.table(deltalake.DeltaTable(path).get_add_actions(flatten=True))
    assert adds["num_records"].to_pylist() == [2]
    bounds = [n for n in adds.column_names if n.startswith(("min.", "max."))]
    assert all(adds[name][0].as_py() is None for name in bounds), adds.to_pylist()
    filtered = deltalake.DeltaTable(path).to_pyarrow_dataset(filesystem=local(path)).to_table(
        filter=pa.compute.field("t") > pa.scalar(dt.datetime(9999, 1, 1), pa.timestamp("us"))
    )
    assert filtered["v"].to_pylist() == [2]


@pytest.mark.parametrize("removed", ["oldest", "all"])
def test_a_part_removed_by_hand_is_left_out_of_the_log_at_the_next_start(
    folder: Folder, removed: str
) -> None:
    # The log went on naming it: every reader failed at the file, and every later start
    # with a FileNotFoundError, until a ledger rebuild.
    folder.write_config(**DELTA)
    for name in ("a.csv", "b.csv"):
        write_csv(folder.drop / name, 20, seed=len(name) + ord(name[0]))
        assert folder.ingest("once").returncode == 0
    parts = sorted(folder.parts("records"))
    assert len(parts) == 2
    gone = parts[:1] if removed == "oldest" else parts
    for part in gone:
        part.unlink()
    write_csv(folder.drop / "c.csv", 30, seed=9)

    done = folder.ingest("once")

    assert done.returncode == 0, done.stderr
    for part in gone:
        assert f"{part} is in the ledger but not on disk: left out of records's Delta log" in (
            done.stderr
        )
    expected = {"c.csv": 30} if removed == "all" else {"b.csv": 20, "c.csv": 30}
    assert _counts(read_delta(folder.output / "records")) == expected
    assert _glob_counts(folder, "records") == expected
    assert pl.read_delta(str(folder.output / "records")).height == sum(expected.values())


def test_drift_is_a_schema_change_in_the_rewrite_commit(folder: Folder) -> None:
    folder.write_config(**DELTA)
    (folder.drop / "a.csv").write_text("timestamp,x\n1,1\n2,2\n")
    assert folder.ingest("once").returncode == 0
    (folder.drop / "b.csv").write_text("timestamp,x,y\n3,1.5,z\n")
    assert folder.ingest("once").returncode == 0
    path = str(folder.output / "records")
    table = deltalake.DeltaTable(path)
    fields = {f.name: f.type for f in pa.schema(table.schema().to_arrow())}
    assert fields["x"] == pa.float64() and fields["y"] == pa.string()
    rows = read_delta(path).sort_by("timestamp")
    assert rows["x"].to_pylist() == [1.0, 2.0, 1.5]
    assert pl.read_delta(path).height == 3
    _check_readers(folder, {"a.csv": 2, "b.csv": 1})
    # The first commit had the schema of its time; the rewrite replaced every part with it.
    first = deltalake.DeltaTable(path, version=0)
    assert pa.schema(first.schema().to_arrow()).field("x").type == pa.int64()
    assert table.version() == 2 and table.transaction_version("ingest") == 3


def test_dates_widened_to_timestamps_make_a_table_every_reader_still_opens(
    folder: Folder,
) -> None:
    """A naive timestamp is `timestamp_ntz` to Delta, which readers open only with the
    table feature of that name: a table of dates that widens to timestamps gains it."""
    folder.write_config(**DELTA)
    (folder.drop / "a.csv").write_text("id,day\n1,2024-01-01\n")
    assert folder.ingest("once").returncode == 0
    path = str(folder.output / "records")
    assert pa.schema(deltalake.DeltaTable(path).schema().to_arrow()).field("day").type == (
        pa.date32()
    )
    (folder.drop / "b.jsonl").write_text('{"id": 2, "day": "2024-02-01T10:00:00"}\n')
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    table = deltalake.DeltaTable(path)
    assert "timestampNtz" in (table.protocol().reader_features or [])
    rows = read_delta(path).sort_by("id")
    assert rows["day"].to_pylist() == [dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 1, 10)]
    assert pl.read_delta(path).height == 2
    _check_readers(folder, {"a.csv": 1, "b.jsonl": 1})
    (folder.drop / "c.csv").write_text("id,day\n3,2024-03-01 09:30:00\n")
    again = folder.ingest("once")
    assert again.returncode == 0, again.stderr
    assert read_delta(path)["day"].to_pylist().count(dt.datetime(2024, 3, 1, 9, 30)) == 1


def test_every_type_a_file_can_bring_is_one_a_delta_table_holds(folder: Folder) -> None:
    """A Parquet input's durations, times of day, half floats, wide decimals, fixed-width
    binary and nested columns: the table takes each as a type Delta holds, and the log reads the
    values the part files hold (a commit Delta refused would be retried for ever)."""
    folder.write_config(**DELTA)
    pq.write_table(pa.table({
        "id": pa.array([1, 2], pa.uint8()),
        "took": pa.array([1_500_000, None], pa.duration("ns")),
        "clock": pa.array([45_296, 0], pa.time32("s")),
        "half": pa.array([1.5, None], pa.float16()),
        "wide": pa.array([decimal.Decimal("1.50"), None], pa.decimal256(40, 2)),
        "code": pa.array([b"ab", b"cd"], pa.binary(2)),
        "laps": pa.array([[1_000], []], pa.list_(pa.duration("ms"))),
        "at": pa.array([{"t": 1}, None], pa.struct([("t", pa.time64("us"))])),
    }), folder.drop / "a.parquet")
    done = folder.ingest("once", timeout=60)
    assert done.returncode == 0, done.stderr
    path = str(folder.output / "records")
    rows = read_delta(path).sort_by("id").drop_columns(["source_sha256", "ingest_date"])
    rows = rows.to_pylist()
    assert rows == [
        # Parquet holds seconds as milliseconds; a duration is microseconds.
        {"id": 1, "took": 1_500, "clock": "12:34:56.000", "half": 1.5, "wide": "1.50",
         "code": b"ab", "laps": [1_000_000], "at": {"t": "00:00:00.000001"},
         "source_file": "a.parquet", "_rescued_data": None},
        {"id": 2, "took": None, "clock": "00:00:00.000", "half": None, "wide": None,
         "code": b"cd", "laps": [], "at": None, "source_file": "a.parquet",
         "_rescued_data": None},
    ]
    assert rows == folder_rows(folder)


def test_nested_fields_named_in_another_case_are_one_field_a_delta_table_holds(
    folder: Folder,
) -> None:
    """`{"m": {"x": 1}}` then `{"m": {"X": 2}}`: Delta refuses two fields whose names
    differ only in case, so the second file's `X` is the table's `x`."""
    folder.write_config(**DELTA)
    (folder.drop / "a.jsonl").write_bytes(b'{"id": 1, "m": {"x": 1, "z": null}}\n')
    assert folder.ingest("once", timeout=60).returncode == 0
    (folder.drop / "b.jsonl").write_bytes(b'{"id": 2, "m": {"X": 2, "z": [3]}}\n')
    done = folder.ingest("once", timeout=60)
    assert done.returncode == 0, done.stderr
    rows = read_delta(str(folder.output / "records")).sort_by("id").select(["id", "m"])
    assert rows.to_pylist() == [
        {"id": 1, "m": {"x": 1, "z": None}}, {"id": 2, "m": {"x": 2, "z": [3]}},
    ]


def folder_rows(folder: Folder) -> list[dict[str, object]]:
    table = pq.read_table(folder.parts("records"), partitioning=None).sort_by("id")
    return table.drop_columns(["source_sha256"]).to_pylist()


def test_compaction_is_one_commit_without_data_change(folder: Folder) -> None:
    folder.write_config(**DELTA)
    expected = {}
    for i in range(5):
        write_csv(folder.drop / f"s{i}.csv", 20, seed=i)
        expected[f"s{i}.csv"] = 20
        assert folder.ingest("once").returncode == 0
    path = folder.output / "records"
    before = deltalake.DeltaTable(str(path)).version()
    assert len(folder.parts("records")) == 5
    done = folder.ingest("compact")
    assert done.returncode == 0, done.stderr
    table = deltalake.DeltaTable(str(path))
    assert table.version() == before + 1
    assert len(table.file_uris()) == len(folder.parts("records")) == 1
    entry = path / "_delta_log" / f"{table.version():020d}.json"
    actions = [json.loads(line) for line in entry.read_text().splitlines()]
    changes = [a[k]["dataChange"] for a in actions for k in ("add", "remove") if k in a]
    assert len(changes) == 6 and not any(changes)
    assert table.transaction_version("ingest") == before + 2
    _check_readers(folder, expected)
    shown = folder.ingest("status", "--json")
    assert shown.returncode == 0, shown.stderr
    records = json.loads(shown.stdout)["tables"]["records"]
    assert (records["delta_version"], records["delta_txn"]) == (before + 1, before + 2)
    text = folder.ingest("status").stdout
    delta = f"Delta v{before + 1} (txn {before + 2})"
    assert f"table records: schema v1, 7 columns, 5 files, {delta}" in text


def test_time_travel_shows_what_the_ledger_had_committed(folder: Folder) -> None:
    folder.write_config(**DELTA)
    for i in range(3):
        write_csv(folder.drop / f"s{i}.csv", 10 + i, seed=i)
        assert folder.ingest("once").returncode == 0
    path = str(folder.output / "records")
    for version in range(3):
        table = read_delta(path, version)
        assert _counts(table) == {f"s{i}.csv": 10 + i for i in range(version + 1)}


def test_plain_globs_skip_the_log_and_its_checkpoints(folder: Folder, tmp_path: Path) -> None:
    folder.write_config(**DELTA)
    write_csv(folder.drop / "a.csv", 10, seed=1)
    assert folder.ingest("once").returncode == 0
    table = deltalake.DeltaTable(str(folder.output / "records"))
    table.create_checkpoint()
    assert list((folder.output / "records" / "_delta_log").glob("*.parquet"))
    assert folder.query("SELECT count(*) FROM records") == [(10,)]
    assert read_delta(folder.output / "records").num_rows == 10
    # The glob the README warns against picks the checkpoint up as if it were a part.
    everything = list((folder.output / "records").rglob("*.parquet"))
    assert len(everything) == len(folder.parts("records")) + 1


def test_delta_without_the_package_exits_2_saying_how_to_install_it(folder: Folder) -> None:
    folder.write_config(**DELTA)
    hidden = (
        "import sys; sys.modules['deltalake'] = None; from ingest.cli import main;"
        f" sys.exit(main('once', '--config', {str(folder.config)!r}))"
    )
    done = subprocess.run([sys.executable, "-c", hidden], capture_output=True, text=True,
                          cwd=folder.root, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        """ingest: [output] format = "delta" needs the deltalake package:"""
        """ pip install 'ingest[delta]'"""
    ]


def test_ledger_rebuild_keeps_the_log_and_sets_aside_parts_it_lacks(folder: Folder) -> None:
    folder.write_config(**DELTA)
    expected = {}
    for i in range(2):
        write_csv(folder.drop / f"s{i}.csv", 10 + i, seed=i)
        expected[f"s{i}.csv"] = 10 + i
        assert folder.ingest("once").returncode == 0
    # A part renamed into place whose Delta commit never happened, and a lost ledger.
    (part,) = [p for p in folder.parts("records") if "s1.csv" in str(pq.read_metadata(p).metadata)]
    stray = part.with_name("part-20000101T000000-abcdefabcdef-0.parquet")
    shutil.copy(part, stray)
    (folder.output / "_ingest" / "ledger.sqlite").unlink()
    done = folder.ingest("ledger", "rebuild")
    assert done.returncode == 0, done.stderr
    assert not stray.exists()
    assert (folder.output / "records" / "_delta_log").is_dir()
    assert folder.ingest("once").returncode == 0
    _check_readers(folder, expected)


def test_readme_delta_example_runs_against_delta_output(folder: Folder) -> None:
    from ..conftest import ROOT

    text = (ROOT / "README.md").read_text()
    section = text.split("### Delta tables", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    folder.write_config(**DELTA)
    write_csv(folder.drop / "a.csv", 30, seed=1)
    assert folder.ingest("once").returncode == 0
    done = subprocess.run([sys.executable, "-c", example], cwd=folder.root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "30", "30", "3", "1", "30"], done.stdout


def test_switching_a_parquet_output_to_delta_logs_every_committed_part(folder: Folder) -> None:
    write_csv(folder.drop / "old.csv", 12, seed=1)
    assert folder.ingest("once").returncode == 0
    assert not (folder.output / "records" / "_delta_log").exists()
    folder.write_config(**DELTA)
    write_csv(folder.drop / "new.csv", 7, seed=2)
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    _check_readers(folder, {"old.csv": 12, "new.csv": 7})


def test_switching_a_delta_output_to_parquet_and_back_loses_no_row_even_by_a_rebuild(
    folder: Folder,
) -> None:
    # The log stayed with plain Parquet: Delta readers missed the rows written since, and
    # a ledger rebuilt after the switch back trusted it and set those parts aside.
    folder.write_config(**DELTA)
    write_csv(folder.drop / "a.csv", 12, seed=1)
    assert folder.ingest("once").returncode == 0
    folder.write_config(**{**DELTA, "output": {"flush_s": 0.2, "format": "parquet"}})
    write_csv(folder.drop / "b.csv", 7, seed=2)
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    log_kept = (folder.output / "records" / "_delta_log").exists()
    folder.write_config(**DELTA)
    rebuilt = folder.ingest("ledger", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    write_csv(folder.drop / "c.csv", 5, seed=3)
    assert folder.ingest("once").returncode == 0
    _check_readers(folder, {"a.csv": 12, "b.csv": 7, "c.csv": 5})
    assert "its Delta log is not kept" in done.stderr and not log_kept


def test_after_a_compaction_history_reads_from_it_on_and_vacuum_finds_nothing(
    folder: Folder,
) -> None:
    """Versions from the compaction on read exactly what the ledger had committed then;
    an earlier one names parts the compaction removed, and fails loudly rather than
    returning other rows. A downstream team's VACUUM, even a full one with no retention,
    deletes nothing of ours: every part on disk is in the snapshot, the removed ones
    are gone already."""
    folder.write_config(**DELTA)
    for i in range(3):
        write_csv(folder.drop / f"s{i}.csv", 10 + i, seed=i)
        assert folder.ingest("once").returncode == 0
    path = folder.output / "records"
    done = folder.ingest("compact")
    assert done.returncode == 0, done.stderr
    compacted = deltalake.DeltaTable(str(path)).version()
    write_csv(folder.drop / "s3.csv", 13, seed=3)
    assert folder.ingest("once").returncode == 0
    assert _counts(read_delta(path, compacted)) == {f"s{i}.csv": 10 + i for i in range(3)}
    assert _counts(read_delta(path)) == {f"s{i}.csv": 10 + i for i in range(4)}
    with pytest.raises(OSError, match="part-"):
        read_delta(path, compacted - 1)

    table = deltalake.DeltaTable(str(path))
    for full in (False, True):
        listed = table.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False,
                              full=full)
        assert len(listed) == 3  # the compacted-away parts: named by the log, gone from disk
        assert not any((path / rel).exists() for rel in listed)
        table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False,
                     full=full)
        table = deltalake.DeltaTable(str(path))
    # The vacuum's own commits in the log (no txn of ours) do not stop the next commit.
    assert table.version() > compacted + 1
    write_csv(folder.drop / "s4.csv", 14, seed=4)
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    _check_readers(folder, {f"s{i}.csv": 10 + i for i in range(5)})
    check_delta(folder)


def test_a_log_made_with_a_weeks_tombstones_is_given_an_hours_at_start_up(
    folder: Folder,
) -> None:
    """A table made by a release that kept tombstones 7 days (every checkpoint carried a
    week of compactions' removed parts) gets this release's properties at the next
    start, in a commit of its own that leaves its txn, files and rows as they were."""
    folder.write_config(**DELTA)
    write_csv(folder.drop / "a.csv", rows=5, seed=1)
    assert folder.ingest("once").returncode == 0
    path = str(folder.output / "records")
    deltalake.DeltaTable(path).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 7 days"}
    )
    before = deltalake.DeltaTable(path)
    txn, rows = before.transaction_version("ingest"), read_delta(path).num_rows

    write_csv(folder.drop / "b.csv", rows=3, seed=2)
    again = folder.ingest("once")

    assert again.returncode == 0, again.stderr
    assert ("table records: Delta log properties set:"
            " delta.deletedFileRetentionDuration = interval 1 hour") in again.stderr
    after = deltalake.DeltaTable(path)
    assert after.metadata().configuration["delta.deletedFileRetentionDuration"] == (
        "interval 1 hour"
    )
    assert after.transaction_version("ingest") == txn + 1, "b.csv's commit, nothing else"
    assert read_delta(path).num_rows == rows + 3
    check_delta(folder)


def test_statistics_an_older_release_shifted_past_a_nested_column_are_written_again(
    folder: Folder,
) -> None:
    """A release before delta.STATS_VERSION gave a column after a nested one another
    Parquet column's statistics (here `t` took `o.b`'s null count): deltalake then read
    `t` null. The next start adds every part again with its own, once."""
    folder.write_config(**DELTA)
    (folder.drop / "a.jsonl").write_bytes(b'{"o": {"a": 1, "b": null}, "t": 5}\n')
    assert folder.ingest("once", timeout=60).returncode == 0
    path = str(folder.output / "records")
    entry = folder.output / "records" / "_delta_log" / f"{0:020d}.json"
    actions = [json.loads(line) for line in entry.read_text().splitlines()]
    for action in actions:
        if "add" in action:
            stats = json.loads(action["add"]["stats"])
            stats["nullCount"]["t"] = 1
            action["add"]["stats"] = json.dumps(stats)
    entry.write_text("".join(json.dumps(action) + "\n" for action in actions))
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        db.execute("DELETE FROM meta WHERE key = 'delta_statistics'")
    assert read_delta(path, columns=["t"]).column("t").to_pylist() == [None]

    (folder.drop / "b.jsonl").write_bytes(b'{"o": {"a": 2, "b": 3}, "t": 6}\n')
    again = folder.ingest("once", timeout=60)

    assert again.returncode == 0, again.stderr
    assert "records's Delta statistics written again for its 1 parts" in again.stderr
    # The repair is adds alone, without a data change: a remove of the same path beside
    # them would leave a reader to choose which comes first.
    repaired = entry.with_name(f"{1:020d}.json").read_text()
    repair = [json.loads(line) for line in repaired.splitlines()]
    assert not [a for a in repair if "remove" in a]
    assert [a["add"]["dataChange"] for a in repair if "add" in a] == [False]
    assert sorted(read_delta(path, columns=["t"]).column("t").to_pylist()) == [5, 6]
    adds = pa.table(deltalake.DeltaTable(path).get_add_actions(flatten=True)).to_pydict()
    assert adds["null_count.t"] == [0, 0]
    check_delta(folder)
    (folder.drop / "c.jsonl").write_bytes(b'{"o": {"a": 3, "b": 4}, "t": 7}\n')
    last = folder.ingest("once", timeout=60)
    assert last.returncode == 0 and "written again" not in last.stderr, last.stderr


def test_a_log_kept_a_week_is_given_an_hour_at_start_up_and_its_old_entries_go(
    folder: Folder,
) -> None:
    """A table made by a release that kept log entries 7 days (a week of a commit a second
    is 600,000 entries, which every commit lists) is given an hour at the next start, and
    the entries older than that go with that commit, but for the checkpoint the oldest
    version of the hour is read from."""
    folder.write_config(**DELTA)
    for seed, name in enumerate(("a", "b")):
        write_csv(folder.drop / f"{name}.csv", rows=5, seed=seed)
        assert folder.ingest("once").returncode == 0
    path = str(folder.output / "records")
    log = folder.output / "records" / "_delta_log"
    deltalake.DeltaTable(path).create_checkpoint()
    for entry in log.iterdir():  # as if made two hours ago
        then = entry.stat().st_mtime - 7200
        os.utime(entry, (then, then))
    deltalake.DeltaTable(path).alter.set_table_properties(
        {"delta.logRetentionDuration": "interval 7 days"}
    )
    first = log / f"{0:020d}.json"
    assert first.exists()
    txn, rows = deltalake.DeltaTable(path).transaction_version("ingest"), read_delta(path).num_rows

    write_csv(folder.drop / "c.csv", rows=3, seed=3)
    again = folder.ingest("once")

    assert again.returncode == 0, again.stderr
    assert ("table records: Delta log properties set:"
            " delta.logRetentionDuration = interval 1 hour") in again.stderr
    assert not first.exists(), "older than an hour, before the checkpoint"
    after = deltalake.DeltaTable(path)
    assert after.metadata().configuration["delta.logRetentionDuration"] == "interval 1 hour"
    assert after.transaction_version("ingest") == txn + 1
    assert read_delta(path).num_rows == rows + 3
    check_delta(folder)


def test_a_committed_part_keeps_no_intent_in_the_ledger(folder: Folder) -> None:
    """A part's Delta intent (its inputs' records, what finishes it if a crash leaves it
    pending with the log holding it) is let go of once it is committed: kept, it doubled
    what the ledger holds of every input, for ever."""
    folder.write_config(**DELTA)
    for i in range(3):
        write_csv(folder.drop / f"f{i}.csv", rows=5, seed=i)
    assert folder.ingest("once").returncode == 0
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        states = db.execute(
            "SELECT state, intent IS NULL, count(*) FROM parts GROUP BY 1, 2"
        ).fetchall()
    assert states and all(state == "committed" and cleared for state, cleared, _ in states)
