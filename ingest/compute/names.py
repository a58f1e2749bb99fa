"""A file's column names as its table takes them.

Runs in a worker process, on each decoded file or run of files.
"""

from __future__ import annotations

import functools

import pyarrow as pa

from ..blocks import is_json_lines
from ..config import RESERVED_COLUMNS
from ..jobs import TableSpec
from ..widen import folded, is_untyped
from .csvread import unique_names
from .failures import DecodeError

# pyarrow's Parquet reader, and pandas' and Spark's through it or alike, refuse a whole
# file, and so the whole table's glob, whose schema is nested this many levels or more
# ("Parquet schema too deeply nested"); DuckDB and Polars still read it.
PARQUET_DEPTH_LIMIT = 100


def check_columns(table: pa.Table) -> pa.Table:
    """The table with unique column names (`a`, `a_1`; an empty one is `column<i>`);
    raises if a column takes a name ingest adds itself, in any case, or is nested more
    deeply than every reader opens."""
    for field in table.schema:
        if (depth := parquet_depth(field.type)) >= PARQUET_DEPTH_LIMIT:
            raise DecodeError(
                f"column {field.name!r} is nested {depth} levels deep as Parquet; pyarrow"
                f" and pandas read at most {PARQUET_DEPTH_LIMIT - 1}"
            )
    names = table.column_names
    unique = unique_names(names)  # stripped: " Source_File" is taken as "Source_File"
    clash = [name for name, was in zip(unique, names, strict=True)
             if folded(name) in RESERVED_COLUMNS or folded(was) in RESERVED_COLUMNS]
    if clash:
        raise DecodeError(f"column {clash[0]!r} is reserved for ingest's own use")
    return table if unique == names else table.rename_columns(unique)


def parquet_depth(kind: pa.DataType) -> int:
    """The levels of a column of this type in a Parquet schema: one for a value, one more
    for each struct around it, two for each list or map (its group, and the repeated
    group inside)."""
    if pa.types.is_struct(kind):
        return 1 + max((parquet_depth(kind.field(i).type) for i in range(kind.num_fields)),
                       default=0)
    if pa.types.is_map(kind):
        return 2 + max(parquet_depth(kind.key_type), parquet_depth(kind.item_type))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(
        kind
    ):
        return 2 + parquet_depth(kind.value_type)
    return 1


@functools.lru_cache(maxsize=64)
def _table_schema(schema: bytes) -> pa.Schema:
    """A table's schema as the service last knew it (`TableSpec.schema`), read once."""
    return pa.ipc.read_schema(pa.py_buffer(schema))


def known_columns(schema: bytes | None) -> tuple[str, ...]:
    """The columns of a table as the service last knew it."""
    return () if schema is None else tuple(_table_schema(schema).names)


def read_as_text(spec: TableSpec, name: str = "") -> tuple[str, ...]:
    """A file's columns read as text from the start, each value as written: those hinted
    `string`, and those its table already holds as text, where a value read as a number,
    a flag or a time and then cast to text would be spelled anew (`1.10` as `1.1`).
    For a JSON Lines file (by its `name`), whose strings alone are read so, also those its
    table holds as numbers or flags: a time there (`2024-01-01T10:00:00+05:00`) is
    rescued, and its text is the string, not the instant Arrow's reader made of it."""
    if spec.schema is None:
        return spec.text_columns
    json_lines = is_json_lines(name)
    return spec.text_columns + tuple(
        field.name for field in _table_schema(spec.schema)
        # A column that has held only nulls is text to no reader yet: its first values type it.
        if field.name not in RESERVED_COLUMNS and not is_untyped(field) and (
            pa.types.is_string(field.type) or (json_lines and _number_or_flag(field.type))
        )
    )


def _number_or_flag(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
        or pa.types.is_boolean(kind)
    )
