"""How every part file is written, by a worker or by the committer: the writer's settings
and the footer's keys.

Parquet is written for every common reader: microsecond timestamps (Spark rejects
nanoseconds), row groups sized for scans, and footer metadata naming the source
files and the package version. Workers write parts (`compute/encode.py`); the
committer rewrites them (a widened schema, a duplicate's rows taken out) and
compaction merges them (`store/`), with the same settings.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__

# Row groups of about a million rows: large enough for scans to skip by statistics,
# small enough that a reader's memory per column chunk stays modest.
ROW_GROUP_ROWS = 1 << 20
FOOTER_SOURCES = b"ingest.sources"
FOOTER_VERSION = b"ingest.version"
FOOTER_SCHEMA_VERSION = b"ingest.schema_version"

Source = tuple[str, str, int]  # (source_file, sha256, rows)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Strings repeat (names, codes, our own source columns): dictionary-encode them.
    Measurements repeat rarely: trying a dictionary on them first only costs time and space."""
    return [
        f.name for f in schema
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        or pa.types.is_binary(f.type) or pa.types.is_dictionary(f.type)
    ]


def writer_options(schema: pa.Schema, compression: str) -> dict[str, object]:
    """How every part file is written, for `pq.write_table` and `pq.ParquetWriter`."""
    return {
        "compression": None if compression == "none" else compression,
        "use_dictionary": _dictionary_columns(schema),
        "coerce_timestamps": "us",
        "allow_truncated_timestamps": True,
    }


def write(
    table: pa.Table, sink: str | pa.NativeFile, compression: str, footer: dict[bytes, bytes]
) -> None:
    pq.write_table(
        table.replace_schema_metadata(footer), sink, row_group_size=ROW_GROUP_ROWS,
        **writer_options(table.schema, compression),
    )


def to_parquet(table: pa.Table, compression: str, footer: dict[bytes, bytes]) -> bytes:
    sink = pa.BufferOutputStream()
    write(table, sink, compression, footer)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def footer(sources: list[Source], schema_version: int = 1) -> dict[bytes, bytes]:
    """The part's inputs as (source_file, sha256, rows), which `ingest ledger rebuild` reads,
    and the version of its table's schema it was written with."""
    return {
        FOOTER_VERSION: __version__.encode(),
        FOOTER_SOURCES: json.dumps([list(s) for s in sources]).encode(),
        FOOTER_SCHEMA_VERSION: str(schema_version).encode(),
    }
