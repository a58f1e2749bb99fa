"""Inputs handed to a local worker through shared memory, not through the pool's pipe:
the blocks of a streamed file, and with `[pipeline] send = "bytes"` a file sent whole
(by default a local worker reads such a file itself).

Pickled into the pipe, a file's bytes are copied twice more, and the pickling
holds the GIL: 30 to 45 ms for an 87 MB file, during which the event loop
cannot run. Instead the service reads such a file straight into a segment
and sends the segment's name; the worker copies the bytes out once, and
hashes them. Only a worker on this machine can attach, so a dask executor still
gets the bytes. Below `SHARED_MIN_BYTES` a segment of its own costs a file
more than the pipe does; small files read together (`aio/intake.py`) share one.

The service removes each segment once the last file in it is resolved. Segments are
named after the output folder, so that start-up removes whatever a killed
service left, as it does with temp files: one service owns an output folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

SHARED_MIN_BYTES = 1 << 20
SHM_DIR = Path("/dev/shm")  # where Linux keeps POSIX shared memory, by name


def prefix_for(output: Path) -> str:
    """The name prefix of one output folder's segments."""
    return "ingest-" + hashlib.sha256(str(output.resolve()).encode()).hexdigest()[:12] + "-"


def create(prefix: str, size: int) -> SharedMemory | None:
    """A segment of `size` bytes, its memory reserved; None if shared memory has no room.

    Without the reservation a full /dev/shm (64 MB in a default Docker container)
    shows only when the file is read into it, as a failed read.
    """
    try:
        segment = SharedMemory(prefix + secrets.token_hex(8), create=True, size=max(size, 1))
    except OSError:
        return None
    fd = descriptor(segment)
    if fd >= 0:
        try:
            os.posix_fallocate(fd, 0, max(size, 1))
        except OSError:
            remove(segment)
            return None
    return segment


def descriptor(segment: SharedMemory) -> int:
    """The segment's file descriptor, on POSIX; -1 where it has none."""
    fd: int = getattr(segment, "_fd", -1)
    return fd


def view(segment: SharedMemory) -> memoryview:
    buffer = segment.buf
    if buffer is None:
        raise ValueError(f"shared memory {segment.name} is closed")
    return buffer


def take(name: str, offset: int = 0, length: int | None = None) -> bytes:
    """In the worker: the segment's bytes (or `length` of them from `offset`: one file of
    a group read into one segment), copied out. The service removes the segment."""
    segment = SharedMemory(name=name)
    try:
        buffer = view(segment)
        end = len(buffer) if length is None else offset + length
        if end > len(buffer):
            raise ValueError(f"shared memory {name} holds {len(buffer)} bytes, not {end}")
        return bytes(buffer[offset:end])
    finally:
        segment.close()


def remove(segment: SharedMemory) -> None:
    """Unlink, then unmap. Never raises: a read still running in a thread (cancelled at
    shutdown) keeps the mapping alive until it ends, and the name is gone either way."""
    with contextlib.suppress(OSError):
        segment.unlink()
    with contextlib.suppress(BufferError, OSError):
        segment.close()


def sweep(prefix: str) -> int:
    """At start-up: remove the segments a killed service left behind. Returns how many."""
    if not SHM_DIR.is_dir():
        return 0
    removed = 0
    for path in SHM_DIR.glob(prefix + "*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed
