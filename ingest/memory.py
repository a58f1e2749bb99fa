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
# The service's own largest buffers are a big file's blocks as they are read and cut (16 MB,
# with at most a 16 MB record carried over). glibc maps each afresh, since the block freed
# before it was trimmed off the top of the heap, and each page is faulted in on first touch:
# a gigabyte read in blocks cost 1.2 to 1.6 s of system time, 0.5 to 0.7 s once they are
# served from the heap, up to 64 MB of freed heap kept for the next block (bench/README.md).
# Those 64 MB are outside memory_mb's budget, as the ledger's page cache is.
SERVICE_MMAP_THRESHOLD = 32 << 20
SERVICE_TRIM_THRESHOLD = 64 << 20
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
    value = os.environ.setdefault("MALLOC_ARENA_MAX", str(ARENAS))
    try:
        arenas = int(value)
    except ValueError:
        return  # glibc passes over a value that is not a number too, for every process
    if 0 < arenas < 2**31:  # mallopt's int
        _mallopt(_M_ARENA_MAX, arenas)


def reuse_large_buffers() -> None:
    """In a worker: serve large buffers from the heap and keep them there when freed."""
    _mallopt(_M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)
    _mallopt(_M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD)


def reuse_block_buffers() -> None:
    """In the service's process: the same for a big file's blocks, with less kept. Not
    passed on: the processes it starts are set up by their own code."""
    _mallopt(_M_MMAP_THRESHOLD, SERVICE_MMAP_THRESHOLD)
    _mallopt(_M_TRIM_THRESHOLD, SERVICE_TRIM_THRESHOLD)
