"""Reading inputs with aiofiles, and hashing them off the loop.

A group of small files is read in one hop to aiofiles' thread, each with plain system
calls, three a file (open, a read to the end, close): a Python file object costs two
more (an fstat, a last empty read) and a few microseconds a file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import aiofiles
import aiofiles.os


async def read_bytes(path: Path) -> bytes:
    """The whole file. Raises FileNotFoundError if it vanished since it was seen."""
    async with aiofiles.open(path, "rb") as fh:
        return await fh.read()


async def read_into(path: Path, buffer: memoryview) -> int:
    """Fill `buffer` from the file. Returns the file's length, or len(buffer) + 1 if it
    is longer. Raises FileNotFoundError if it vanished since it was seen."""
    async with aiofiles.open(path, "rb") as fh:
        length = await fh.readinto(buffer) or 0
        if length == len(buffer) and await fh.read(1):
            length += 1
    return length


def _read_all(paths: Sequence[Path], sizes: Sequence[int]) -> list[bytes | OSError]:
    """Each file's bytes, at most one more than the size it settled at (then it grew), or
    the error that kept it from being read."""
    read: list[bytes | OSError] = []
    for path, size in zip(paths, sizes, strict=True):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                chunks: list[bytes] = []
                wanted = size + 1
                while wanted > 0:
                    chunks.append(got := os.read(fd, wanted))
                    if len(got) < wanted:  # short of what was asked: the end
                        break
                    wanted -= len(got)
                read.append(b"".join(chunks))
            finally:
                os.close(fd)
        except OSError as exc:
            read.append(exc)
    return read


# Many small files in one hop to aiofiles' thread, not three hops (open, read, close) each.
read_files = aiofiles.os.wrap(_read_all)


def _read_all_into(
    paths: Sequence[Path], buffer: memoryview, sizes: Sequence[int]
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
            read.append(exc)
        offset += size
    return read


def _fill(path: Path, piece: memoryview) -> int:
    """Read the file into `piece`: the bytes read, or len(piece) + 1 if the file is longer
    (that byte is not kept)."""
    spare = memoryview(bytearray(1))
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        length = 0
        while length <= len(piece):
            wanted = [piece[length:], spare] if length < len(piece) else [spare]
            got = os.readv(fd, wanted)
            length += got
            if got < sum(len(b) for b in wanted):  # short of what was asked: the end
                break
        return length
    finally:
        os.close(fd)


read_files_into = aiofiles.os.wrap(_read_all_into)


HASH_CHUNK_BYTES = 8 * 1024 * 1024


async def sha256_of_file(path: Path) -> tuple[str, int]:
    """The digest and length of a file too big to hold, read in chunks; a thread hashes each."""
    digest = hashlib.sha256()
    length = 0
    async with aiofiles.open(path, "rb") as fh:
        while chunk := await fh.read(HASH_CHUNK_BYTES):
            length += len(chunk)
            await asyncio.to_thread(digest.update, chunk)
    return digest.hexdigest(), length
