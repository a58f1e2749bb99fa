"""Arrow tables to Parquet, in the worker: part files staged for the service, or their bytes.

Runs in a worker process. Parquet is written for every common reader:
microsecond timestamps (Spark rejects nanoseconds), row groups sized for
scans, and footer metadata naming the source files and the package version.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..jobs import EncodedPart, WrittenPart
from . import features

# Row groups of about a million rows: large enough for scans to skip by statistics,
# small enough that a reader's memory per column chunk stays modest.
ROW_GROUP_ROWS = 1 << 20
FOOTER_SOURCES = b"ingest.sources"
FOOTER_VERSION = b"ingest.version"


@dataclass
class Featurised:
    """One file's tables, between decoding and encoding."""

    source_file: str
    sha256: str
    rows: int
    records: pa.Table | None
    features: list[dict[str, object]] | None  # rows; a task makes one table of them all


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


def to_parquet(table: pa.Table, compression: str, footer: dict[bytes, bytes]) -> bytes:
    sink = pa.BufferOutputStream()
    _write(table, sink, compression, footer)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _write(
    table: pa.Table, sink: str | pa.NativeFile, compression: str, footer: dict[bytes, bytes]
) -> None:
    pq.write_table(
        table.replace_schema_metadata(footer),
        sink,
        compression=None if compression == "none" else compression,
        use_dictionary=_dictionary_columns(table.schema),
        row_group_size=ROW_GROUP_ROWS,
        coerce_timestamps="us",
        allow_truncated_timestamps=True,
    )


def with_sources(table: pa.Table, source_file: str, sha256: str) -> pa.Table:
    """The records of one input: its own columns, then where each row came from."""
    rows = table.num_rows
    return table.append_column(
        "source_file", pa.repeat(pa.scalar(source_file, pa.string()), rows)
    ).append_column("source_sha256", pa.repeat(pa.scalar(sha256, pa.string()), rows))


def stamped(table: pa.Table) -> pa.Table:
    """Features rows with the time they were made."""
    stamp = pa.scalar(int(time.time() * 1_000_000), pa.timestamp("us", tz="UTC"))
    return table.append_column("ingested_at", pa.repeat(stamp, table.num_rows))


def footer(sources: list[tuple[str, str, int]]) -> dict[bytes, bytes]:
    """The part's inputs as (source_file, sha256, rows), which `ingest ledger rebuild` reads."""
    return {
        FOOTER_VERSION: __version__.encode(),
        FOOTER_SOURCES: json.dumps([list(s) for s in sources]).encode(),
    }


def _footer(members: list[Featurised]) -> dict[bytes, bytes]:
    return footer([(m.source_file, m.sha256, m.rows) for m in members])


def _part(
    table_name: str, data: pa.Table, members: list[Featurised], compression: str,
    stage: str | None, index: int,
) -> EncodedPart | WrittenPart:
    meta, sources = _footer(members), tuple(m.source_file for m in members)
    if stage is not None:
        path = f"{stage}-{index}.parquet"
        try:
            _write(data, path, compression, meta)
            return WrittenPart(table_name, path, sources)
        except OSError:
            # A full disk, say. The bytes go back instead: the service's own write meets
            # the same error, keeps the inputs pending and retries, as for any commit.
            with contextlib.suppress(OSError):
                os.unlink(path)
    return EncodedPart(table_name, to_parquet(data, compression, meta), sources)


def encode(
    done: list[Featurised], compression: str, sets: tuple[str, ...], stage: str | None = None
) -> list[EncodedPart | WrittenPart]:
    """One records part per schema (files with different schemas never share a part),
    and one features part. With `stage`, each is written to a file named from it; if one
    fails, those already written are removed."""
    parts: list[EncodedPart | WrittenPart] = []
    try:
        for index, (table_name, data, members) in enumerate(_tables(done, sets)):
            parts.append(_part(table_name, data, members, compression, stage, index))
    except BaseException:
        for part in parts:
            if isinstance(part, WrittenPart):
                with contextlib.suppress(OSError):
                    os.unlink(part.path)
        raise
    return parts


def _tables(
    done: list[Featurised], sets: tuple[str, ...]
) -> list[tuple[str, pa.Table, list[Featurised]]]:
    """Each part's table name, rows and member files."""
    tables: list[tuple[str, pa.Table, list[Featurised]]] = []
    groups: dict[pa.Schema, list[Featurised]] = defaultdict(list)
    for item in done:
        if item.records is not None:
            groups[item.records.schema.remove_metadata()].append(item)
    for members in groups.values():
        data = pa.concat_tables([m.records.replace_schema_metadata(None) for m in members])  # type: ignore[union-attr]
        tables.append(("records", data, members))
    with_features = [d for d in done if d.features is not None]
    if with_features:
        data = stamped(
            features.to_table([row for d in with_features for row in d.features or ()], sets)
        )
        tables.append(("features", data, with_features))
    return tables
