"""Reading inputs with aiofiles, and hashing them off the loop.

A group of small files is read in one hop to aiofiles' thread, each with plain system
calls (open, an fstat that it is still a regular file, two fcntl to make the descriptor
block again, a read to the end, close): a Python file object costs one more (a last
empty read) and a few microseconds a file. Files bound for local workers (`send =
"bytes"`; by default they read their files themselves) go into a shared segment, a new
one with sendfile, a kept one through its mapping (`read_into_segment`).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import Sequence
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import aiofiles
import aiofiles.os

from .. import regular, shared


async def read_bytes(path: str | Path) -> bytes:
    """The whole file. Raises FileNotFoundError if it vanished since it was seen."""
    async with aiofiles.open(path, "rb", opener=regular.settled_opener) as fh:
        return await fh.read()


def _read_all(paths: Sequence[str | Path], sizes: Sequence[int]) -> list[bytes | OSError]:
    """Each file's bytes, at most one more than the size it settled at (then it grew), or
    the error that kept it from being read."""
    read: list[bytes | OSError] = []
    for path, size in zip(paths, sizes, strict=True):
        try:
            read.append(_whole(path, size))
        except OSError as exc:
            read.append(exc.with_traceback(None))
    return read


def _whole(path: str | Path, size: int) -> bytes:
    """The file's bytes, up to `size` + 1."""
    chunks: list[bytes] = []
    total = 0
    fd = regular.open_settled(path)
    try:
        while got := os.read(fd, size + 1 - total):
            chunks.append(got)
            total += len(got)
            if total >= size:  # as settled (a read short of the byte more: the end), or grown
                break
    finally:
        os.close(fd)
    return b"".join(chunks)


# Many small files in one hop to aiofiles' thread, not three hops (open, read, close) each.
read_files = aiofiles.os.wrap(_read_all)


def _read_all_into(
    paths: Sequence[str | Path], buffer: memoryview, sizes: Sequence[int]
) -> list[int | OSError]:
    """Each file into its slice of `buffer`, one after the other, `sizes` bytes each: its
    length (one more than its size if it is longer), or the error that kept it from
    being read."""
    read: list[int | OSError] = []
    offset = 0
    for path, size in zip(paths, sizes, strict=True):
        try:
            read.append(_fill(path, buffer[offset:offset + size]))
        except OSError as exc:
            # Without its frames: they hold views of the shared segment, which could not
            # be closed while the error lives.
            read.append(exc.with_traceback(None))
        offset += size
    return read


def _fill(path: str | Path, piece: memoryview) -> int:
    """Read the file into `piece`: the bytes read, or len(piece) + 1 if the file is longer
    (that byte is not kept)."""
    spare = memoryview(bytearray(1))
    length = 0
    fd = regular.open_settled(path)
    try:
        while got := os.readv(fd, [piece[length:], spare]):
            length += got
            if length >= len(piece):  # as settled (a read short of the byte more: the end)
                break
    finally:
        os.close(fd)
    return length


read_files_into = aiofiles.os.wrap(_read_all_into)


def _send_all(paths: Sequence[str | Path], out: int, sizes: Sequence[int]) -> list[int | OSError]:
    """As `_read_all_into`, into the file `out` (a new shared segment's) with sendfile.
    Closes `out`, a descriptor of its own: a read cancelled at shutdown runs on in its
    thread, and must not write to whatever file reuses the segment's number."""
    read: list[int | OSError] = []
    offset = 0
    try:
        for path, size in zip(paths, sizes, strict=True):
            try:
                read.append(_send(path, out, offset, size))
            except OSError as exc:
                read.append(exc.with_traceback(None))
            offset += size
    finally:
        os.close(out)
    return read


def _send(path: str | Path, out: int, offset: int, size: int) -> int:
    """Copy the file into `out` at `offset`, in the kernel: its length, or `size` + 1 if
    it is longer (that byte is not copied)."""
    length = 0
    fd = regular.open_settled(path)
    try:
        while length < size and (sent := _copy(fd, out, offset, length, size - length)):
            length += sent
        if length == size and os.pread(fd, 1, size):
            length += 1
    finally:
        os.close(fd)
    return length


COPY_CHUNK_BYTES = 8 * 1024 * 1024


def _copy(fd: int, out: int, offset: int, at: int, count: int) -> int:
    """Up to `count` bytes of `fd` from `at`, to `out` at `offset` + `at`: with sendfile, or
    where the drop folder's file system cannot splice (some FUSE mounts), a read and a
    write. sendfile writes at `out`'s own offset, which the write leaves where it was."""
    try:
        os.lseek(out, offset + at, os.SEEK_SET)
        return os.sendfile(out, fd, at, count)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    return os.pwrite(out, os.pread(fd, min(count, COPY_CHUNK_BYTES), at), offset + at)


# A new segment's pages are not yet in the service's page tables: read() into its mapping
# faults each one in (0.46 ms of CPU a MB of `large`, 0.62 of `small`'s groups), sendfile
# into its file does not (0.37 and 0.34). A kept segment's pages are mapped already, and
# read() into them is the cheaper (0.17 and 0.13, against 0.29 and 0.17).
send_files_into = aiofiles.os.wrap(_send_all)


async def read_into_segment(
    paths: Sequence[str | Path], segment: SharedMemory, sizes: Sequence[int], fresh: bool
) -> list[int | OSError]:
    """Each file into its place in the segment, one after the other (`_read_all_into`)."""
    fd = shared.descriptor(segment)
    if fresh and fd >= 0:
        return await send_files_into(paths, os.dup(fd), sizes)
    return await read_files_into(paths, shared.view(segment), sizes)


HASH_CHUNK_BYTES = 8 * 1024 * 1024


async def sha256_of_file(path: str | Path) -> tuple[str, int]:
    """The digest and length of a file too big to hold, read in chunks; a thread hashes each."""
    digest = hashlib.sha256()
    length = 0
    async with aiofiles.open(path, "rb", opener=regular.settled_opener) as fh:
        while chunk := await fh.read(HASH_CHUNK_BYTES):
            length += len(chunk)
            await asyncio.to_thread(digest.update, chunk)
    return digest.hexdigest(), length
