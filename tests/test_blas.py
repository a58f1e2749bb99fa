"""numpy's BLAS runs on one thread in the service's process and in every process it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import psutil
import pytest

from ingest import blas

from .conftest import Folder, Service, wait_for, write_csv

# Runs `ingest once` in a fresh interpreter, as the console script does, then reports the
# thread count of each BLAS that numpy loaded in that same process. numpy is loaded there
# only when needed: by an .npz file, whose members' headers are read before it is.
REPORT = """
import json, sys
from ingest.cli import main
code = main("once", "--config", sys.argv[1])
from threadpoolctl import threadpool_info
print(json.dumps([code, [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]]))
"""


def _without_blas_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in blas.ONE_THREAD}


def _write_npz(folder: Folder) -> None:
    np.savez(folder.drop / "b.npz", values=np.arange(12.0))


def _once_reports(folder: Folder, env: dict[str, str]) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", REPORT, str(folder.config)], env=env, cwd=folder.root,
        capture_output=True, text=True, timeout=120, check=True,
    )
    code, threads = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0, done.stderr
    assert threads, "numpy loaded no BLAS"
    return list(threads)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: BLAS starts one thread anyway")
def test_the_service_process_runs_blas_on_one_thread(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 50})
    write_csv(folder.drop / "a.csv", rows=20, seed=1)
    _write_npz(folder)
    assert _once_reports(folder, _without_blas_settings()) == [1]


def test_a_thread_count_the_operator_set_is_kept(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 50})
    write_csv(folder.drop / "a.csv", rows=20, seed=1)
    _write_npz(folder)
    env = _without_blas_settings() | {"OPENBLAS_NUM_THREADS": "2"}
    assert _once_reports(folder, env) == [2]


def test_the_forkserver_and_every_worker_inherit_one_blas_thread(
    folder: Folder, service: Callable[..., Service]
) -> None:
    saved = {k: os.environ.pop(k) for k in blas.ONE_THREAD if k in os.environ}
    try:
        svc = service()
        svc.wait_ready()
        main = psutil.Process(svc.proc.pid)
        wait_for(lambda: len(main.children(recursive=True)) >= 3, 30, "forkserver and 2 workers")
        for proc in main.children(recursive=True):
            environ = proc.environ()
            for name, value in blas.ONE_THREAD.items():
                assert environ.get(name) == value, proc.cmdline()
        assert svc.stop() == 0
    finally:
        os.environ.update(saved)
