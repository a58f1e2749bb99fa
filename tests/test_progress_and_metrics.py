"""What a person sees: a progress bar on a terminal; what a scraper sees: /metrics."""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

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


def test_latency_is_timed_once_per_file_committed_not_at_each_look_at_a_changing_one(
    folder: Folder, service: type[Service]
) -> None:
    """A file a writer held open was found changed at each look, and each look was timed
    as a commit: the histogram counted every look, not the files committed."""
    port = free_port()
    folder.write_config(watch={"settle_ms": 50}, output={"flush_s": 0}, metrics={"port": port})
    held = folder.drop / "held.csv"
    write_csv(held, rows=5, seed=1)
    write_csv(folder.drop / "a.csv", rows=5, seed=2)
    with held.open("ab"):  # as a writer that pauses longer than settle_ms
        svc = service()
        svc.wait_ready()
        wait_for(lambda: svc.text().count("changed held.csv") >= 2, 30, "held.csv looked at")
    wait_for(lambda: "ingested held.csv" in svc.text(), 30, "held.csv once let go")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    assert svc.stop() == 0

    assert "ingest_latency_seconds_count 2.0" in body, body
    changed = float(body.split('ingest_files_total{outcome="changed"} ')[1].split()[0])
    assert changed >= 2


def _raw(port: int, request: bytes) -> bytes:
    """Everything the server sends back to `request`, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return reply


def _serving(folder: Folder, service: type[Service]) -> tuple[Service, int]:
    """A service ready, with its metrics on a free port."""
    port = free_port()
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 1}, metrics={"port": port})
    svc = service()
    svc.wait_ready()
    return svc, port


def test_the_metrics_port_serves_its_two_paths_answers_heads_and_counts_every_outcome(
    folder: Folder, service: type[Service]
) -> None:
    svc, port = _serving(folder, service)
    base = f"http://127.0.0.1:{port}"

    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        body = response.read().decode()
    # At 0 from the start: the first quarantine after a restart is an increase.
    for outcome in ("quarantined", "ingested", "changed", "reread"):
        assert f'ingest_files_total{{outcome="{outcome}"}} 0.0' in body, outcome
    # A probe of a mistyped path fails, rather than reading the metrics as "healthy".
    for path in ("/healthz/", "/health", "/", "/HEALTHZ", "/favicon.ico"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{base}{path}", timeout=10)
        assert caught.value.code == 404, path
        caught.value.close()
    for path in ("/healthz", "/metrics"):
        reply = _raw(port, f"HEAD {path} HTTP/1.0\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.0 200 OK\r\n"), reply[:80]
        assert reply.endswith(b"\r\n\r\n"), "the headers alone"
    assert svc.stop() == 0


def test_idle_clients_of_the_metrics_port_are_let_go_and_never_stall_the_service(
    folder: Folder, service: type[Service]
) -> None:
    svc, port = _serving(folder, service)
    fds = len(os.listdir(f"/proc/{svc.proc.pid}/fd"))
    # A scraper that hangs, or a port scan's half-open sockets: connected, never a request.
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(60)]
    try:
        write_csv(folder.drop / "a.csv", rows=10, seed=1)
        wait_for(lambda: "ingested a.csv" in svc.text(), 30, "the file, beside the idle clients")
        assert len(os.listdir(f"/proc/{svc.proc.pid}/fd")) < fds + 30, "a descriptor each"
        for conn in idle:  # each closed by the server: at once past its cap, or once idle
            assert conn.recv(1) == b""
    finally:
        for conn in idle:
            conn.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status == 200
    assert svc.stop() == 0
