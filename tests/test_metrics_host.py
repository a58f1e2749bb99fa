"""[metrics] host: the endpoint listens on this machine only unless told otherwise."""

from __future__ import annotations

import signal
import socket
import urllib.request
from collections.abc import Callable

import psutil

from .conftest import Folder, Service, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(pid: int, port: int) -> set[str]:
    return {
        c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_the_metrics_endpoint_listens_on_127_0_0_1_by_default(
    folder: Folder, service: Callable[..., Service]
) -> None:
    port = _free_port()
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 1}, metrics={"port": port})
    svc = service()
    svc.wait_ready()
    wait_for(lambda: bool(_listening(svc.proc.pid, port)), 10, "the endpoint")

    assert _listening(svc.proc.pid, port) == {"127.0.0.1"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert "ingest_loop_lag_seconds" in response.read().decode()
    assert svc.stop(signal.SIGTERM) == 0


def test_the_metrics_host_key_chooses_the_interface(
    folder: Folder, service: Callable[..., Service]
) -> None:
    port = _free_port()
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 1},
        metrics={"port": port, "host": "127.0.0.2"},
    )
    svc = service()
    svc.wait_ready()
    wait_for(lambda: bool(_listening(svc.proc.pid, port)), 10, "the endpoint")

    assert _listening(svc.proc.pid, port) == {"127.0.0.2"}
    assert svc.stop(signal.SIGTERM) == 0


def test_an_unknown_metrics_key_is_still_an_error(folder: Folder) -> None:
    folder.write_config(metrics={"hostname": "0.0.0.0"})
    result = folder.ingest("once", timeout=60)
    assert result.returncode == 2
    assert "[metrics] unknown key 'hostname'" in result.stderr
