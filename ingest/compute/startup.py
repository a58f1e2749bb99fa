"""How a worker process starts: signals, niceness, one BLAS thread, pyarrow without pandas,
and an exit when the service is gone.

Called when the worker process starts (`init_worker`, the pool's initializer); a dask
worker is only tuned (`tune`, from `compute/on_cluster.py`), as it is not ours to signal.
"""

from __future__ import annotations

import importlib.abc
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import pyarrow as pa
from threadpoolctl import threadpool_limits

from .. import memory
from .sniff import sweep_samples

# Enough for the scheduler to favour the parent's event loop, not so much that
# other work on the machine starves the workers.
WORKER_NICENESS = 5
ORPHANED = 70  # EX_SOFTWARE: the worker outlived the service that started it


def init_worker(service_pid: int, plugins: bool = False) -> None:
    """Called when the worker process starts.

    Ctrl-C reaches the whole process group; the parent decides what it means,
    so a worker must not die of it halfway through a file. Workers also yield
    the CPU to the parent: when every core is busy, the event loop that feeds
    them must still wake on time.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICENESS)
    tune(plugins)
    sweep_samples()  # what a worker killed before this one left in the temp folder
    threading.Thread(
        target=_exit_when_gone, args=(service_pid,), name="ingest-service-watch", daemon=True
    ).start()


def tune(plugins: bool = False) -> None:
    """What any process that runs ingest's tasks needs, a pool's worker or a cluster's:
    large buffers kept for reuse, one BLAS thread, pyarrow without pandas."""
    memory.reuse_large_buffers()
    one_blas_thread()
    if not plugins:
        pyarrow_without_pandas()


def one_blas_thread() -> None:
    """numpy's BLAS (OpenBLAS) takes a dot product of more than 10,000 values (a large
    file's sums of squares, and each block's) on a thread per core, and its threads then
    spin, waiting for more: on `big` that doubled the CPU of each block's statistics, and
    took it from the other workers. The pool owns the cores; one thread each is enough."""
    threadpool_limits(limits=1, user_api="blas")


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] == "pandas":
            raise ImportError("pandas is not used by ingest's own feature sets")
        return None


def pyarrow_without_pandas() -> None:
    """Spare each worker pyarrow's import of pandas: 0.3 s of CPU at start-up.

    pyarrow imports pandas, if it is installed, on its first conversion of a
    Python value, to tell whether the value is a pandas object, and remembers
    the answer. The built-in feature sets never hand it one, so that first
    check is made to find no pandas. A plugin feature set might, so a config
    with plugins keeps pyarrow's pandas support. Importing pandas itself still
    works either way.
    """
    if "pandas" in sys.modules:
        return
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(finder)


def _exit_when_gone(service_pid: int) -> None:
    """Exit as soon as the service process is gone, however it died.

    A pool worker forked by the forkserver holds its own copy of the pipes that
    would otherwise tell it, so after a kill -9 of the service it would wait
    for work forever, and keep the forkserver alive with it.
    """
    try:
        pidfd = os.pidfd_open(service_pid)
    except (OSError, AttributeError):
        while _alive(service_pid):
            time.sleep(1.0)
    else:
        select.select([pidfd], [], [])
    os._exit(ORPHANED)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True
