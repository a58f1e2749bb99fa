"""The one door to the workers: a real hop to another process, and dask behind the same door."""

from __future__ import annotations

import asyncio
import os

import pytest

from ingest.aio.to_compute import Compute
from ingest.compute.task import warm
from ingest.config import Features
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
