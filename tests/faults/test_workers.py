"""Worker death, hangs and hostile feature functions: real pools, real kills."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest

from ..conftest import ROOT, Folder, free_port, metric, wait_for, write_csv
from ..plugin_sets import EXIT_VALUE, HANG_VALUE, SEGFAULT_VALUE


def _env() -> dict[str, str]:
    # Workers import the test feature sets by name, as they would a user's own package.
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _once(folder: Folder, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, capture_output=True, text=True, timeout=timeout, env=_env(),
    )


def _good_and_poison(folder: Folder, good: int, sentinel: float) -> dict[str, int]:
    expected = {}
    for i in range(good):
        expected[f"good{i:03d}.csv"] = len(write_csv(folder.drop / f"good{i:03d}.csv", 20, i))
    poison = folder.drop / "poison.csv"
    write_csv(poison, 20, 99)
    with poison.open("a") as fh:
        fh.write(f"1700000999000,{sentinel},1.0,1.0\n")
    return expected


def _configure(folder: Folder, plugin: str, **pipeline: object) -> None:
    folder.write_config(
        watch={"settle_ms": 0},
        pipeline={"workers": 2, "retries": 2, **pipeline},
        features={"sets": ["summary", f"tests.plugin_sets:{plugin}"]},
        output={"flush_s": 0.2},
    )


def _quarantined(folder: Folder, name: str) -> dict[str, object]:
    report: dict[str, object] = json.loads(
        (folder.quarantine / f"{name}.error.json").read_text()
    )
    return report


def _ingested(folder: Folder) -> dict[str, int]:
    return {
        str(k): int(v)  # type: ignore[call-overload]
        for k, v in folder.query("SELECT source_file, count(*) FROM records GROUP BY 1")
    }


def test_a_file_that_segfaults_its_worker_is_quarantined_as_poison_after_retries(
    folder: Folder,
) -> None:
    _configure(folder, "segfault_on_sentinel")
    expected = _good_and_poison(folder, 12, SEGFAULT_VALUE)

    result = _once(folder)

    assert result.returncode == 3, result.stderr
    report = _quarantined(folder, "poison.csv")
    assert report["error"] == "WorkerCrashed"
    assert report["attempts"] == 3  # retries + 1
    poison = (folder.quarantine / "poison.csv").read_bytes()
    assert report["sha256"] == hashlib.sha256(poison).hexdigest(), "hashed though no worker did"
    assert _ingested(folder) == expected, "every innocent file in flight was retried"
    assert not list(folder.quarantine.glob("good*"))


def test_sigkill_of_a_busy_worker_loses_nothing_and_quarantines_nothing(
    folder: Folder,
) -> None:
    _configure(folder, "slow")
    expected = {}
    for i in range(40):
        expected[f"f{i:02d}.csv"] = len(write_csv(folder.drop / f"f{i:02d}.csv", 20, i))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "run", "--config", str(folder.config)],
        cwd=folder.root, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        service = psutil.Process(proc.pid)

        def workers() -> list[psutil.Process]:
            # Workers are the forkserver's children, so the service's grandchildren (its
            # children are the forkserver and the resource tracker).
            return [p for p in service.children(recursive=True) if p.ppid() != proc.pid]

        wait_for(lambda: len(workers()) >= 2, 30, "the pool's workers")
        time.sleep(0.5)  # well into the backlog: both workers hold a file
        workers()[0].send_signal(signal.SIGKILL)
        wait_for(lambda: not list(folder.drop.glob("*.csv")), 60, "the drop folder to empty")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "a worker died" in stderr
    assert _ingested(folder) == expected
    assert not list(folder.quarantine.iterdir())


def test_a_hanging_feature_function_is_stopped_by_the_task_timeout(folder: Folder) -> None:
    _configure(folder, "hang_on_sentinel", task_timeout_s=2)
    expected = _good_and_poison(folder, 6, HANG_VALUE)

    result = _once(folder)

    assert result.returncode == 3, result.stderr
    assert _quarantined(folder, "poison.csv")["error"] == "TaskTimeout"
    assert _ingested(folder) == expected


@pytest.mark.timeout(180)
def test_a_worker_stuck_where_signals_cannot_reach_is_killed_by_the_parent(
    folder: Folder,
) -> None:
    _configure(folder, "hang_ignoring_alarm", task_timeout_s=1)
    expected = _good_and_poison(folder, 6, HANG_VALUE)

    result = _once(folder)

    assert result.returncode == 3, result.stderr
    report = _quarantined(folder, "poison.csv")
    assert report["error"] == "TaskTimeout"
    assert "killed" in str(report["message"])
    assert _ingested(folder) == expected


@pytest.mark.parametrize(
    ("plugin", "sentinel", "error"),
    [
        ("exit_on_sentinel", EXIT_VALUE, "SystemExit"),
        ("exhaust_memory_on_sentinel", SEGFAULT_VALUE, "MemoryError"),
    ],
)
def test_a_feature_function_that_exits_or_runs_out_of_memory_is_an_error_record(
    folder: Folder, plugin: str, sentinel: float, error: str
) -> None:
    _configure(folder, plugin)
    expected = _good_and_poison(folder, 6, sentinel)

    result = _once(folder)

    assert result.returncode == 3, result.stderr
    assert _quarantined(folder, "poison.csv")["error"] == error
    assert _ingested(folder) == expected


@pytest.mark.parametrize("plugin", ["raise_unpicklable", "return_unpicklable"])
def test_unpicklable_errors_and_results_become_error_records_without_deadlock(
    folder: Folder, plugin: str
) -> None:
    _configure(folder, plugin)
    write_csv(folder.drop / "a.csv", 10, 1)

    result = _once(folder)

    assert result.returncode == 3, result.stderr
    report = _quarantined(folder, "a.csv")
    assert report["error"] in ("Unpicklable", "ArrowInvalid", "ArrowTypeError", "TypeError")
    assert not folder.parts("records")


def test_a_task_that_fails_unexpectedly_is_retried_file_by_file_and_the_run_goes_on(
    folder: Folder,
) -> None:
    # Test-only fault point: the worker's own code raises for any task holding poison.csv,
    # as a bug would (the joint CSV parse once did, on a header that repeats a text column;
    # tests/compute/test_together.py keeps that input). One worker: one task for them all.
    # A run that lost track of a file would wait out drain_s before it exits: far past the
    # timeout, which raises.
    _configure(folder, "slow", workers=1, drain_s=3600)
    expected = _good_and_poison(folder, 6, 0.0)

    result = subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, capture_output=True, text=True, timeout=100,
        env={**_env(), "INGEST_FAIL_AT": "worker:poison.csv"},
    )

    assert result.returncode == 3, result.stderr
    assert "retrying each of its files alone" in result.stderr
    report = _quarantined(folder, "poison.csv")
    assert report["error"] == "RuntimeError"
    assert "INGEST_FAIL_AT=worker:poison.csv" in str(report["message"])
    assert _ingested(folder) == expected
    assert not list(folder.drop.iterdir())


def test_an_internal_failure_that_stops_the_service_exits_1(folder: Folder) -> None:
    # Test-only fault point: no real input reaches the intake task's own code with an error.
    write_csv(folder.drop / "a.csv", 20, 1)

    result = subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, capture_output=True, text=True, timeout=120,
        env={**_env(), "INGEST_FAIL_AT": "intake"},
    )

    assert result.returncode == 1, result.stderr
    assert "InjectedFailure" in result.stderr
    assert (folder.drop / "a.csv").exists(), "the file stays for the next run"


@pytest.mark.timeout(240)
def test_the_hang_backstop_does_not_grow_with_the_task(folder: Folder) -> None:
    # One worker: the 150 good files and the hanging one make one task. The backstop counts
    # from the start of the file that hangs, not task_timeout_s for every file of the task:
    # that would let the hang run 150 s before its worker is killed, past the run's limit.
    # Counted from the hang, the run takes a few seconds (twice the backstop, for the task
    # and then the file alone, and the pools' restarts).
    _configure(folder, "hang_ignoring_alarm", task_timeout_s=1, workers=1)
    expected = _good_and_poison(folder, 150, HANG_VALUE)

    result = _once(folder, timeout=100)

    assert result.returncode == 3, result.stderr
    assert _quarantined(folder, "poison.csv")["error"] == "TaskTimeout"
    assert _ingested(folder) == expected


def _attempts(folder: Folder) -> dict[str, int]:
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        return dict(db.execute("SELECT path, attempts FROM files WHERE state = 'ingested'"))


@pytest.mark.timeout(180)
def test_a_hung_worker_is_killed_alone_and_the_tasks_beside_it_are_not_charged(
    folder: Folder,
) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1},
        pipeline={"workers": 2, "retries": 2, "task_timeout_s": 1},
        features={"sets": [
            "summary", "tests.plugin_sets:slow", "tests.plugin_sets:hang_ignoring_alarm",
        ]},
        output={"flush_s": 0.2},
    )
    log = (folder.root / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "run", "--config", str(folder.config)],
        cwd=folder.root, env=_env(), stdout=subprocess.DEVNULL, stderr=log, text=True,
    )
    expected: dict[str, int] = {}

    def drop(name: str, sentinel: float | None = None) -> None:
        write_csv(folder.root / name, 20, len(expected))
        if sentinel is not None:
            with (folder.root / name).open("a") as fh:
                fh.write(f"1700000999000,{sentinel},1.0,1.0\n")
        os.replace(folder.root / name, folder.drop / name)

    try:
        wait_for(lambda: "watching" in (folder.root / "run.log").read_text(), 60, "the service")
        drop("poison.csv", HANG_VALUE)
        # Slow files for the other worker until the backstop fires, so some are in flight;
        # no more than a few waiting, so that a slow machine does not pile up a backlog.
        for _ in range(400):  # 100 s of rounds
            if (folder.quarantine / "poison.csv.error.json").exists():
                break
            if len(list(folder.drop.glob("good*.csv"))) < 8:
                for _ in range(4):
                    name = f"good{len(expected):03d}.csv"
                    drop(name)
                    expected[name] = 20
            time.sleep(0.25)
        else:
            pytest.fail("the backstop never fired")
        wait_for(lambda: not list(folder.drop.glob("*.csv")), 90, "the drop folder to empty")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    stderr = (folder.root / "run.log").read_text()
    assert proc.returncode == 0, stderr
    assert _quarantined(folder, "poison.csv")["error"] == "TaskTimeout"
    assert _ingested(folder) == expected
    assert "took longer than task_timeout_s" in stderr
    assert set(_attempts(folder).values()) == {1}, "no innocent file was charged a crash"


def test_the_breakages_metric_counts_each_pool_replaced_once(folder: Folder) -> None:
    """A worker's death fails every task its pool held, and each was counted: the metric
    said 4 where the log said 3 pools were replaced."""
    port = free_port()
    folder.write_config(
        watch={"settle_ms": 0},
        pipeline={"workers": 2, "retries": 2},
        # Slow: the other worker still holds a task when the poison kills its own.
        features={"sets": ["summary", "tests.plugin_sets:slow",
                           "tests.plugin_sets:segfault_on_sentinel"]},
        output={"flush_s": 0.2},
        metrics={"port": port},
    )
    expected = _good_and_poison(folder, 24, SEGFAULT_VALUE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "run", "--config", str(folder.config)],
        cwd=folder.root, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (folder.quarantine / "poison.csv.error.json").exists()
                 and not list(folder.drop.glob("*.csv")), 90, "the poison quarantined")
        counted = metric(port, "ingest_pool_breakages_total")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    replaced = stderr.count("a worker died; replacing the process pool")
    assert replaced >= 3, stderr  # the poison alone killed a worker retries + 1 times
    assert counted == replaced, stderr
    assert _ingested(folder) == expected
