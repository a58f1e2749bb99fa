"""Lines from all over a file that is to be read in blocks, read before its first block: a
worker finds where its quantiles lie in them, and every block counts its values there as
it goes (`compute/radix.py`), so that no pass over the staged blocks is needed after them.

Called in the main process. A guess and no more: lines that cannot be read as block 0
would be, or a file whose later lines differ from these, leave the search to the passes.
"""

from __future__ import annotations

from pathlib import Path

import aiofiles

from .. import regular

PLACES = 256  # where lines are read from, spread evenly over the file
PLACE_BYTES = 64 << 10  # read at each place, its first and last partial lines dropped
SHARE = 64  # at most this fraction of the file, and of memory_mb, is read
MIN_BLOCKS = 16  # a file of fewer blocks: one pass over them costs less than the lines


async def read_spread(path: str | Path, size: int, header: bool, memory: int) -> bytes:
    """The file's first line, if it is a header, and the whole lines read at each place:
    at most a SHARE-th of the file and of `memory` (memory_mb, in bytes)."""
    each = max(1, min(PLACE_BYTES, min(size, memory) // (SHARE * PLACES)))
    out = []
    async with aiofiles.open(path, "rb", opener=regular.settled_opener) as fh:
        if header:
            first = await fh.read(PLACE_BYTES)
            end = first.find(b"\n")
            if end < 0:
                return b""  # a header longer than a place: read it no further
            out.append(first[: end + 1])
        for place in range(PLACES):
            await fh.seek(place * size // PLACES)
            data = await fh.read(each)
            start, end = data.find(b"\n") + 1, data.rfind(b"\n") + 1
            if 0 < start < end:
                out.append(data[start:end])
    return b"".join(out)
