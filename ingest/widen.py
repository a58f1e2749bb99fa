"""The type rules of one schema per table: pure functions over Arrow types.

Used wherever a file meets its table's schema: in a worker, which conforms a
file to the table as it knew it, and in the committer's thread, which widens
the table when a file brings a new column or a wider type. No I/O.

The rules, from the interface contract:
- types only widen: int with float makes float64, a date with a timestamp makes
  a timestamp, narrower ints make int64, float32 makes float64;
- a column that is all null takes the other side's type;
- text never widens a numeric, boolean or time column: such values are rescued;
- a text column stays text: numbers that reach it are written as text;
- hinted columns never change type;
- a time of day is text ("12:30:00"): Spark opens no Parquet TIME column; a duration is
  its whole microseconds, int64: Delta holds none.
"""

from __future__ import annotations

import pyarrow as pa

HINTS: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
RESCUED = "_rescued_data"
IDENTITY = ("source_file", "source_sha256", RESCUED)


def normalise(kind: pa.DataType) -> pa.DataType:
    """The type a file's column has in a table: one width per family, microseconds, and
    only types that DuckDB, Polars, pandas, pyarrow, Spark and Delta all hold. A duration
    is its whole microseconds (int64: Delta holds no duration, and DuckDB and Spark read
    Parquet's as the bare integer); a type none of them shares is text."""
    if pa.types.is_null(kind) or pa.types.is_boolean(kind):
        return kind  # a top-level null is `untyped` (schema_of); a nested one, `_inner`
    if pa.types.is_dictionary(kind):
        return normalise(kind.value_type)
    if pa.types.is_integer(kind) or pa.types.is_duration(kind):
        return pa.int64()
    if pa.types.is_floating(kind):
        return pa.float64()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
            or pa.types.is_fixed_size_binary(kind) or pa.types.is_binary_view(kind)):
        return pa.binary()
    if pa.types.is_timestamp(kind):
        return pa.timestamp("us", tz="UTC" if kind.tz else None)
    if pa.types.is_date(kind):
        return pa.date32()
    if pa.types.is_decimal(kind):
        # A negative scale (`decimal(5, -2)`: hundreds) is one Parquet cannot hold; the
        # same values as whole numbers are `decimal(7, 0)`.
        precision, scale = kind.precision - min(kind.scale, 0), max(kind.scale, 0)
        return pa.decimal128(precision, scale) if precision <= 38 else pa.string()
    return _nested_normal(kind)


def _nested_normal(kind: pa.DataType) -> pa.DataType:
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
            or pa.types.is_list_view(kind) or pa.types.is_large_list_view(kind)):
        return pa.list_(_inner(kind.value_field).with_name("element"))
    if pa.types.is_map(kind):
        return pa.map_(normalise(kind.key_type), _inner(kind.item_field))
    if pa.types.is_struct(kind):
        if not kind.num_fields:  # `{}` says no more than null, and Parquet holds no such
            return pa.null()
        if len({folded(f.name) for f in kind}) < kind.num_fields:
            return pa.string()  # `{"x": 1, "X": 2}`: one name to readers; kept as text
        return pa.struct([_inner(f) for f in kind])
    return pa.string()  # a time of day, an interval, a union: as text


def _inner(field: pa.Field) -> pa.Field:
    """A nested field as a table holds it: a null one (`[]`, `{"x": null}`) is untyped
    text, as a top-level column of nulls is, for a later file's values to type."""
    kind = normalise(field.type)
    if pa.types.is_null(kind):
        return pa.field(field.name, pa.string(), metadata=UNTYPED)
    return pa.field(field.name, kind)


def _numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


UNTYPED = {b"ingest.untyped": b"1"}


def untyped() -> pa.Field:
    """A column no file has given a value yet. Readers see a string column of nulls (a
    Parquet column of Arrow's null type is not one every reader opens); the first file
    with values gives it their type."""
    return pa.field("", pa.string(), metadata=UNTYPED)


def is_untyped(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(b"ingest.untyped") == b"1"


def described(field: pa.Field) -> str:
    """A field's type as a log line says it: what no file has typed yet is `untyped`, not
    the text it is stored as."""
    kind = field.type
    if is_untyped(field):
        return "untyped"
    if pa.types.is_list(kind):
        return f"list<{described(kind.value_field)}>"
    if pa.types.is_map(kind):
        return f"map<{kind.key_type}, {described(kind.item_field)}>"
    if pa.types.is_struct(kind):
        return "struct<" + ", ".join(f"{f.name}: {described(f)}" for f in kind) + ">"
    return str(kind)


def merge(table: pa.DataType, file: pa.DataType) -> pa.DataType:
    """The table's type for a column after a file whose values have type `file`.

    Both are normalised. Where the file's values do not fit (text in a numeric
    column, say) the table's type wins and those values are rescued. Nested types
    merge field by field, by the same rules (`_nested`)."""
    if pa.types.is_null(file):
        return table
    if pa.types.is_null(table):
        return file
    nested = _nested(table, file)
    if nested is not None:
        return nested
    if table == file:
        return table
    if _numeric(table) and _numeric(file):
        return pa.float64()
    decimal = _decimal(table, file)
    if decimal is not None:
        return decimal
    if pa.types.is_timestamp(table) and pa.types.is_timestamp(file):
        return pa.timestamp("us", tz="UTC")
    if pa.types.is_date(table) and pa.types.is_timestamp(file):
        return file
    return table


def _decimal(table: pa.DataType, file: pa.DataType) -> pa.DataType | None:
    """Two decimals as one that holds both exactly (`decimal(10,2)` and `decimal(12,4)`:
    `decimal(12,4)`), as DuckDB unites them; None where that needs more than 38 digits or
    a negative scale, or for any other pair. (A decimal and an integer are not united: an
    integer column made a decimal would lose its features, and its unsigned files.)"""
    if not (pa.types.is_decimal(table) and pa.types.is_decimal(file)):
        return None
    scale = max(table.scale, file.scale)
    whole = max(table.precision - table.scale, file.precision - file.scale)
    return pa.decimal128(whole + scale, scale) if scale >= 0 and whole + scale <= 38 else None


def _nested(table: pa.DataType, file: pa.DataType) -> pa.DataType | None:
    """Two lists, maps or structs merged inside: an untyped field takes the file's type,
    types widen, a struct's new fields are appended (matched by name, in any order);
    None if the two are not nested alike."""
    if pa.types.is_list(table) and pa.types.is_list(file):
        return pa.list_(merge_field(table.value_field, file.value_field, hinted=False))
    if pa.types.is_map(table) and pa.types.is_map(file):
        item = merge_field(table.item_field, file.item_field, hinted=False)
        return pa.map_(merge(table.key_type, file.key_type), item)
    if pa.types.is_struct(table) and pa.types.is_struct(file):
        own = {f.name: f for f in file}
        matched = matching([f.name for f in table], list(own))
        fields = [merge_field(f, own[matched[f.name]], hinted=False) if f.name in matched
                  else f for f in table]
        known = {folded(f.name) for f in table}
        return pa.struct(fields + [f for f in file if folded(f.name) not in known])
    return None


def merge_field(table: pa.Field, file: pa.Field, hinted: bool) -> pa.Field:
    """A table's column (or a nested field) after a file's of the same name. A hinted
    one, whose type the file's is (`conform.own_schema`), takes no other type from a
    file, but the hint's own, where a hint added to the config widens the column."""
    if hinted:
        return pa.field(table.name, file.type) if hint_widens(table, file.type) else table
    if pa.types.is_null(file.type) or is_untyped(file):
        return table
    if is_untyped(table):
        return pa.field(table.name, file.type)
    return pa.field(table.name, merge(table.type, file.type))


def hint_widens(table: pa.Field, hint: pa.DataType) -> bool:
    """Does a hint of type `hint` widen a table's column that holds `table`? Every value
    it holds is one of the hint's then: text holds any plain value as its text."""
    if table.type == hint or pa.types.is_null(hint):
        return False
    if is_untyped(table):
        return True
    if pa.types.is_string(hint):
        return not pa.types.is_nested(table.type)
    return bool(merge(table.type, hint) == hint)


def schema_of(file: pa.Schema) -> pa.Schema:
    """A file's own columns as a table would first hold them."""
    return pa.schema([
        untyped().with_name(f.name) if pa.types.is_null(f.type)
        else f if is_untyped(f) else f.with_metadata(None)
        for f in file
    ])


def tail_of(table: str) -> tuple[str, ...]:
    """The columns that end a table's schema: a records table's identity columns."""
    return () if table == "features" else IDENTITY


def settled_alone(schema: pa.Schema, table: str, hinted: frozenset[str]) -> bool:
    """Is `schema` what a table first given it would hold, to the byte? Then its bytes
    stand for it: the committer compares a part's with its table's without reading
    either (`store/schema.py`)."""
    alone = merge_schemas(schema, schema, hinted, tail_of(table)).remove_metadata()
    return bool(alone.serialize().equals(schema.serialize()))


def folded(name: str) -> str:
    """A column's name as readers compare it: DuckDB and Spark take names without regard to
    case (`Temp` and `temp` in one table would be renamed or refused), by lower case."""
    return name.lower()


def matching(table: list[str], file: list[str]) -> dict[str, str]:
    """Which of a file's columns is each of its table's: the one of the same name, else
    the one of the same name in another case (`folded`). Each of the file's columns is
    matched once, an exact name first."""
    mine = set(file)
    matched = {name: name for name in table if name in mine}
    left = {folded(name): name for name in reversed(file) if name not in matched}
    for name in table:
        if name not in matched and (found := left.pop(folded(name), None)) is not None:
            matched[name] = found
    return matched


def merge_schemas(
    table: pa.Schema, file: pa.Schema, hinted: frozenset[str] = frozenset(),
    tail: tuple[str, ...] = IDENTITY,
) -> pa.Schema:
    """The table's schema after a file: its columns in order, widened, then the file's new
    columns appended before the `tail` columns (a records table's identity columns), which
    always come last. A file's column is the table's of the same name in any case
    (`matching`), and keeps the table's spelling."""
    matched = matching(table.names, file.names)
    own = {f.name: f for f in file}
    hints = {folded(name) for name in hinted}
    fields = [
        merge_field(f, own[matched[f.name]], folded(f.name) in hints) if f.name in matched
        else f
        for f in table
    ]
    known = {folded(name) for name in table.names}
    new = [f for f in schema_of(file) if folded(f.name) not in known]
    head = [f for f in fields + new if f.name not in tail]
    ends = {f.name: f for f in fields + new if f.name in tail}
    return pa.schema(head + [ends[name] for name in tail if name in ends])
