"""The one door to the workers: a real hop to another process, and dask behind the same door."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from ingest.aio.to_compute import Compute
from ingest.compute.task import warm
from ingest.config import Features
from ingest.errors import PoolStopped, TaskTimeout, WorkerCrashed
from ingest.jobs import Job, Task

from ..conftest import SAMPLE_DATA, Folder


def test_compute_runs_jobs_in_another_process() -> None:
    async def main() -> tuple[int, int]:
        compute = Compute("process", 1, 60)
        await asyncio.to_thread(compute.start)
        try:
            task = Task((Job("a.csv", "0" * 64, b"a,b\n1,2\n"),), Features())
            result = await compute.run(task)
            assert result.outcomes[0].failure is None and result.outcomes[0].rows == 1
            assert {part.table for part in result.parts} == {"records", "features"}
            loop = asyncio.get_running_loop()
            # The pool is the service's own; ask it directly for a worker's pid.
            worker = await loop.run_in_executor(compute._executor, warm)
            return worker, os.getpid()
        finally:
            compute.shutdown()

    worker, parent = asyncio.run(main(), debug=True)
    assert worker != parent


@pytest.mark.timeout(180)
def test_dask_local_executor_is_a_one_line_switch(folder: Folder) -> None:
    folder.write_config(
        pipeline={"workers": 2, "executor": "dask://local"}, watch={"settle_ms": 0}
    )
    for sample in SAMPLE_DATA.iterdir():
        (folder.drop / sample.name).write_bytes(sample.read_bytes())

    result = folder.ingest("once", timeout=170)

    assert result.returncode == 3, result.stderr
    rows = dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1"))
    assert rows["sensor_d_2026-11-02.csv.gz"] == 1000
    assert "sensor_e_malformed.csv" not in rows


@pytest.mark.parametrize("plugins", [False, True])
def test_workers_load_pandas_only_for_plugin_feature_sets(plugins: bool) -> None:
    """pyarrow would import pandas in every worker on its first conversion; the built-in
    sets never need it, and a plugin may. Read from the workers' own memory maps."""
    pytest.importorskip("pandas")

    def pandas_loaded(pid: int) -> bool:
        with open(f"/proc/{pid}/maps") as maps:
            return "/pandas/_libs/" in maps.read()

    async def main() -> list[bool]:
        compute = Compute("process", 2, 60, plugins=plugins)
        await asyncio.to_thread(compute.start)
        try:
            task = Task((Job("a.csv", "0" * 64, b"a,b\n1,2\n"),), Features())
            result = await compute.run(task)
            assert result.outcomes[0].failure is None and result.outcomes[0].rows == 1
            loop = asyncio.get_running_loop()
            pids = {await loop.run_in_executor(compute._executor, warm) for _ in range(8)}
            return [pandas_loaded(pid) for pid in pids]
        finally:
            compute.shutdown()

    loaded = asyncio.run(main())
    assert loaded and loaded == [plugins] * len(loaded)


def test_calls_made_while_the_pool_is_replaced_run_on_the_new_pool() -> None:
    """A worker dies; calls made before its pool is replaced wait for the new one,
    instead of being refused by the broken pool and charged a crash of their own."""

    async def main() -> tuple[list[object], int]:
        compute = Compute("process", 2, 60)
        await asyncio.to_thread(compute.start)
        try:
            killer = asyncio.ensure_future(compute.call(os._exit, 1, "a call that kills"))
            while not compute.breakages:  # the replacement has begun
                await asyncio.sleep(0.001)
            innocent = await asyncio.gather(
                *(compute.call(abs, -i, f"innocent call {i}") for i in range(8)),
                return_exceptions=True,
            )
            with pytest.raises(WorkerCrashed):
                await killer
            return innocent, compute.breakages
        finally:
            compute.shutdown()

    innocent, breakages = asyncio.run(main(), debug=True)
    assert innocent == list(range(8))
    assert breakages == 1


@pytest.mark.timeout(180)
def test_a_local_dask_cluster_starts_quietly_where_another_holds_port_8787() -> None:
    """The scheduler's HTTP routes take any free port, not dask's default: another cluster
    on the machine (a notebook's, a second service's) made it warn and move (the suite
    runs with warnings as errors)."""
    held = socket.socket()
    try:
        held.bind(("", 8787))
        held.listen()
    except OSError:
        pass  # already held by another: the same for this test

    async def main() -> int:
        compute = Compute("dask://local", 1, 60)
        await asyncio.to_thread(compute.start)
        try:
            return await compute.call(abs, -3, "a call")
        finally:
            compute.shutdown()

    try:
        assert asyncio.run(main()) == 3
    finally:
        held.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("executor", ["process", "dask://local"])
def test_a_hash_pass_that_cannot_read_its_file_raises_the_error_and_breaks_no_worker(
    executor: str, tmp_path: Path
) -> None:
    """dask raises a worker's OSError as it was, and its own lost connections are OSErrors
    too: one raised by the function, through `calls`, is the file's, not a worker lost."""
    os.mkfifo(tmp_path / "swapped.csv")

    async def main() -> tuple[list[BaseException | tuple[str, int]], int]:
        compute = Compute(executor, 2, 60)
        await asyncio.to_thread(compute.start)
        try:
            got = await asyncio.gather(
                compute.sha256_of(tmp_path / "gone.csv", 10),
                compute.sha256_of(tmp_path / "swapped.csv", 10),
                return_exceptions=True,
            )
            return got, compute.breakages
        finally:
            compute.shutdown()

    (gone, swapped), breakages = asyncio.run(main())
    assert isinstance(gone, FileNotFoundError), gone
    assert isinstance(swapped, OSError) and swapped.strerror == "not a regular file", swapped
    assert breakages == 0


def test_calls_a_pool_stopped_for_a_hung_call_had_not_begun_are_run_again_not_cancelled() -> None:
    """Stopping the pool cancels the calls it had not begun: the cancellation reached the
    callers as their own, and a dispatcher so cancelled ended without a word, its files
    never resolved. They are PoolStopped, which the dispatcher runs again, uncharged."""

    async def main() -> list[object]:
        compute = Compute("process", 1, 0.5)
        await asyncio.to_thread(compute.start)
        try:
            hung = asyncio.ensure_future(compute.call(time.sleep, 60, "a hung call"))
            await asyncio.sleep(0.5)  # the one worker has it
            # Each with a backstop far past the hung call's (counted from submit, a call
            # that reports no steps waits `files` limits): not stopped for its own wait.
            waiting = await asyncio.gather(
                *(compute.call(abs, -i, f"a call behind it {i}", files=40) for i in range(4)),
                return_exceptions=True,
            )
            with pytest.raises(TaskTimeout):
                await hung
            return waiting
        finally:
            compute.shutdown()

    waiting = asyncio.run(main())
    assert not [w for w in waiting if isinstance(w, asyncio.CancelledError)], waiting
    assert all(w == i or isinstance(w, PoolStopped) for i, w in enumerate(waiting)), waiting
