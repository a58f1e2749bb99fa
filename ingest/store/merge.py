"""Merge part files into one, optionally cast to a wider schema, keeping their provenance.

Runs in a thread of the main process, for `compact.py`. Reads one part at a time and
writes row groups of about `ROW_GROUP_ROWS` rows, so memory stays near one row group
however many small parts go into a file.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..partfile import (
    FOOTER_SCHEMA_VERSION,
    FOOTER_SOURCES,
    FOOTER_VERSION,
    ROW_GROUP_ROWS,
    writer_options,
)

# A row group is written once this many bytes are buffered, even with fewer rows.
BUFFER_BYTES = 64 * 1024 * 1024

Source = tuple[str, str]  # (source_file, sha256)


def footer_of(path: Path) -> dict[bytes, bytes]:
    return dict(pq.read_schema(path).metadata or {})


def sources_of(footer: dict[bytes, bytes]) -> list[tuple[str, str, int]]:
    return [(f, sha, int(rows)) for f, sha, rows in json.loads(footer.get(FOOTER_SOURCES, b"[]"))]


def merged_footer(
    footers: Sequence[dict[bytes, bytes]], schema_version: int | None
) -> dict[bytes, bytes]:
    """The sources of all the parts (rows summed per input), this package's version,
    and the schema version: the one given, or the first part's."""
    rows: dict[Source, int] = defaultdict(int)
    for footer in footers:
        for f, sha, n in sources_of(footer):
            rows[(f, sha)] += n
    meta = {
        FOOTER_VERSION: __version__.encode(),
        FOOTER_SOURCES: json.dumps([[f, sha, n] for (f, sha), n in rows.items()]).encode(),
    }
    if schema_version is not None:
        meta[FOOTER_SCHEMA_VERSION] = str(schema_version).encode()
    elif footers and FOOTER_SCHEMA_VERSION in footers[0]:
        meta[FOOTER_SCHEMA_VERSION] = footers[0][FOOTER_SCHEMA_VERSION]
    return meta


def merge(
    parts: Sequence[Path], out: Path, compression: str,
    schema: pa.Schema | None = None, schema_version: int | None = None,
) -> list[Source]:
    """Write the rows of `parts`, in order, to `out` (fsynced); return the inputs it holds."""
    from ..fitting import fit  # pyarrow.compute: the service's process loads it only here

    footers = [footer_of(path) for path in parts]
    target = schema if schema is not None else pq.read_schema(parts[0]).remove_metadata()
    meta = merged_footer(footers, schema_version)
    buffered: list[pa.Table] = []
    rows = size = 0
    with pq.ParquetWriter(
        out, target.with_metadata(meta), **writer_options(target, compression)
    ) as writer:
        for path in parts:
            table = pq.ParquetFile(path).read().replace_schema_metadata(None)
            buffered.append(fit(table, target) if schema is not None else table)
            rows, size = rows + table.num_rows, size + table.nbytes
            if rows >= ROW_GROUP_ROWS or size >= BUFFER_BYTES:
                writer.write_table(pa.concat_tables(buffered), row_group_size=ROW_GROUP_ROWS)
                buffered, rows, size = [], 0, 0
        if buffered:
            writer.write_table(pa.concat_tables(buffered), row_group_size=ROW_GROUP_ROWS)
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return [(f, sha) for f, sha, _ in sources_of(meta)]
