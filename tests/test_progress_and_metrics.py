"""What a person sees: a progress bar on a terminal; what a scraper sees: /metrics."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import urllib.request

from .conftest import Folder, Service, free_port, wait_for, write_csv


def test_once_on_a_terminal_shows_a_progress_bar_and_off_it_only_lines(folder: Folder) -> None:
    for i in range(30):
        write_csv(folder.drop / f"f{i}.csv", rows=10, seed=i)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(60)
    os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")

    assert proc.returncode == 0, shown
    assert "━" in shown, "rich draws its bar on a terminal"
    assert "30/30" in shown, "the bar counts every file"
    assert "ingested 30 files" in shown

    plain = folder.ingest("once")  # captured: not a terminal
    assert "━" not in plain.stderr


def test_metrics_endpoint_exports_loop_lag_and_file_outcomes(
    folder: Folder, service: type[Service]
) -> None:
    port = free_port()
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 1}, metrics={"port": port},
    )
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    svc = service()
    svc.wait_ready()
    wait_for(lambda: "ingested a.csv" in svc.text(), 30, "the file")

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()

    assert "ingest_loop_lag_seconds_bucket" in body
    assert 'ingest_files_total{outcome="ingested"} 1.0' in body
    assert "ingest_rows_total 10.0" in body
    assert "ingest_bytes_held 0.0" in body, "every byte read was released at commit"
    assert svc.stop(signal.SIGTERM) == 0
