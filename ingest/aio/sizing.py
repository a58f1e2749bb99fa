"""How a settled file is to be read: whole, in blocks, or not at all, by what it becomes
in memory.

Runs on the event loop; measuring a compressed file goes to a thread
(`footprint.footprint`). The byte budget is charged with what a file takes in
memory, not its size on disk: a 3 MB .csv.gz can be 1.5 GB of CSV.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..config import Config
from ..files import DropFile
from ..footprint import Footprint, footprint, measured
from .stream import STREAM_SHARE, why_not_streamed

log = logging.getLogger("ingest.sizing")

WHOLE, BLOCKS, REFUSED = "whole", "blocks", "refused"


@dataclass  # not frozen: made for every input (`files.DropFile`)
class Plan:
    how: str  # WHOLE | BLOCKS | REFUSED
    in_memory: int  # bytes to charge the budget with, for WHOLE
    reason: str = ""  # why it is REFUSED (quarantined as TooLarge)


def plain_plan(file: DropFile, limit: int) -> Plan | None:
    """The plan of most files, made with no await: one that takes in memory what it
    takes on disk, small enough to be read whole. None: `plan` decides."""
    if file.size > limit // STREAM_SHARE or measured(file.rel):
        return None
    return Plan(WHOLE, file.size)


async def plan(config: Config, file: DropFile, limit: int) -> Plan:
    """Raises OSError if a compressed file cannot be read to measure it."""
    measure = measured(file.rel)
    # Whether it could be read in blocks matters only to a file that may be too big to hold:
    # most files are not, and this runs on the event loop for each.
    why_not = (
        why_not_streamed(config, file.rel)
        if measure or file.size > limit // STREAM_SHARE else None
    )
    in_memory, unbounded = file.size, ""
    if measure:
        # Past this, the exact size does not matter: the file is streamed or refused.
        cap = limit // STREAM_SHARE if why_not is None else limit
        try:
            found = await asyncio.to_thread(footprint, file.path, file.rel, file.size, cap + 1)
        except OSError:
            raise
        except Exception as exc:  # headers no one foresaw: refused, not trusted
            log.exception("%s: could not find what it becomes in memory", file.rel)
            found = Footprint(file.size, f"its headers could not be read ({exc!r})")
        in_memory, unbounded = found.bytes, found.unbounded
    memory_mb = config.pipeline.memory_mb
    if unbounded:
        return Plan(REFUSED, in_memory, (
            f"its expansion in memory cannot be bounded under memory_mb = {memory_mb}"
            f" before it is read: {unbounded}"
        ))
    if in_memory > limit // STREAM_SHARE and why_not is None:
        return Plan(BLOCKS, in_memory)
    if in_memory > limit:
        size = (
            f"{file.size} bytes" if in_memory == file.size
            else f"{file.size} bytes on disk, {in_memory} bytes or more once decompressed,"
        )
        return Plan(REFUSED, in_memory, (
            f"{size} is more than memory_mb = {memory_mb} allows in memory at once,"
            f" and {why_not}; raise [pipeline] memory_mb to ingest it"
        ))
    return Plan(WHOLE, in_memory)
