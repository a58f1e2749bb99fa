"""Keep freed memory from piling up in glibc's per-thread malloc arenas.

glibc gives each thread that allocates its own arena (up to eight per core),
and an arena keeps what is freed in it for reuse. The service moves buffers of
megabytes between its reading threads, the loop and the pool's feeder thread,
so every arena ends up holding a few of them: on a file read in blocks that
was over 100 MB of resident memory that nothing used. One arena costs nothing
measurable here, since the threads spend their time in system calls, not malloc.
"""

from __future__ import annotations

import ctypes
import os

ARENAS = 1
# A worker's largest buffers (a task's input, its decoded columns, its Parquet) are tens of
# megabytes, above glibc's largest mmap threshold (32 MB), so each one is mapped fresh and
# unmapped when freed. First touches of fresh pages are slow, most of all in a virtual
# machine: kept in the heap instead, the next task reuses them.
WORKER_MMAP_THRESHOLD = 256 << 20
WORKER_TRIM_THRESHOLD = 512 << 20
_M_TRIM_THRESHOLD = -1  # from malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _mallopt(option: int, value: int) -> None:
    """glibc's mallopt; does nothing where there is none. The C library is already loaded:
    looking it up by name (ctypes.util.find_library) would run ldconfig in a subprocess."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(option, value)


def limit_arenas() -> None:
    """For this process, from now on, and (through the environment) for every process it
    starts, such as the forkserver and the pool's workers."""
    os.environ.setdefault("MALLOC_ARENA_MAX", str(ARENAS))
    _mallopt(_M_ARENA_MAX, int(os.environ["MALLOC_ARENA_MAX"]))


def reuse_large_buffers() -> None:
    """In a worker: serve large buffers from the heap and keep them there when freed."""
    _mallopt(_M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)
    _mallopt(_M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD)
