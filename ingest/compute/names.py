"""A file's column names as its table takes them.

Runs in a worker process, on each decoded file or run of files.
"""

from __future__ import annotations

import functools

import pyarrow as pa

from ..jobs import TableSpec
from ..widen import folded
from .csvread import unique_names
from .failures import DecodeError

RESERVED_COLUMNS = ("source_file", "source_sha256", "ingest_date", "_rescued_data")


def check_columns(table: pa.Table) -> pa.Table:
    """The table with unique column names (`a`, `a_1`; an empty one is `column<i>`);
    raises if a column takes a name ingest adds itself, in any case."""
    names = table.column_names
    unique = unique_names(names)  # stripped: " Source_File" is taken as "Source_File"
    clash = [name for name, was in zip(unique, names, strict=True)
             if folded(name) in RESERVED_COLUMNS or folded(was) in RESERVED_COLUMNS]
    if clash:
        raise DecodeError(f"column {clash[0]!r} is reserved for ingest's own use")
    return table if unique == names else table.rename_columns(unique)


@functools.lru_cache(maxsize=64)
def _table_schema(schema: bytes) -> pa.Schema:
    """A table's schema as the service last knew it (`TableSpec.schema`), read once."""
    return pa.ipc.read_schema(pa.py_buffer(schema))


def known_columns(schema: bytes | None) -> tuple[str, ...]:
    """The columns of a table as the service last knew it."""
    return () if schema is None else tuple(_table_schema(schema).names)


def read_as_text(spec: TableSpec) -> tuple[str, ...]:
    """A CSV's columns read as text from the start, each value as written: those hinted
    `string`, and those its table already holds as text, where a value read as a number,
    a flag or a time and then cast to text would be spelled anew (`1.10` as `1.1`)."""
    if spec.schema is None:
        return spec.text_columns
    return spec.text_columns + tuple(
        field.name for field in _table_schema(spec.schema)
        if pa.types.is_string(field.type) and field.name not in RESERVED_COLUMNS
    )
