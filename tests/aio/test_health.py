"""/healthz over real HTTP: a blocked loop and a deaf watcher are reported, polling is not."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ingest.aio.canary import NAME as CANARY
from ingest.aio.health import LAG_LIMIT_S, Health
from ingest.aio.lag import LagProbe
from ingest.aio.service import Service
from ingest.config import Config, Metrics, Output, Paths, Pipeline, Watch
from ingest.metrics import Metrics as Registry
from ingest.store import status

from ..conftest import free_port
from .watchers import deaf


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.serial  # the loop lag it reads must be its own
def test_healthz_is_503_while_the_loop_is_blocked_and_200_when_it_runs(tmp_path: Path) -> None:
    port = free_port()
    registry = Registry()
    probe = LagProbe(registry)
    registry.serve(port, "127.0.0.1", Health(tmp_path, registry, probe).problem)

    async def main() -> tuple[tuple[int, str], tuple[int, str]]:
        task = asyncio.create_task(probe.run())
        await asyncio.sleep(0.1)
        running = await asyncio.to_thread(_get, port, "/healthz")
        def ask_later() -> tuple[int, str]:
            time.sleep(LAG_LIMIT_S + 0.5)
            return _get(port, "/healthz")

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            asked = pool.submit(ask_later)
            time.sleep(LAG_LIMIT_S + 2)  # holds the loop: what the probe must see
            blocked = asked.result()
        task.cancel()
        return running, blocked

    running, blocked = asyncio.run(main())

    assert running == (200, "ok\n")
    assert blocked[0] == 503 and "event loop lag" in blocked[1], blocked
    assert "ingest_loop_lag_seconds_bucket" in _get(port, "/metrics")[1], "/metrics still served"


def test_a_service_whose_watcher_hears_nothing_polls_commits_and_stays_healthy(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = Config(
        paths=Paths(tmp_path / "drop", tmp_path / "out", tmp_path / "q", tmp_path / "arch"),
        watch=Watch(settle_ms=50, rescan_s=3600, canary_wait_s=1),  # deaf is found out sooner
        pipeline=Pipeline(workers=1),
        output=Output(flush_s=0.2),
        metrics=Metrics(port=port),
    )
    service = Service(config, "run", events=deaf)
    seen: dict[str, Any] = {}

    async def drop_and_wait() -> None:
        deadline = time.monotonic() + 30
        while service.health.mode is None or service.health.mode.mode != "polling":
            assert time.monotonic() < deadline, "never fell back to polling"
            await asyncio.sleep(0.1)
        (tmp_path / "drop" / "a.csv").write_text("a,b\n1,2\n3,4\n")
        while service.summary.outcomes["ingested"] < 1:
            assert time.monotonic() < deadline, "the file was never committed"
            await asyncio.sleep(0.1)
        seen["healthz"] = await asyncio.to_thread(_get, port, "/healthz")
        seen["metrics"] = (await asyncio.to_thread(_get, port, "/metrics"))[1]
        seen["status"] = await asyncio.to_thread(status.collect, config)
        service.stop.set()

    async def main() -> None:
        task = asyncio.create_task(drop_and_wait())
        task.add_done_callback(lambda _: service.stop.set())  # also when it fails
        await service.serve()
        await task

    asyncio.run(main())

    assert seen["healthz"] == (200, "ok\n"), "a watcher that polls still hears"
    assert 'ingest_watch_mode{mode="polling"} 1.0' in seen["metrics"]
    watcher = seen["status"]["watcher"]
    assert watcher["mode"] == "polling" and "canary" in watcher["reason"]
    assert "within 1 s" in watcher["reason"], watcher["reason"]
    rows = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{tmp_path}/out/records/**/*.parquet')"
    ).fetchall()
    assert rows == [(2,)]
    assert not (tmp_path / "drop" / CANARY).exists()
    assert status.collect(config)["watcher"] is None, "the mode file goes with the service"
