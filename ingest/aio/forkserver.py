"""The local pool's forkserver, the process its workers are forked from.

forkserver, not fork: the service runs threads (aiofiles, watchfiles, commits), and
forking a threaded process can copy a held lock into the child. The forkserver loads
the workers' modules once (its preload), so a worker starts with them loaded.

Called in the main process. This module imports nothing else of the service's but
`stop_signals`, so that the command line can start the forkserver before the service's
own imports.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import sys
from collections.abc import Iterator

from ..stop_signals import children_spared

PRELOAD = ["ingest.compute.task"]


def context() -> multiprocessing.context.ForkServerContext:
    found = multiprocessing.get_context("forkserver")
    found.set_forkserver_preload(PRELOAD)
    return found


def start() -> None:
    """Start the forkserver now, without waiting for it: it loads the workers' modules on
    another core while this process loads its own (some 0.15 s of a core each), and the
    pool forks its workers from it once the service has started. Called again before each
    pool is made: one that has died is started again here. Any thread may call it."""
    context()
    # The forkserver, the resource tracker it starts and every worker it forks keep the
    # signals sent to the whole group that are the service's alone.
    with children_spared(), _this_path():
        multiprocessing.forkserver.ensure_running()


@contextlib.contextmanager
def _this_path() -> Iterator[None]:
    """The forkserver started with this process's import path. Python 3.11 starts it with
    `python -c`, which puts the working folder first on its path, and does not use the
    path it is handed: a `numpy.py` in the folder the `ingest` command was started from,
    or a package named `ingest` there, was what every worker imported. Its environment
    names this process's path instead, in safe-path mode (no working folder), for as long
    as it takes to start it."""
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "PYTHONSAFEPATH")}
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
