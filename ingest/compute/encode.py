"""Arrow tables to Parquet, in the worker: part files staged for the service, or their bytes.

Runs in a worker process: a task's files become one records part per table and one
features part, each written as `ingest.partfile` writes every part.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..fitting import fit
from ..jobs import EncodedPart, WrittenPart
from ..partfile import Source, footer, to_parquet, write
from ..widen import folded, merge_schemas, settled_alone
from . import features


@dataclass
class Featurised:
    """The tables of one file, or of a run of files parsed and featurised together,
    between decoding and encoding."""

    sources: tuple[Source, ...]  # the files whose rows these are, in order
    records: pa.Table | None
    # One file's feature rows (a task makes one table of them all), or a run's table.
    features: list[dict[str, object]] | pa.Table | None
    table: str = "records"  # the records table it is routed to


def stamped(table: pa.Table) -> pa.Table:
    """Features rows with the time they were made."""
    stamp = pa.scalar(int(time.time() * 1_000_000), pa.timestamp("us", tz="UTC"))
    return table.append_column("ingested_at", pa.repeat(stamp, table.num_rows))


def _part(
    table_name: str, data: pa.Table, members: list[Featurised], compression: str,
    stage: str | None, index: int, schema_version: int, hinted: frozenset[str],
) -> EncodedPart | WrittenPart:
    inputs = [source for m in members for source in m.sources]
    meta = footer(inputs, schema_version)
    sources = tuple(source_file for source_file, _, _ in inputs)
    schema = data.schema.serialize().to_pybytes()
    settled = settled_alone(data.schema, table_name, hinted)
    if stage is not None:
        path = f"{stage}-{index}.parquet"
        try:
            write(data, path, compression, meta)
            return WrittenPart(table_name, path, sources, schema, settled)
        except OSError:
            # A full disk, say. The bytes go back instead: the service's own write meets
            # the same error, keeps the inputs pending and retries, as for any commit.
            with contextlib.suppress(OSError):
                os.unlink(path)
    return EncodedPart(table_name, to_parquet(data, compression, meta), sources, schema, settled)


def joint_schema(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """The one schema of files fitted to the same table schema, in their order: one that
    widened it (a new column, a wider type) makes the others fit the widened schema."""
    schema = schemas[0]
    for other in schemas[1:]:
        if not other.equals(schema, check_metadata=True):
            schema = merge_schemas(schema, other)
    return schema


def _joined(records: list[pa.Table]) -> pa.Table:
    """One table of files fitted to the same table schema (`joint_schema`)."""
    schema = joint_schema([r.schema for r in records])
    return pa.concat_tables([
        r if r.schema.equals(schema, check_metadata=True) else fit(r, schema) for r in records
    ])


def encode(
    done: list[Featurised], compression: str, sets: tuple[str, ...], stage: str | None = None,
    versions: Mapping[str, int] | None = None, hinted: Mapping[str, frozenset[str]] | None = None,
) -> list[EncodedPart | WrittenPart]:
    """One records part per table, its files fitted to one schema, and one features part.
    With `stage`, each is written to a file named from it; if one fails, those already
    written are removed. `hinted`: each table's hinted columns."""
    parts: list[EncodedPart | WrittenPart] = []
    try:
        for index, (table_name, data, members) in enumerate(_tables(done, sets)):
            # A table with no schema yet gets its first version from this part.
            version = (versions or {}).get(table_name) or 1
            hints = (hinted or {}).get(table_name, frozenset())
            parts.append(
                _part(table_name, data, members, compression, stage, index, version, hints)
            )
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
    groups: dict[str, list[Featurised]] = defaultdict(list)
    for item in done:
        if item.records is not None:
            groups[item.table].append(item)
    for name, members in groups.items():
        records = [m.records for m in members if m.records is not None]
        tables.append((name, _joined(records), members))
    with_features = [d for d in done if d.features is not None]
    if with_features:
        data = _spelled(_features_table(with_features, sets), tables)
        tables.append(("features", stamped(data), with_features))
    return tables


def _spelled(features: pa.Table, tables: list[tuple[str, pa.Table, list[Featurised]]]) -> pa.Table:
    """Each features row names its column as the task's part does: a file's `v` is the
    `V` that a file before it in the task gave the table (`widen.matching`)."""
    column = features.column("source_column")
    names = {name for _, data, _ in tables for name in data.column_names}
    if all(value in names for value in pc.unique(column).to_pylist()):
        return features  # most tasks: every file spells its columns as the table does
    spelling = {
        (table, folded(name)): name for table, data, _ in tables for name in data.column_names
    }
    named = [
        spelling.get((table, folded(value)), value) if value is not None else None
        for table, value in zip(
            features.column("source_table").to_pylist(), column.to_pylist(), strict=True
        )
    ]
    at = features.schema.get_field_index("source_column")
    return features.set_column(at, features.schema.field(at), pa.array(named, column.type))


def _features_table(done: list[Featurised], sets: tuple[str, ...]) -> pa.Table:
    """All feature rows in order: each stretch of files' rows made one table at once."""
    pieces: list[pa.Table] = []
    rows: list[dict[str, object]] = []
    for item in done:
        if isinstance(item.features, pa.Table):
            if rows:
                pieces.append(features.to_table(rows, sets))
                rows = []
            pieces.append(item.features)
        else:
            rows.extend(item.features or ())
    if rows or not pieces:
        pieces.append(features.to_table(rows, sets))
    return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)
