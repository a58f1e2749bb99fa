"""Take some inputs' rows out of a task's part files before they are committed.

Runs in the committer's thread. A worker hashes each file as it reads it, so a
duplicate (its bytes committed already, or held by another file in flight) is
known only once its task's result is back, with its rows already in the part
files beside the other files'. Those parts are written again without them,
footer and all; a part that holds nothing else is dropped. Duplicates are rare:
the cost is paid only for the parts that hold one. A batch whose commit keeps
failing is split in two the same way (`split`, `store/lasting.py`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..jobs import EncodedPart
from ..partfile import FOOTER_SOURCES, to_parquet
from .merge import sources_of
from .parts import StagedPart, remove_staged

Part = EncodedPart | StagedPart


def without(parts: Sequence[Part], dropped: set[str], compression: str) -> list[Part]:
    """The parts with no rows of the inputs named in `dropped`."""
    kept: list[Part] = []
    for part in parts:
        sources = part.sources
        if sources is None or dropped.isdisjoint(sources):
            kept.append(part)
            continue
        rest = tuple(name for name in sources if name not in dropped)
        if rest:
            kept.append(_rewritten(part, dropped, rest, compression))
        elif isinstance(part, StagedPart):
            part.temp.unlink(missing_ok=True)
    return kept


def split(
    parts: Sequence[Part], first: set[str], compression: str
) -> tuple[list[Part], list[Part]]:
    """The parts as two sets, one holding the rows of the inputs named in `first`, the other
    the rest's: a batch whose commit keeps failing is committed in halves. A part with
    rows of one side only goes to that side as it is. The parts are left as they were
    until both halves are written, so a split that fails can be retried whole."""
    ones: list[Part] = []
    others: list[Part] = []
    written: list[Part] = []
    try:
        for part in parts:
            if part.sources is None:
                raise ValueError(f"a part of {part.table} does not say whose rows it holds")
            mine = tuple(name for name in part.sources if name in first)
            theirs = tuple(name for name in part.sources if name not in first)
            if not theirs:
                ones.append(part)
            elif not mine:
                others.append(part)
            else:
                for side, keep, drop, suffix in ((ones, mine, theirs, ".a"),
                                                 (others, theirs, mine, ".b")):
                    into = part.temp.with_name(part.temp.name + suffix) \
                        if isinstance(part, StagedPart) else None
                    written.append(_rewritten(part, set(drop), keep, compression, into))
                    side.append(written[-1])
    except BaseException:
        remove_staged(written)
        raise
    kept = {id(part) for part in ones + others}
    remove_staged([part for part in parts if id(part) not in kept])
    return ones, others


def _rewritten(
    part: Part, dropped: set[str], rest: tuple[str, ...], compression: str,
    into: Path | None = None,
) -> Part:
    """The part without the rows of `dropped`; a staged one is written over its temp file,
    or to `into`."""
    import pyarrow.compute as pc  # the service's process loads it only to rewrite a part

    source = part.temp if isinstance(part, StagedPart) else pa.BufferReader(part.data)
    table = pq.read_table(source)
    footer = dict(table.schema.metadata or {})
    footer[FOOTER_SOURCES] = json.dumps(
        [list(source) for source in sources_of(footer) if source[0] not in dropped]
    ).encode()
    keep = pc.invert(pc.is_in(table["source_file"], value_set=pa.array(sorted(dropped))))
    table = table.filter(keep).replace_schema_metadata(None)
    if part.schema:
        # The part's schema exactly as the worker wrote it, dictionaries and all.
        table = table.cast(pa.ipc.read_schema(pa.py_buffer(part.schema)))
    data = to_parquet(table, compression, footer)
    if isinstance(part, EncodedPart):
        return EncodedPart(part.table, data, rest, part.schema, part.settled)
    target = into or part.temp
    temp = target.with_name(target.name + ".kept")
    try:
        temp.write_bytes(data)
        temp.replace(target)  # not durable yet: the commit fsyncs it, as any worker's part
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return StagedPart(part.table, target, False, part.schema, rest, part.settled)
