"""A worker of the pool starts with one BLAS thread: the pool owns the cores."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from ingest.compute.sniff import sweep_samples
from ingest.compute.startup import init_worker


def blas_threads() -> list[int]:
    """Runs in the worker: the thread count of each BLAS numpy loaded, after a long dot."""
    values = np.arange(100_000, dtype=np.float64)
    assert float(np.dot(values, values)) > 0
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_a_worker_runs_blas_on_one_thread() -> None:
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(
        1, mp_context=context, initializer=init_worker, initargs=(os.getpid(),)
    ) as pool:
        found = pool.submit(blas_threads).result(timeout=60)
    assert found and all(threads == 1 for threads in found)



def test_sniff_samples_a_killed_worker_left_are_removed_and_fresh_ones_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sniff writes its sample to a temporary file; a worker killed meanwhile leaves it.
    # A worker removes such leftovers as it starts (`init_worker`).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / "ingest-sniff-left.csv"
    fresh = tmp_path / "ingest-sniff-now.csv"
    other = tmp_path / "someone-else.csv"
    for path in (stale, fresh, other):
        path.write_text("a,b\n1,2\n")
    hours_ago = time.time() - 2 * 3600
    for path in (stale, other):
        os.utime(path, (hours_ago, hours_ago))
    assert sweep_samples() == 1
    assert not stale.exists() and fresh.exists() and other.exists()
