"""SIGTERM and SIGINT under load: drain within drain_s, exit 0, leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from ..conftest import (
    ROOT,
    Folder,
    Service,
    fifo_writer,
    free_port,
    metric,
    stderr_stuck,
    wait_for,
    write_csv,
)
from ..invariants import check_exactly_once
from ..plugin_sets import HUNG_MARK

Start = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def start() -> Iterator[Start]:
    """`ingest run` in a subprocess, killed at teardown if a test left it running."""
    started: list[subprocess.Popen[str]] = []

    def run(folder: Folder, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run", "--config", str(folder.config), *args],
            cwd=folder.root, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)


def _nothing_left_running_in(folder: Folder) -> None:
    def leftovers() -> list[psutil.Process]:
        return [
            p for p in psutil.process_iter(["cmdline"])
            if str(folder.root) in " ".join(p.info["cmdline"] or ())
        ]

    _, alive = psutil.wait_procs(leftovers(), timeout=15)
    assert not alive, f"left behind: {alive}"


def _backlog(folder: Folder, count: int, rows: int = 20) -> dict[str, int]:
    return {
        f"f{i:03d}.csv": len(write_csv(folder.drop / f"f{i:03d}.csv", rows, i))
        for i in range(count)
    }


@pytest.mark.parametrize("send", ["auto", "bytes"])  # bytes: groups read into shared memory
def test_sigterm_under_heavy_load_drains_exits_0_and_restart_finishes_exactly_once(
    folder: Folder, start: Start, send: str
) -> None:
    folder.write_config(
        watch={"settle_ms": 0},
        pipeline={"workers": 2, "queue_files": 16, "drain_s": 30, "send": send},
        features={"sets": ["summary", "tests.plugin_sets:slow"]},
        output={"flush_s": 0.2, "target_file_mb": 1},
    )
    # About 13 MB in 1 MB tasks: many tasks, so a drain leaves some for the next run.
    expected = _backlog(folder, 150, rows=1500)
    proc = start(folder)
    wait_for(lambda: bool(folder.parts("records")), 60, "the first commit")

    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    left = len(list(folder.drop.glob("*.csv")))
    assert 0 < left < 150, "intake stopped: some files remain for the next run"
    _nothing_left_running_in(folder)
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, expected, set())


def test_a_task_waiting_flush_s_for_company_is_sent_at_once_when_a_drain_begins(
    folder: Folder, service: Callable[..., Service]
) -> None:
    # The task's wait for more files ran its whole flush_s: past drain_s, the file was left.
    port = free_port()
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 1, "drain_s": 30},
        output={"flush_s": 600}, metrics={"port": port},
    )
    expected = {"a.csv": len(write_csv(folder.drop / "a.csv", 5, 1))}
    svc = service()
    svc.wait_ready()
    # Held, and no longer in the queue: a task being assembled holds it, waiting for company.
    wait_for(lambda: (metric(port, "ingest_bytes_held") or 0) > 0
             and metric(port, "ingest_queue_files") == 0, 30, "a.csv in a task")

    assert svc.stop(signal.SIGTERM, timeout=25) == 0, svc.text()

    assert "ingested 1 files" in svc.text(), svc.text()
    assert {p.name for p in folder.drop.iterdir()} == set(), "archived once committed"
    check_exactly_once(folder, expected, set())


def test_drain_s_bounds_shutdown_when_in_flight_files_do_not_finish(
    folder: Folder, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    hung = folder.root / "hung"
    monkeypatch.setenv(HUNG_MARK, str(hung))
    folder.write_config(
        watch={"settle_ms": 0},
        pipeline={"workers": 2, "drain_s": 1, "task_timeout_s": 600},
        features={"sets": ["summary", "tests.plugin_sets:hang_on_sentinel"]},
    )
    write_csv(folder.drop / "stuck.csv", 5, 7)
    with (folder.drop / "stuck.csv").open("a") as fh:
        fh.write("1700000999000,777.0,1.0,1.0\n")
    proc = start(folder)
    # The stuck file goes to a worker in a task of its own, before the others arrive.
    wait_for(hung.exists, 60, "a worker to be stuck in stuck.csv")
    expected = _backlog(folder, 4)
    wait_for(lambda: len(list(folder.drop.glob("f*.csv"))) == 0, 60, "the good files")

    proc.send_signal(signal.SIGTERM)
    # Unbounded, the wait would last task_timeout_s = 600: far past this limit.
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 0, stderr
    assert "drain_s = 1 passed with files still in flight: 1" in stderr
    # Named and counted, as every file a stop leaves is.
    assert 'deferred stuck.csv reason="still in a worker when drain_s ran out;' in stderr
    assert "1 left for the next run" in stderr.strip().splitlines()[-1], stderr
    _nothing_left_running_in(folder)
    assert {p.name for p in folder.drop.iterdir()} == {"stuck.csv"}
    rows = dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1"))
    assert rows == expected


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_second_signal_exits_at_once_without_a_traceback_and_restart_is_exactly_once(
    folder: Folder, start: Start, log_format: str
) -> None:
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 2},
        features={"sets": ["summary", "tests.plugin_sets:slow"]}, output={"flush_s": 0.2},
    )
    expected = _backlog(folder, 100)
    proc = start(folder, "--log-format", log_format)
    wait_for(lambda: bool(folder.parts("records")), 60, "the first commit")

    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr
    assert "exiting now" in stderr
    if log_format == "json":  # the last line too: a log shipper parses every one
        lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
        assert "exiting now" in lines[-1]["message"], stderr
    _nothing_left_running_in(folder)
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, expected, set())


def test_a_second_signal_exits_at_once_though_stderr_is_a_full_pipe_nobody_reads(
    folder: Folder,
) -> None:
    # A supervisor whose log shipper is stuck: the service's stderr takes nothing more.
    # Its lines wait in memory (the log thread is stuck in its write), and a second
    # signal must still end it at once; its last line cannot be written, and is left out.
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 2},
        features={"sets": ["summary", "tests.plugin_sets:slow"]}, output={"flush_s": 0.2},
    )
    expected = _backlog(folder, 100)
    with stderr_stuck(folder, "run") as proc:
        wait_for(lambda: bool(folder.parts("records")), 60, "the first commit")
        for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGINT, signal.SIGCONT):
            proc.send_signal(sig)  # both at once on waking, while files are in flight
        returncode = proc.wait(timeout=30)

    assert returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM)  # either comes second
    _nothing_left_running_in(folder)
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, expected, set())


@pytest.mark.parametrize("command", ["run", "once"])
def test_two_signals_during_start_up_exit_at_once(folder: Folder, command: str) -> None:
    # The config comes through a FIFO (as from `--config <(...)`): the service is held in
    # its start-up, where a first signal is kept for the event loop, for as long as the
    # test likes. A second must not wait for the loop: it exits there and then.
    expected = _backlog(folder, 3)
    fifo = folder.root / "config.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", command, "--config", str(fifo)],
        cwd=folder.root, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    writer = fifo_writer(fifo, proc)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:  # it held both: let it go on, and fail
            os.write(writer, folder.config.read_bytes())
            os.close(writer)
            writer = -1
            code = proc.wait(60)
    finally:
        if writer >= 0:
            os.close(writer)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=10)

    assert code in (128 + signal.SIGINT, 128 + signal.SIGTERM), stderr  # either comes second
    second = signal.Signals(code - 128).name
    assert stderr.strip().splitlines()[-1] == f"ingest: {second} again: exiting now", stderr
    assert "Traceback" not in stderr
    assert {p.name for p in folder.drop.iterdir()} == set(expected), "nothing was touched"
    assert folder.ingest("once").returncode == 0
    check_exactly_once(folder, expected, set())


def test_a_signal_during_start_up_stops_run_before_it_scans_or_watches(folder: Folder) -> None:
    # Held in its start-up by a config read from a FIFO, `run` keeps a first SIGTERM for
    # its event loop; once it starts, it neither waits for a watcher (none is armed once
    # the signal came), nor scans the drop folder, nor says it is watching: it stops.
    expected = _backlog(folder, 3)
    fifo = folder.root / "config.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "run", "--config", str(fifo)],
        cwd=folder.root, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    writer = fifo_writer(fifo, proc)
    try:
        proc.send_signal(signal.SIGTERM)
        os.write(writer, folder.config.read_bytes())
    finally:
        os.close(writer)
    try:
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=10)

    assert code == 0, stderr
    assert "SIGTERM: stopping intake" in stderr
    assert "at start-up" not in stderr and "watching" not in stderr, stderr
    assert "ingested 0 files" in stderr.splitlines()[-1]
    assert {p.name for p in folder.drop.iterdir()} == set(expected), "nothing was touched"
    assert folder.ingest("once").returncode == 0
    check_exactly_once(folder, expected, set())


def test_each_file_a_stop_leaves_for_the_next_run_is_named(
    folder: Folder, service: Callable[..., Service]
) -> None:
    folder.write_config(watch={"settle_ms": 5000}, output={"flush_s": 0})
    svc = service()
    svc.wait_ready()
    expected = _backlog(folder, 2)  # written now: settled 5 s from now
    time.sleep(1.5)  # heard, and settling
    assert svc.stop() == 0
    log = svc.text()
    for name in expected:
        assert f"deferred {name} reason=" in log, log
    assert "2 left for the next run" in log.splitlines()[-1]
    assert folder.ingest("once").returncode == 0
    check_exactly_once(folder, expected, set())


def test_a_file_a_writer_holds_open_is_named_once_when_a_drain_finds_it_so(
    folder: Folder, service: Callable[..., Service]
) -> None:
    """Waiting in a task for company (flush_s) as the stop came, it was sent at once, and
    its worker found it open for writing: named twice, `deferred` for the drain and
    `changed` for what was found. One line now, saying both."""
    port = free_port()
    folder.write_config(
        watch={"settle_ms": 50}, output={"flush_s": 600}, metrics={"port": port}
    )
    held = folder.drop / "held.csv"
    write_csv(held, rows=5, seed=1)
    with held.open("ab"):  # as a writer that pauses longer than settle_ms
        svc = service()
        svc.wait_ready()
        wait_for(lambda: (metric(port, "ingest_bytes_held") or 0) > 0, 30, "held.csv taken in")
        # From the queue into a task that waits flush_s for company.
        wait_for(lambda: metric(port, "ingest_queue_files") == 0, 30, "held.csv in a task")
        time.sleep(0.2)
        assert svc.stop() == 0
    after = svc.text().split("SIGTERM", 1)[1]
    named = [line for line in after.splitlines() if "held.csv" in line]
    assert len(named) == 1, after
    assert "deferred held.csv" in named[0] and "open for writing" in named[0], named
    assert "the next run" in named[0] and "1 left for the next run" in after.splitlines()[-1]
