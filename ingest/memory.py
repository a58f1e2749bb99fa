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
import ctypes.util
import os

ARENAS = 1
_M_ARENA_MAX = -8  # from malloc.h


def limit_arenas() -> None:
    """For this process, from now on, and (through the environment) for every process it
    starts, such as the forkserver and the pool's workers. Does nothing off glibc."""
    os.environ.setdefault("MALLOC_ARENA_MAX", str(ARENAS))
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, int(os.environ["MALLOC_ARENA_MAX"]))
