"""Floods: 100,000 tiny files, by backlog and while running. Slow: `make test-slow`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from ..conftest import ROOT, Folder, wait_for
from ..invariants import check_exactly_once

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TINY = "timestamp,v\n1700000000000,{v}\n1700000000010,{w}\n"


def _tiny_files(
    drop: Path, start: int, count: int, per_folder: int = 5000, renamed: bool = False,
) -> dict[str, int]:
    """`renamed`: each written under a hidden name, then renamed in, for a running service
    with settle_ms = 0, which could otherwise read one before its bytes are there."""
    expected = {}
    for i in range(start, start + count):
        rel = f"batch{i // per_folder:03d}/t{i:06d}.csv"
        path = drop / rel
        if i % per_folder == 0 or not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        written = path.with_name(f".{path.name}.tmp") if renamed else path
        written.write_text(TINY.format(v=i, w=i + 0.5))
        if renamed:
            os.replace(written, path)
        expected[rel] = 2
    return expected


class PeakRss:
    """The peak RSS of a process tree, sampled in a thread, with the peak so far on demand."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                tree = [self.root, *self.root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def test_100k_tiny_files_by_backlog_are_committed_once_with_flat_memory(folder: Folder) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep"}, pipeline={"workers": 2},
    )
    expected = _tiny_files(folder.drop, 0, 100_000)
    log = (folder.root / "once.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, stdout=subprocess.DEVNULL, stderr=log,
    )
    rss = PeakRss(proc.pid)
    ledger = folder.output / "_ingest" / "ledger.sqlite"

    def committed() -> int:
        try:
            with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
                return int(db.execute("SELECT count(*) FROM files").fetchone()[0])
        except sqlite3.Error:
            return 0

    wait_for(lambda: committed() >= 20_000, 900, "the first fifth")
    early_peak = rss.peak
    proc.wait(timeout=1200)
    peak = rss.stop()
    log.close()

    assert proc.returncode == 0, (folder.root / "once.log").read_text()[-2000:]
    check_exactly_once(folder, expected, set())
    # Memory plateaus: the last four fifths add little to what the first fifth needed
    # (the ledger's in-memory index of known files grows by ~200 bytes a file).
    assert peak < early_peak * 1.3 + 64 * 1024 * 1024, (early_peak, peak)
    parts = len(folder.parts("records"))
    assert parts < 100_000 / 50, parts

    # A restart over 100k known files reads nothing again, and looks files up by index.
    again = folder.ingest("once", timeout=600)
    assert again.returncode == 0 and "ingested 0 files" in again.stderr, again.stderr[-2000:]
    with sqlite3.connect(ledger) as db:
        plan = " ".join(
            str(row[-1]) for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM files WHERE path = ? AND size = ?"
                " AND mtime_ns = ?", ("x", 1, 1),
            )
        )
    assert "USING INDEX" in plan, plan


def test_100k_tiny_files_arriving_while_running_are_all_committed_once(folder: Folder) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 2}, pipeline={"workers": 2},
    )
    expected = _tiny_files(folder.drop, 0, 50_000)
    log = (folder.root / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "run", "--config", str(folder.config)],
        cwd=folder.root, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        # Fast enough to overflow an inotify queue: the rescans must catch what it drops.
        expected |= _tiny_files(folder.drop, 50_000, 50_000, renamed=True)
        wait_for(
            lambda: not any(folder.drop.rglob("*.csv")), 1200, "the drop folder to empty"
        )
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        log.close()
    assert proc.returncode == 0, (folder.root / "run.log").read_text()[-2000:]
    check_exactly_once(folder, expected, set())
