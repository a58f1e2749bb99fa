"""An input file as the service sees it once it has settled."""

from __future__ import annotations

import os
from dataclasses import dataclass

# The ledger holds an mtime as SQLite's 64-bit integer, nanoseconds from 1677 to 2262; a
# file system may hold one beyond (ext4 up to 2446: a clock set wrong, an archive restored
# with its dates). Such an mtime is wrapped into those 64 bits, as two's complement does, for
# the ledger and for every comparison with a stat alike: two of them still differ (a file
# rewritten at the same size is still seen to change), and read as dates before 1970.
_BITS = 1 << 64
_HALF = 1 << 63


def mtime_ns(st: os.stat_result) -> int:
    """The file's mtime in nanoseconds, as the service keeps and compares it."""
    ns = st.st_mtime_ns
    return ns if -_HALF <= ns < _HALF else (ns + _HALF) % _BITS - _HALF


# Not frozen, as none of the records made for every input in the service's process is:
# a frozen dataclass's __init__ sets each field through a call to object.__setattr__,
# some 4 µs an input over them all (bench/README.md).
@dataclass
class DropFile:
    """A settled file in the drop folder: its identity is (rel, size, mtime_ns)."""

    # Its path as text, as a directory listing gives it: a `Path` made of it would be
    # formatted back to text for every system call (some µs a file on a backlog).
    path: str
    rel: str  # relative to the drop folder, "/"-separated: the `source_file` column
    size: int
    mtime_ns: int
    seen_at: float  # wall clock of first sight, for the ledger
    seen_mono: float  # monotonic clock of first sight, for latency

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.rel, self.size, self.mtime_ns)
