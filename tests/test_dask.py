"""A real dask cluster: a `dask scheduler` and two `dask worker` processes started with the
CLI on 127.0.0.1, shared by this module's tests, and `ingest` sending them bytes or paths.

The workers share this machine's disk, so send = "paths" and shared_output apply.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest

from .conftest import ROOT, Folder, free_port, wait_for, write_csv
from .corpus import check_corpus_once, write_corpus
from .invariants import check_exactly_once
from .plugin_sets import HANG_VALUE

pytest.importorskip("distributed")

START_TIMEOUT_S = 60
WORKER_UMASK = 0o077
SERVICE_UMASK = 0o022


@dataclass
class Cluster:
    address: str
    processes: list[subprocess.Popen[bytes]]

    def ask(self, expression: str) -> object:
        """Evaluate `expression` with `client` connected to the scheduler, in a process of
        its own (a client here would run its own event loop in this test process)."""
        code = (
            "import json, os, sys\n"
            "from distributed import Client\n"
            f"with Client({self.address!r}, timeout={START_TIMEOUT_S}) as client:\n"
            f"    print(json.dumps({expression}))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def worker_pids(self) -> list[int]:
        pids = self.ask("client.run(os.getpid)")
        assert isinstance(pids, dict)
        return sorted(int(pid) for pid in pids.values())

    def busy_worker(self) -> int | None:
        """The pid of a worker the scheduler has given a task to, if any."""
        busy = self.ask(
            "[pid for address, pid in client.run(os.getpid).items()"
            " if client.processing().get(address)]"
        )
        assert isinstance(busy, list)
        return int(busy[0]) if busy else None


@contextmanager
def _cluster(workers: list[list[str]]) -> Iterator[Cluster]:
    """A scheduler, and a single-threaded worker (under its nanny, which restarts it if it
    dies) started by each of `workers`, a command put before the `dask worker` CLI's own
    (or none), all killed at the end."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    # The workers import ingest, and the test feature sets by name, as a user's package.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    processes = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--no-dashboard"],
        start_new_session=True, **quiet,  # type: ignore[call-overload]
    )]
    for before in workers:
        processes.append(subprocess.Popen(
            [*before, sys.executable, "-m", "distributed.cli.dask_worker", address, "--host",
             "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
            start_new_session=True, **quiet,  # type: ignore[call-overload]
            umask=WORKER_UMASK,  # files they create show who wrote them
        ))
    running = Cluster(address, processes)
    try:
        running.ask(f"client.wait_for_workers({len(workers)}, timeout={START_TIMEOUT_S}) or 0")
        yield running
    finally:
        for proc in processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the nannies' workers with them
            proc.wait(10)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Two workers, started as the `dask` CLI starts them, shared by the module's tests."""
    with _cluster([[], []]) as running:
        yield running


def _configure(
    folder: Folder, cluster: Cluster, send: str, shared_output: bool = False,
    **features: object,
) -> None:
    folder.write_config(
        watch={"settle_ms": 0},
        pipeline={"workers": 2, "executor": f"dask://{cluster.address}", "send": send,
                  "shared_output": shared_output},
        output={"flush_s": 0.2},
        **({"features": features} if features else {}),
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("send", ["paths", "bytes"])
def test_a_mixed_folder_is_ingested_exactly_once_on_a_dask_cluster(
    folder: Folder, cluster: Cluster, send: str
) -> None:
    _configure(folder, cluster, send)
    corpus = write_corpus(folder)

    result = folder.ingest("once", timeout=170)

    assert result.returncode == 0, result.stderr
    check_corpus_once(folder, corpus)
    # Every worker was tuned as the local pool's are (`compute/on_cluster.py`).
    plugins = cluster.ask(
        "list(client.run(lambda dask_worker: list(dask_worker.plugins)).values())"
    )
    assert isinstance(plugins, list) and len(plugins) == 2
    assert all("ingest-tuned" in names for names in plugins)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("shared_output", [True, False])
def test_workers_that_see_the_output_folder_write_their_own_part_files(
    folder: Folder, cluster: Cluster, shared_output: bool
) -> None:
    """The workers create files under a umask of their own: a part file's mode says
    whether a worker wrote it, or the service wrote the bytes a worker returned."""
    _configure(folder, cluster, "paths", shared_output=shared_output)
    expected = {f"f{i:02d}.csv": len(write_csv(folder.drop / f"f{i:02d}.csv", 300, i))
                for i in range(12)}

    result = subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, capture_output=True, text=True, timeout=170,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, umask=SERVICE_UMASK,
    )

    assert result.returncode == 0, result.stderr
    check_exactly_once(folder, expected, set())
    parts = folder.parts("records") + folder.parts("features")
    writer_umask = WORKER_UMASK if shared_output else SERVICE_UMASK
    assert {p.stat().st_mode & 0o777 for p in parts} == {0o666 & ~writer_umask}
    assert not list((folder.output / "_ingest" / "tmp").iterdir())


def _mounts_hide_folders() -> bool:
    """Whether a process here may have a mount namespace of its own (root in most CI
    containers), to hide a folder from a worker behind an empty tmpfs."""
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount -t tmpfs none /mnt"], capture_output=True, timeout=30,
    ) if shutil.which("unshare") else None
    return probe is not None and probe.returncode == 0


@pytest.mark.timeout(180)
def test_shared_output_on_a_worker_that_does_not_see_the_output_is_a_one_line_error(
    folder: Folder,
) -> None:
    """One worker sees the output folder; the other, in a mount namespace of its own, sees
    another folder at its path, with an `_ingest/tmp` of its own, where it would write
    parts the service never finds."""
    if not _mounts_hide_folders():
        pytest.skip("no mount namespaces here")
    folder.output.mkdir(parents=True, exist_ok=True)
    hidden = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              f'mount -t tmpfs none "{folder.output}" && mkdir -p "{folder.output}/_ingest/tmp"'
              ' && exec "$0" "$@"']
    expected = {f"f{i}.csv": len(write_csv(folder.drop / f"f{i}.csv", 50, i)) for i in range(3)}
    with _cluster([[], hidden]) as blind:
        _configure(folder, blind, "paths", shared_output=True)
        result = folder.ingest("once", timeout=170)

    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("ingest: [pipeline] shared_output = true, but dask worker tcp://")
    assert f"does not see {folder.output} at that path" in error
    assert sorted(p.name for p in folder.drop.iterdir()) == sorted(expected)
    assert not folder.parts("records")


def test_a_scheduler_that_does_not_answer_is_a_one_line_error(folder: Folder) -> None:
    folder.write_config(pipeline={"executor": f"dask://127.0.0.1:{free_port()}"})
    write_csv(folder.drop / "a.csv", 5, 1)
    result = folder.ingest("once", timeout=120)
    # The address is well formed: the scheduler may answer later, and a supervisor that
    # restarts on failure, not on a config error (exit 2), tries again.
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "executor" in line]
    assert line.startswith('ingest: [pipeline] executor = "dask://127.0.0.1:'), line
    assert "no scheduler answers there" in line
    assert (folder.drop / "a.csv").exists()


@pytest.mark.timeout(180)
def test_a_large_file_sent_as_bytes_leaves_json_logs_json(
    folder: Folder, cluster: Cluster
) -> None:
    """distributed warns in plain text of each "large graph" (over 10 MB) its client sends."""
    _configure(folder, cluster, "bytes")
    np.save(folder.drop / "big.npy", np.arange(2_000_000, dtype=np.float64))  # 16 MB
    result = folder.ingest("once", "--log-format", "json", timeout=170)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("{") for line in lines), result.stderr
    assert [json.loads(line)["event"] for line in lines if '"event"' in line] == ["ingested"]


def _ingested(folder: Folder) -> int:
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    if not ledger.exists():
        return 0
    with sqlite3.connect(ledger, timeout=10) as db:
        count: int = db.execute("SELECT count(*) FROM files WHERE state = 'ingested'").fetchone()[0]
        return count


def _busy_worker(cluster: Cluster, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = cluster.busy_worker()
        if pid is not None:
            return pid
    raise AssertionError("no worker was given a task")


@pytest.mark.timeout(240)
def test_a_dask_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(
    folder: Folder, cluster: Cluster
) -> None:
    _configure(folder, cluster, "paths", sets=["summary", "tests.plugin_sets:slow"])
    expected = {}
    for i in range(60):  # 0.15 s each in a worker, with the slow set: about 5 s on two
        expected[f"f{i:02d}.csv"] = len(write_csv(folder.drop / f"f{i:02d}.csv", 200, i))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        victim = _busy_worker(cluster)
        os.kill(victim, signal.SIGKILL)  # it holds a task: one not committed, now lost
        done_at_kill = _ingested(folder)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:  # not left open for a later test's warnings
            proc.stderr.close()
    assert done_at_kill < len(expected), "the run ended before the kill: not mid-run"
    assert proc.returncode == 0, stderr
    check_exactly_once(folder, expected, set())
    # The nanny started another worker in its place; the next test has two again.
    wait_for(lambda: len(cluster.worker_pids()) == 2, 60, "the worker to be restarted")
    assert victim not in cluster.worker_pids()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("command", ["once", "run"])
def test_a_scheduler_lost_mid_run_stops_the_service_and_quarantines_nothing(
    folder: Folder, command: str
) -> None:
    """Its client closes once the scheduler has not answered for its reconnection's 10 s;
    the calls in flight never end then. `once` hung on them for task_timeout_s, then
    quarantined a good file and hung for ever in its shutdown; `run` quarantined every
    file it took after."""
    with _cluster([[], []]) as doomed:
        _configure(folder, doomed, "paths", sets=["summary", "tests.plugin_sets:slow"])
        expected = {}
        # 0.15 s each in a worker, with the slow set: about 9 s on two, so that work is still
        # in flight once a look at the cluster (a process of its own) has found it busy.
        for i in range(120):
            expected[f"f{i:03d}.csv"] = len(write_csv(folder.drop / f"f{i:03d}.csv", 200, i))
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", command, "--config", str(folder.config)],
            cwd=folder.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            _busy_worker(doomed)
            os.killpg(doomed.processes[0].pid, signal.SIGKILL)  # the scheduler
            try:  # a client left to reconnect for ever would hold it past this limit
                _, stderr = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGUSR1)  # where it is stuck, to its log
                time.sleep(3)
                proc.kill()
                pytest.fail(f"did not stop within 120 s:\n{proc.communicate()[1]}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stderr is not None:  # not left open for a later test's warnings
                proc.stderr.close()
    assert proc.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert "ingest stopped: the dask scheduler of [pipeline] executor" in last, stderr
    assert "Traceback" not in stderr
    assert not list(folder.quarantine.glob("*")), "no file's fault"
    left = sorted(path.name for path in folder.drop.glob("*.csv"))
    assert left, "stopped mid-run: files stay for the next run"
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 2})
    again = folder.ingest("once")
    assert again.returncode == 0, again.stderr
    check_exactly_once(folder, expected, set())


@pytest.mark.timeout(180)
def test_a_file_stuck_in_a_feature_function_is_stopped_on_a_dask_worker_alone(
    folder: Folder, cluster: Cluster
) -> None:
    """A dask worker runs a task in a thread, where no alarm reaches: the task's time limit
    did nothing there. The stuck task held its worker for ever, the files queued behind it
    were quarantined as timed out, and every later run's too."""
    folder.write_config(
        watch={"settle_ms": 0},
        pipeline={"workers": 2, "executor": f"dask://{cluster.address}", "send": "paths",
                  "task_timeout_s": 3},
        features={"sets": ["summary", "tests.plugin_sets:hang_on_sentinel"]},
        output={"flush_s": 0.2},
    )
    expected = {f"ok{i}.csv": len(write_csv(folder.drop / f"ok{i}.csv", 20, i)) for i in range(6)}
    (folder.drop / "hang.csv").write_text(f"timestamp,v\n1,{HANG_VALUE}\n")
    result = folder.ingest("once", timeout=170)
    assert result.returncode == 3, result.stderr
    assert sorted(p.name for p in folder.quarantine.glob("*.csv")) == ["hang.csv"]
    report = json.loads((folder.quarantine / "hang.csv.error.json").read_text())
    assert report["error"] == "TaskTimeout", report
    check_exactly_once(folder, expected, {"hang.csv"})

    # The cluster's workers serve the next run.
    later = {
        f"later{i}.csv": len(write_csv(folder.drop / f"later{i}.csv", 20, i + 10))
        for i in range(3)
    }
    again = folder.ingest("once", timeout=170)
    assert again.returncode == 0, again.stderr
    check_exactly_once(folder, expected | later, {"hang.csv"})
