"""`ingest once` end to end: real files in, real Parquet out, read back with DuckDB."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.aio.canary import NAME as CANARY

from .conftest import SAMPLE_DATA, Folder, appended_to, write_csv

FEATURES = ("count", "null_count", "mean", "std", "min", "max", "p05", "p50", "p95", "rms")


def reference(values: np.ndarray) -> dict[str, float]:
    """The SPEC's summary, computed independently of ingest."""
    v = values[~np.isnan(values)]
    return {
        "count": v.size,
        "null_count": values.size - v.size,
        "mean": v.mean(),
        "std": v.std(ddof=1),
        "min": v.min(),
        "max": v.max(),
        "p05": np.quantile(v, 0.05),
        "p50": np.median(v),
        "p95": np.quantile(v, 0.95),
        "rms": np.sqrt(np.mean(v**2)),
    }


def test_once_ingests_a_thousand_csvs_and_every_sample_format(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 50}, pipeline={"workers": 2})  # default batching
    expected: dict[str, np.ndarray] = {}
    for i in range(1000):
        name = f"batch{i // 250}/sensor_{i:04d}.csv"
        expected[name] = write_csv(folder.drop / name, rows=20 + i % 17, seed=i)
    for sample in SAMPLE_DATA.iterdir():
        shutil.copy(sample, folder.drop / sample.name)

    result = folder.ingest("once")

    assert result.returncode == 3, result.stderr  # the malformed sample is quarantined
    counts = dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1"))
    for name, values in expected.items():
        assert counts[name] == len(values), name
    samples = {p.name for p in SAMPLE_DATA.iterdir()} - {"sensor_e_malformed.csv"}
    assert samples <= set(counts)
    assert "sensor_e_malformed.csv" not in counts
    assert len(counts) == 1000 + len(samples)

    rows = folder.query(
        "SELECT source_file, source_column, " + ", ".join(FEATURES) + " FROM features"
        " WHERE source_file LIKE 'batch%'"
    )
    assert len(rows) == 1000 * 3
    for source_file, column, *got in rows:
        want = reference(expected[source_file][:, int(column.removeprefix("ch"))])
        for feature, value in zip(FEATURES, got, strict=True):
            assert np.isclose(value, want[feature], rtol=1e-9, atol=0), (source_file, feature)

    # Batching: a thousand small files make a few part files, not a thousand. Each flush
    # writes one records part per schema, and the samples bring six schemas of their own.
    # Each commit is at most `flush_s` (1 s) apart: the run's last line says how long it took.
    said = result.stderr.strip().splitlines()[-1]
    assert len(folder.parts("records")) < 1007 / 20, (len(folder.parts("records")), said)
    assert len(folder.parts("features")) < 1007 / 50, (len(folder.parts("features")), said)
    report = json.loads((folder.quarantine / "sensor_e_malformed.csv.error.json").read_text())
    assert report["error"] == "DecodeError" and report["line"] == 3
    assert not list(folder.drop.rglob("*.csv")), "archive mode moves every input away"


def test_once_output_follows_the_spec_layout_and_types(folder: Folder) -> None:
    for sample in SAMPLE_DATA.iterdir():
        shutil.copy(sample, folder.drop / sample.name)
    assert folder.ingest("once").returncode == 3

    for table in ("records", "features"):
        parts = folder.parts(table)
        assert parts
        for part in parts:
            assert part.parent.name.startswith("ingest_date=")
            assert part.name.startswith("part-")
            meta = pq.read_metadata(part)
            footer = meta.metadata
            assert b"ingest.version" in footer
            sources = json.loads(footer[b"ingest.sources"])
            assert sources and all(len(s) == 3 for s in sources)
            assert meta.row_group(0).column(0).compression == "ZSTD"
            for field in pq.read_schema(part):
                assert "[ns" not in str(field.type), f"{part}: {field} has nanoseconds"
    ((ingested_at_type,),) = folder.query(
        "SELECT DISTINCT typeof(ingested_at) FROM features"
    )
    assert "TIMESTAMP" in ingested_at_type
    columns = {r[0] for r in folder.query("SELECT column_name FROM (DESCRIBE features)")}
    assert {
        "source_file", "source_sha256", "source_column", "window", *FEATURES, "ingested_at",
    } <= columns
    ((windowed, total),) = folder.query('SELECT count("window"), count(*) FROM features')
    assert windowed == 0 and total > 0, "whole-file features have a null window"
    shas = folder.query("SELECT DISTINCT source_sha256 FROM records")
    assert all(len(s) == 64 for (s,) in shas)


def test_second_once_in_keep_mode_ingests_nothing_and_exits_0(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 50, "on_success": "keep"}, pipeline={"workers": 2})
    for i in range(30):
        write_csv(folder.drop / f"f{i}.csv", rows=10, seed=i)
    (folder.drop / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")

    first = folder.ingest("once")
    assert first.returncode == 3, first.stderr
    before = folder.query("SELECT count(*) FROM records")
    second = folder.ingest("once")

    assert second.returncode == 0, second.stderr
    assert folder.query("SELECT count(*) FROM records") == before
    assert "ingested 0 files" in second.stderr
    assert len(list(folder.drop.iterdir())) == 31, "keep mode never touches the drop folder"
    assert (folder.quarantine / "bad.csv").exists(), "keep mode copies bad files to quarantine"


def test_once_over_an_empty_drop_folder_starts_no_worker(folder: Folder) -> None:
    """A scheduled run finds nothing most of the time: it has nothing to compute. Nor in
    hidden names, which are never inputs (a canary file a killed `ingest run` left)."""
    (folder.drop / CANARY).write_text("12345\n")
    (folder.drop / ".upload").mkdir()
    write_csv(folder.drop / ".upload" / "a.csv", 10, 1)
    empty = folder.ingest("once", "--log-level", "DEBUG")
    assert empty.returncode == 0, empty.stderr
    assert "ingested 0 files" in empty.stderr
    assert "workers ready" not in empty.stderr, empty.stderr

    expected = len(write_csv(folder.drop / "a.csv", 10, 1))
    one = folder.ingest("once", "--log-level", "DEBUG")
    assert one.returncode == 0, one.stderr
    assert "2 workers ready (process)" in one.stderr, one.stderr
    assert folder.rows_per_file() == {"a.csv": expected}


def test_once_removes_the_canary_a_killed_run_left_and_keep_mode_leaves_it(folder: Folder) -> None:
    # `ingest run` killed with SIGKILL in the milliseconds a canary lives leaves it behind;
    # a scheduled `once` after it must still leave an archiving drop folder empty.
    (folder.drop / CANARY).write_text("12345\n")
    write_csv(folder.drop / "a.csv", rows=10, seed=1)

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert not list(folder.drop.iterdir()), "the input archived, the canary removed"

    folder.write_config(watch={"settle_ms": 50, "on_success": "keep"}, pipeline={"workers": 2})
    (folder.drop / CANARY).write_text("12345\n")
    assert folder.ingest("once").returncode == 0
    assert (folder.drop / CANARY).exists(), "keep mode never touches the drop folder"


def test_same_content_under_two_names_is_ingested_once(folder: Folder) -> None:
    write_csv(folder.drop / "a.csv", rows=50, seed=1)
    shutil.copy(folder.drop / "a.csv", folder.drop / "copy_of_a.csv")

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert folder.query("SELECT count(*) FROM records") == [(50,)]
    assert "duplicate" in result.stderr


def test_copies_hashed_by_their_worker_leave_no_rows_in_the_parts_of_their_task(
    folder: Folder,
) -> None:
    """Workers hash the files, so a copy is known only once its task is back, its rows
    already in that task's parts beside the other files': a copy of a committed file, and
    two copies of new bytes in one task. The parts are committed without the copies' rows,
    footers included; the copies are recorded as duplicates."""
    folder.write_config(
        watch={"settle_ms": 50, "on_success": "keep"},
        pipeline={"workers": 1}, output={"flush_s": 2},
    )
    write_csv(folder.drop / "a.csv", rows=50, seed=1)
    assert folder.ingest("once").returncode == 0
    shutil.copy(folder.drop / "a.csv", folder.drop / "copy_of_a.csv")
    write_csv(folder.drop / "b.csv", rows=40, seed=2)
    shutil.copy(folder.drop / "b.csv", folder.drop / "copy_of_b.csv")
    for i in range(4):
        write_csv(folder.drop / f"other{i}.csv", rows=30, seed=10 + i)

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "ingested 5 files (160 rows), 2 duplicates" in result.stderr
    rows = folder.rows_per_file()
    assert rows.pop("a.csv") == 50
    assert len([name for name in rows if name.endswith("b.csv")]) == 1, rows
    assert sorted(rows.values()) == [30, 30, 30, 30, 40]
    featured = {f for (f,) in folder.query("SELECT DISTINCT source_file FROM features")}
    assert featured == {"a.csv", *rows}
    footers = [
        json.loads((pq.read_schema(p).metadata or {})[b"ingest.sources"])
        for table in ("records", "features") for p in folder.parts(table)
    ]
    named = sorted(name for sources in footers for name, _, _ in sources)
    assert named == sorted(["a.csv", *rows] * 2), "every footer names only what it holds"
    status = json.loads(folder.ingest("status", "--json").stdout)
    assert status["counts"]["duplicate"] == 2


def test_a_new_version_under_an_old_name_is_a_new_file(folder: Folder) -> None:
    write_csv(folder.drop / "a.csv", rows=50, seed=1)
    assert folder.ingest("once").returncode == 0
    write_csv(folder.drop / "a.csv", rows=70, seed=2)
    assert folder.ingest("once").returncode == 0
    assert folder.query(
        "SELECT count(DISTINCT source_sha256), count(*) FROM records WHERE source_file = 'a.csv'"
    ) == [(2, 120)]


def test_delete_mode_removes_inputs_and_status_reports(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 50, "on_success": "delete"}, pipeline={"workers": 1})
    for i in range(5):
        write_csv(folder.drop / f"f{i}.csv", rows=10, seed=i)
    (folder.drop / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')

    assert folder.ingest("once").returncode == 3
    assert not list(folder.drop.iterdir())
    status = folder.ingest("status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["counts"] == {"ingested": 5, "duplicate": 0, "quarantined": 1}
    assert data["backlog"] == 0
    assert data["quarantined"][0]["file"] == "bad.jsonl"
    assert data["last_ingest"]


def test_once_leaves_a_file_still_being_written_for_the_next_run_and_ends(
    folder: Folder,
) -> None:
    """A file appended to for ever (a device's log) kept `once` running, and holding the
    output's lock against every later run. Once every other file is done, it waits
    once_unsettled_s for such a file, then leaves it in the drop folder and ends."""
    # Waited for twice settle_ms: the writer appends every 20 ms, far inside it.
    folder.write_config(watch={"settle_ms": 1000, "once_unsettled_s": 1})
    write_csv(folder.drop / "done.csv", rows=5, seed=1)
    growing = folder.drop / "growing.csv"
    with appended_to(growing):
        result = folder.ingest("once", timeout=60)

    assert result.returncode == 0, result.stderr
    assert folder.rows_per_file() == {"done.csv": 5}
    assert re.search(
        r"WARNING +deferred growing\.csv reason=\"still changing 2 s after every other"
        r" file was done; left for the next run\"", result.stderr,
    ), result.stderr
    assert "1 left for the next run" in result.stderr, result.stderr
    assert growing.exists()

    rows = growing.read_text().count("\n") - 1
    again = folder.ingest("once")  # it has stopped growing: the next run takes it whole
    assert again.returncode == 0, again.stderr
    assert folder.rows_per_file() == {"done.csv": 5, "growing.csv": rows}
    assert "0 left for the next run" in again.stderr, again.stderr


def test_once_leaves_a_file_its_writer_holds_open_unread_though_it_looks_settled(
    folder: Folder,
) -> None:
    """A writer that wrote some rows and holds its file open, silent for longer than
    settle_ms: the file looks settled, but more may come. `once` does not read it, waits
    once_unsettled_s for it, and leaves it; the next run, after the writer closed it,
    reads it whole."""
    folder.write_config(watch={"once_unsettled_s": 1})
    write_csv(folder.drop / "done.csv", rows=5, seed=1)
    held = folder.drop / "held.csv"
    with held.open("w") as writer:
        writer.write("timestamp,v\n" + "".join(f"{i},{i}.5\n" for i in range(10)))
        writer.flush()
        result = folder.ingest("once", timeout=60)
        writer.write("".join(f"{i},{i}.5\n" for i in range(10, 30)))

    assert result.returncode == 0, result.stderr
    assert folder.rows_per_file() == {"done.csv": 5}
    assert "changed held.csv" in result.stderr and "open for writing" in result.stderr
    assert re.search(r"WARNING +deferred held\.csv reason=\"still changing", result.stderr)

    again = folder.ingest("once")
    assert again.returncode == 0, again.stderr
    assert folder.rows_per_file() == {"done.csv": 5, "held.csv": 30}


def test_an_arrow_file_whose_writer_still_holds_it_open_is_ingested(folder: Folder) -> None:
    """pyarrow's `ipc.new_file(path)` keeps its file open for writing until the writer
    object is collected, long after the file is whole: its footer says so, and the file
    is not waited for as one being appended to."""
    table = pa.table({"v": [1.5, 2.5, 3.5]})
    with pa.ipc.new_file(folder.drop / "a.arrow", table.schema) as writer:
        writer.write_table(table)
    result = folder.ingest("once", timeout=60)  # `writer` lives: its file is still open
    assert result.returncode == 0, result.stderr
    assert folder.rows_per_file() == {"a.arrow": 3}
    assert "open for writing" not in result.stderr
    del writer
