"""Reading inputs with aiofiles, and hashing them off the loop."""

from __future__ import annotations

import asyncio
import hashlib
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


def _read_all(paths: Sequence[Path]) -> list[bytes | OSError]:
    """Each file whole, or the error that kept it from being read."""
    read: list[bytes | OSError] = []
    for path in paths:
        try:
            with path.open("rb") as fh:
                read.append(fh.read())
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
            with path.open("rb", buffering=0) as fh:
                piece, length = buffer[offset:offset + size], 0
                while length < size and (got := fh.readinto(piece[length:])):
                    length += got
                if length == size and fh.read(1):
                    length += 1
            read.append(length)
        except OSError as exc:
            read.append(exc)
        offset += size
    return read


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
