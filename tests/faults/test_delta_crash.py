"""kill -9 with `format = "delta"`: at each step around the Delta commit, and at random
moments while files arrive. The Delta log and the ledger never disagree after restart."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import psutil
import pyarrow as pa
import pytest

DeltaTable = pytest.importorskip("deltalake").DeltaTable

from ..conftest import Folder  # noqa: E402
from ..delta_read import read_delta  # noqa: E402
from ..invariants import check_delta, check_exactly_once  # noqa: E402
from .test_crash_points import (  # noqa: E402
    _children_gone,
    _populate,
    _run,
    killed_at_then_restarted,
)

# Around the Delta commit: before it (parts visible, log lacks them), after it (the log has
# them, the ledger not yet), and after the ledger.
AROUND = ("part-renamed", "delta-committed", "ledger-committed")


@pytest.mark.parametrize("point", AROUND)
def test_kill_9_around_the_delta_commit_then_restart_is_exactly_once(
    folder: Folder, point: str
) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1}, pipeline={"workers": 2, "memory_mb": 2},
        output={"flush_s": 0.05, "target_file_mb": 1, "format": "delta"},
    )
    expected, bad = _populate(folder, 0, 120, bad=2, rows=100)
    killed_at_then_restarted(folder, point)
    check_exactly_once(folder, expected, bad)
    check_delta(folder)


def _three_commits(folder: Folder) -> dict[str, int]:
    """Three `once` runs of ten files each into Delta tables: three parts a table."""
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 2},
        output={"flush_s": 0, "format": "delta"},
    )
    expected: dict[str, int] = {}
    for batch in range(3):
        good, _ = _populate(folder, batch * 10, 10)
        expected.update(good)
        assert folder.ingest("once").returncode == 0
    return expected


def _compact_killed_at(folder: Folder, point: str) -> None:
    killed = subprocess.run(
        [sys.executable, "-m", "ingest", "compact", "--config", str(folder.config)],
        cwd=folder.root, env={**os.environ, "INGEST_CRASH_AT": point}, capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", ("compact-swapped", "delta-committed", "compact-committed"))
def test_kill_9_around_a_compactions_delta_commit(folder: Folder, point: str) -> None:
    expected = _three_commits(folder)
    before = check_delta(folder)
    _compact_killed_at(folder, point)
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, expected, set())
    after = check_delta(folder)
    # The interrupted swap is in its table's log, once; nothing went back.
    assert all(after[t] >= before[t] for t in before)
    assert any(after[t] > before[t] for t in before)


def test_a_ledger_rebuild_after_a_compaction_killed_before_its_delta_commit_loses_nothing(
    folder: Folder,
) -> None:
    # The merged parts, which no log named, were set aside, and the next start removed the
    # staging folder that held the old ones, which the log named: every row was gone.
    expected = _three_commits(folder)
    before = sorted(p.name for p in folder.parts("records"))
    _compact_killed_at(folder, "compact-swapped")
    rebuilt = folder.ingest("ledger", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, expected, set())
    check_delta(folder)
    assert sorted(p.name for p in folder.parts("records")) == before
    assert "cut short before its Delta commit: its parts put back" in rebuilt.stderr
    assert "set aside" not in rebuilt.stderr, rebuilt.stderr
    compacted = folder.ingest("compact")
    assert compacted.returncode == 0, compacted.stderr
    check_exactly_once(folder, expected, set())
    check_delta(folder)


def test_a_ledger_rebuild_after_a_widening_rewrite_killed_before_its_delta_commit(
    folder: Folder,
) -> None:
    # A rewrite swaps the table's folder, not a day's: its old parts were not found in
    # the staging folder, and were lost as a compaction's had been.
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 1},
        output={"flush_s": 0, "format": "delta"},
    )
    (folder.drop / "a.csv").write_text("timestamp,x\n1,1\n2,2\n")
    assert folder.ingest("once").returncode == 0
    (folder.drop / "b.csv").write_text("timestamp,x\n3,1.5\n")
    killed = subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, env={**os.environ, "INGEST_CRASH_AT": "compact-swapped"},
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL
    rebuilt = folder.ingest("ledger", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, {"a.csv": 2, "b.csv": 1}, set())
    check_delta(folder)
    assert "set aside" not in rebuilt.stderr, rebuilt.stderr


@pytest.mark.parametrize(
    "rounds",
    [pytest.param(4, id="4-rounds"), pytest.param(20, id="20-rounds", marks=pytest.mark.slow)],
)
def test_kill_9_at_random_moments_keeps_log_and_ledger_equal(folder: Folder, rounds: int) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1}, pipeline={"workers": 2},
        output={"flush_s": 0.1, "format": "delta"},
    )
    rng = random.Random(4321)
    expected: dict[str, int] = {}
    seen = {"records": 0, "features": 0}
    # The long variant must see `run` compact between the kills; on a busy machine a run
    # may not get that far in its 0.5 to 2.5 s, so rounds go on (up to three times as
    # many) until the log holds a compaction.
    long = rounds >= 20
    round_ = 0
    while round_ < rounds or (long and round_ < 3 * rounds and not _compacted(folder)):
        good, _ = _populate(folder, round_ * 40, 40)
        round_ += 1
        expected.update(good)
        proc = _run(folder)
        time.sleep(rng.uniform(0.5, 2.5))
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _children_gone(proc.pid, children)
        for table in seen:  # as the kill left it, before any repair: the txn only grew
            if (folder.output / table / "_delta_log").is_dir():
                version = DeltaTable(str(folder.output / table)).transaction_version("ingest")
                assert (version or 0) >= seen[table]
                seen[table] = version or 0
    final = folder.ingest("once")
    assert final.returncode == 0, final.stderr
    check_exactly_once(folder, expected, set())
    versions = check_delta(folder)
    assert all(versions[t] >= max(seen[t], 1) for t in seen)
    if long:
        assert _compacted(folder)


def _compacted(folder: Folder) -> bool:
    """The records table's log holds an entry that removes parts without changing the
    data: a compaction."""
    for entry in (folder.output / "records" / "_delta_log").glob("*.json"):
        actions = [json.loads(line) for line in entry.read_text().splitlines()]
        if any("remove" in a and not a["remove"]["dataChange"] for a in actions):
            return True
    return False


@pytest.mark.parametrize("point", ("compact-swapped", "delta-committed"))
def test_kill_9_around_a_widenings_delta_commit(folder: Folder, point: str) -> None:
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 2}, output={"flush_s": 0, "format": "delta"},
    )
    (folder.drop / "a.csv").write_text("timestamp,x\n1,1\n2,2\n")
    assert folder.ingest("once").returncode == 0
    (folder.drop / "b.csv").write_text("timestamp,x\n3,1.5\n")
    killed = subprocess.run(  # the first Delta step of this run is the rewrite's
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, env={**os.environ, "INGEST_CRASH_AT": f"{point}:1"}, capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, {"a.csv": 2, "b.csv": 1}, set())
    check_delta(folder)
    table = DeltaTable(str(folder.output / "records"))
    assert pa.schema(table.schema().to_arrow()).field("x").type == pa.float64()
    assert sorted(read_delta(folder.output / "records")["x"].to_pylist()) == [1.0, 1.5, 2.0]


def test_a_kill_after_a_failed_commit_was_taken_out_of_the_log_is_repaired_at_start(
    folder: Folder,
) -> None:
    """The log's version had moved past the part's with the remove that took it out, and
    start-up took that for the part being in the log, with its files gone: every later
    start exited 2 ("in the Delta log but some of its files are missing")."""
    folder.write_config(output={"flush_s": 60, "format": "delta"})
    (folder.drop / "a.csv").write_text("timestamp,x\n1,1.5\n2,2.5\n")
    killed = subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "INGEST_FAIL_AT": "ledger-commit", "INGEST_CRASH_AT": "part-undone"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, {"a.csv": 2}, set())
    check_delta(folder)


def test_a_ledger_that_fails_after_the_delta_commit_takes_the_part_out_and_retries(
    folder: Folder,
) -> None:
    """The ledger's commit of a part fails once, after the part's Delta commit: a
    second Delta commit takes the part out again, the batch is retried, and the
    log's history names the undone part for that one version only (reading that
    version fails: the part is gone)."""
    folder.write_config(output={"flush_s": 60, "format": "delta"})
    (folder.drop / "a.csv").write_text("timestamp,x\n1,1.5\n2,2.5\n")
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, env={**os.environ, "INGEST_FAIL_AT": "ledger-commit"},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "INGEST_FAIL_AT=ledger-commit; inputs stay pending, retrying in" in done.stderr
    check_exactly_once(folder, {"a.csv": 2}, set())
    assert check_delta(folder)["records"] == 3  # the commit, its undoing, the retry
    path = folder.output / "records"
    with pytest.raises(FileNotFoundError):  # the undone part is gone from disk
        read_delta(path, 0)
    assert read_delta(path, 1).num_rows == 0
    assert sorted(read_delta(path, 2)["x"].to_pylist()) == [1.5, 2.5]
