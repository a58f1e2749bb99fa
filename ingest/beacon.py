"""A task's beacon: which worker runs it, and since when it is in its current step.

    Out-of-process (worker)                 |  In-process (event loop, via a thread)
    report(beacon): write the pid ----------+--> read(beacon) -> (pid, seconds idle)
    beat(beacon): touch, at each step       |    past task_timeout_s and a margin in one
                                            |    step: kill that worker, and only it

A plain file under `_ingest/tmp`, beside the parts the worker writes: the local
pool shares the service's disk, and a file needs no channel that could itself hang
or die with the worker (a pipe or a queue does). A ProcessPoolExecutor does not say
which of its workers runs a job; the worker says it here. Its mtime is the
heartbeat: one `utime` per file of the task, microseconds against a file's
milliseconds. Start-up clears `_ingest/tmp`, beacons a killed run left included.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def report(beacon: str | None) -> None:
    """Called in the worker as a task starts: write the worker's pid."""
    if beacon is not None:
        with contextlib.suppress(OSError):
            Path(beacon).write_text(str(os.getpid()))


def beat(beacon: str | None) -> None:
    """Called in the worker as each step (a file, the encoding) starts."""
    if beacon is not None:
        with contextlib.suppress(OSError):
            os.utime(beacon)


def done(beacon: str | None) -> None:
    """Called in the worker as the task ends."""
    if beacon is not None:
        with contextlib.suppress(OSError):
            os.unlink(beacon)


def read(beacon: str) -> tuple[int | None, float]:
    """Called in a thread of the main process: (the worker's pid, seconds since its last
    beat); (None, 0) while no worker has started the task (it waits behind others)."""
    try:
        idle = time.time() - os.stat(beacon).st_mtime
        pid = int(Path(beacon).read_text())
    except (OSError, ValueError):  # absent, or caught as it is written
        return None, 0.0
    return pid, max(idle, 0.0)
