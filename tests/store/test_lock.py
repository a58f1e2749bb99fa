"""One writer per output folder: real `ingest` processes contend for the writer lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from ingest.store.lock import WriterLock

from ..conftest import Folder, Service, wait_for, write_csv
from ..invariants import check_exactly_once

BUSY = 4


def _populate(folder: Folder, count: int, rows: int = 200) -> dict[str, int]:
    return {
        f"f{i:03d}.csv": len(write_csv(folder.drop / f"f{i:03d}.csv", rows=rows, seed=i))
        for i in range(count)
    }


class Once:
    """`ingest once` in a subprocess, its stderr in a file (a pipe could fill and stall it)."""

    def __init__(self, folder: Folder, name: str, *args: str):
        self.log = folder.root / f"{name}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingest", "once", "--config", str(folder.config), *args],
                cwd=folder.root, stdout=subprocess.DEVNULL, stderr=log,
            )

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout)

    def text(self) -> str:
        return self.log.read_text()


def test_two_onces_started_together_ingest_every_row_exactly_once(folder: Folder) -> None:
    expected = _populate(folder, 100)
    first, second = Once(folder, "first"), Once(folder, "second")
    codes = [first.wait(), second.wait()]
    errors = [first.text(), second.text()]

    assert set(codes) <= {0, BUSY}, errors
    assert 0 in codes, errors
    for code, stderr in zip(codes, errors, strict=True):
        if code == BUSY:
            assert len(stderr.strip().splitlines()) == 1, stderr
            assert "another ingest process (pid " in stderr
    check_exactly_once(folder, expected, set())
    archived = [p for p in folder.archive.rglob("*") if p.is_file()]
    assert sorted(p.name for p in archived) == sorted(expected), "each input archived once"
    assert not any(folder.drop.iterdir())


def test_once_while_run_holds_the_output_exits_4_without_waiting_naming_the_pid(
    folder: Folder, service: Callable[..., Service]
) -> None:
    svc = service()
    svc.wait_ready()
    write_csv(folder.drop / "a.csv", rows=10, seed=1)

    # Waiting for the lock, `once` would wait as long as the service runs: past this limit.
    refused = folder.ingest("once", timeout=60)

    assert refused.returncode == BUSY, refused.stderr
    assert refused.stderr.strip() == refused.stderr.strip().splitlines()[0], "one line"
    assert f"pid {svc.proc.pid}" in refused.stderr
    assert "--wait" in refused.stderr
    rebuild = folder.ingest("ledger", "rebuild", timeout=30)
    assert rebuild.returncode == BUSY, rebuild.stderr
    assert f"pid {svc.proc.pid}" in rebuild.stderr
    assert svc.stop() == 0


def test_status_and_explain_work_while_run_holds_the_output(
    folder: Folder, service: Callable[..., Service]
) -> None:
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    svc = service()
    svc.wait_ready()
    wait_for(lambda: "ingested a.csv" in svc.text(), 30, "a.csv")

    status = folder.ingest("status", timeout=30)
    explain = folder.ingest("explain", "a.csv", timeout=30)

    assert status.returncode == 0, status.stderr
    assert "ingested:    1" in status.stdout
    assert explain.returncode == 0, explain.stderr
    assert "version 1: ingested" in explain.stdout
    assert svc.stop() == 0


def test_once_with_wait_runs_after_the_holder_stops(
    folder: Folder, service: Callable[..., Service]
) -> None:
    svc = service()
    svc.wait_ready()
    waiter = Once(folder, "waiter", "--wait")
    try:
        wait_for(lambda: (folder.root / "output" / "_ingest" / "writer.lock").read_text()
                 .strip() == str(svc.proc.pid), 10, "the lock to name the service")
        # A waiter slow to start (a busy machine) would otherwise find the service gone.
        wait_for(lambda: "waiting for pid" in waiter.text() or waiter.proc.poll() is not None,
                 60, "the waiter to find the lock held")
        time.sleep(1.5)
        assert waiter.proc.poll() is None, "it waits while the service holds the output"
        assert svc.stop() == 0
        stopped = time.monotonic()
        assert waiter.wait(60) == 0
        finished = time.monotonic()
    finally:
        if waiter.proc.poll() is None:
            waiter.proc.kill()
            waiter.proc.wait(10)
    stderr = waiter.text()
    assert f"waiting for pid {svc.proc.pid}" in stderr
    assert stderr.index("waiting for pid") < stderr.index("at start-up"), stderr
    assert "ingested 0 files" in stderr
    assert finished >= stopped


def test_a_holder_killed_with_sigkill_leaves_no_lock_behind(
    folder: Folder, service: Callable[..., Service]
) -> None:
    svc = service()
    svc.wait_ready()
    # The service alone, not its workers: they must not hold the lock for it.
    os.kill(svc.proc.pid, signal.SIGKILL)
    svc.proc.wait(10)
    write_csv(folder.drop / "a.csv", rows=10, seed=1)

    after = folder.ingest("once", timeout=60)

    assert after.returncode == 0, after.stderr
    assert "ingested 1 files" in after.stderr


def test_once_waiting_for_the_lock_stops_on_sigterm_having_done_nothing(folder: Folder) -> None:
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    with WriterLock(folder.output / "_ingest") as holder:
        assert holder.acquire()
        waiter = Once(folder, "waiter", "--wait")
        wait_for(lambda: "waiting for pid" in waiter.text(), 30, "the waiting line")
        waiter.proc.send_signal(signal.SIGTERM)
        assert waiter.wait(30) == 0, waiter.text()
    assert f"waiting for pid {os.getpid()}" in waiter.text()
    assert "nothing was done" in waiter.text()
    assert (folder.drop / "a.csv").exists()
    assert not (folder.output / "_ingest" / "ledger.sqlite").exists()


def test_a_refused_process_leaves_the_holders_pid_in_the_lock_file(folder: Folder) -> None:
    state = folder.output / "_ingest"
    with WriterLock(state) as holder:
        assert holder.acquire()
        assert (state / "writer.lock").read_text().strip() == str(os.getpid())
        with WriterLock(state) as other:
            started = time.monotonic()
            waited: list[int | None] = []
            assert not other.acquire(True, lambda: time.monotonic() - started > 0.3,
                                     waited.append)
        assert waited == [os.getpid()]
        assert (state / "writer.lock").read_text().strip() == str(os.getpid())
    assert (state / "writer.lock").read_text() == "", "released: it names no one"
