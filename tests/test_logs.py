"""Logging never stalls the service: a reader that does not drain stderr cannot block the loop."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

from .conftest import Folder, wait_for, write_csv


def _committed(folder: Folder) -> int:
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_stderr_pipe_nobody_reads_does_not_stop_ingestion(folder: Folder) -> None:
    # 1,000 outcome lines are far more than a 64 KiB pipe holds.
    for i in range(1000):
        write_csv(folder.drop / f"f{i:04d}.csv", rows=3, seed=i)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: _committed(folder) == 1000, 120, "every file to be committed")
    finally:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0
    # Every outcome line written, none twice: "<time> INFO    ingested f0042.csv ...".
    named = re.findall(rb"^\S+ INFO +ingested (f\d{4}\.csv) ", stderr, re.MULTILINE)
    assert len(named) == len(set(named)) == 1000
    assert b"ingested 1000 files" in stderr
