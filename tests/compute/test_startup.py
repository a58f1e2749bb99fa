"""A worker of the pool starts with one BLAS thread: the pool owns the cores."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info

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
