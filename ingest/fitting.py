"""A table made to fit its table's schema, values that do not fit rescued.

Runs in a worker process, on each decoded file (`fit_file`); and in the committer's
thread, for a part that was encoded against a schema the table has since widened,
and in compaction (`fit`). Pure pyarrow, no I/O.

A value that does not fit its column's type (text in a numeric column, a number
too large for float64, a value outside a hinted type) reads null in its column,
and its raw text is kept in `_rescued_data`, a JSON object of column -> text.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import isotime
from .nested_types import holds, mapped
from .widen import IDENTITY, RESCUED, folded, is_untyped, matching, normalise

# Text that reads as an integer, and as a float (Arrow's regular expressions).
# Arrow's cast takes "-5" but not "+5" as an int64 (as a float64, both); it takes "inf",
# "Infinity" and "NaN" in any case as floats. A number written with a leading zero and
# no sign (`007`, `00.5`) is neither: it is text (`ZERO_PADDED`), as DuckDB reads it.
INT_PATTERN = r"^(-[0-9]+|0|[1-9][0-9]*)$"
FLOAT_PATTERN = (
    r"^([+-]([0-9]+\.?[0-9]*|\.[0-9]+)|(0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
    r"|^[+-]?(?i:inf|infinity|nan)$"
)
# A number written with a leading zero and no sign: text, not a number, as DuckDB's
# sniffer reads it (`-05` is a number to both).
ZERO_PADDED = r"^0[0-9]"
# Integers beyond this lose their value as float64; such values are rescued instead.
_EXACT = 2**53
# A text of up to 21 characters (a sign and 20 digits) as a number compared exactly.
_INT64_TEXT = pa.decimal128(21, 0)


@functools.cache
def _int64_bounds() -> tuple[pa.Scalar, pa.Scalar]:
    """int64's bounds as _INT64_TEXT. Made on first use, not at import: a worker imports
    this module before it keeps pyarrow from importing pandas on its first conversion of
    a Python value (`compute.startup`)."""
    return (
        pa.scalar(decimal.Decimal(-(2**63)), _INT64_TEXT),
        pa.scalar(decimal.Decimal(2**63 - 1), _INT64_TEXT),
    )

Rescued = dict[int, dict[str, str]]  # row -> column -> raw text

# A string array's offsets are 32 bits: one text repeated in one array past 2 GiB (33
# million rows of a sha256) wraps them. Repeated in chunks of about this many bytes, the
# same chunk each time, the column takes that much memory however many rows it has.
REPEAT_BYTES = 4 << 20


def repeated(text: str, rows: int) -> pa.ChunkedArray:
    """`text` in each of `rows` rows, as a column of strings."""
    per = max(1, REPEAT_BYTES // max(len(text.encode()), 1))
    chunk = pa.repeat(pa.scalar(text, pa.string()), min(rows, per))
    whole, rest = divmod(rows, per)
    return pa.chunked_array([chunk] * whole + ([chunk.slice(0, rest)] if rest else []), chunk.type)


def fit_file(data: pa.Table, source_file: str, sha256: str, schema: pa.Schema) -> pa.Table:
    """A file's records: its columns and where each row came from, fitted to `schema`."""
    rows = data.num_rows
    columns = [
        *data.columns,
        repeated(source_file, rows),
        repeated(sha256, rows),
    ]
    if fits_as_is(data.schema, schema):
        # The common case, a file just like its table: one new table, nothing to cast.
        return pa.Table.from_arrays([*columns, pa.nulls(rows, pa.string())], schema=schema)
    return fit(pa.Table.from_arrays(columns, names=[*data.column_names, *IDENTITY[:2]]), schema)


def own_columns(data: pa.Schema, schema: pa.Schema) -> frozenset[str]:
    """The columns of `schema` that a file's own columns, `data`, fill. The others are its
    table's, null in the file's records: a file has features for its own columns only,
    never for one that other files added to its table before it."""
    return frozenset(matching(schema.names, data.names))


def fits_as_is(have: pa.Schema, want: pa.Schema) -> bool:
    """Is `want` a file's own columns, `have`, then the identity columns, with nothing to
    look at? (A date, in a list or a struct too, may lie outside the years readers hold.)"""
    return (
        len(want) == len(have) + len(IDENTITY) and tuple(want.names[-len(IDENTITY):]) == IDENTITY
        and all(a.name == b.name and a.type == b.type for a, b in zip(have, want, strict=False))
        and not any(holds_date(field.type) for field in have)
    )


def fit(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """`data` with exactly `schema`: columns in its order, missing ones null, each cast;
    values that do not fit are rescued into `_rescued_data` (when the schema has it)."""
    rows = data.num_rows
    rescued: Rescued = {}
    names = set(data.column_names)
    matched = matching(schema.names, data.column_names)  # a file's `temp` is a table's `Temp`
    columns: list[pa.ChunkedArray | pa.Array | None] = []
    for field in schema:
        name = matched.get(field.name)
        if field.name == RESCUED:
            columns.append(None)  # filled in once every column has been cast
        elif name is None:
            columns.append(pa.nulls(rows, field.type))
        else:
            columns.append(_cast(data.column(name), field, rescued))
    if RESCUED in schema.names:
        at = schema.get_field_index(RESCUED)
        previous = data.column(RESCUED) if RESCUED in names else None
        columns[at] = _rescued_column(rows, rescued, previous)
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, field: pa.Field, rescued: Rescued) -> pa.ChunkedArray:
    cast = _cast_to(column, field, rescued)
    return _in_calendar(cast, field, rescued) if holds_date(field.type) else cast


def holds_date(kind: pa.DataType) -> bool:
    """Is it a date, or does it hold one at any depth (a list of dates, a struct's date)?"""
    return holds(kind, pa.types.is_date)


def _in_calendar(column: pa.ChunkedArray, field: pa.Field, rescued: Rescued) -> pa.ChunkedArray:
    """A column less its values that are, or hold, a date before year 1 or after 9999,
    rescued whole: pandas reads a date as Python's, whose years those are, and refuses
    the whole table for one, in a list or a struct too."""
    outside = pa.chunked_array(
        [pa.array(_outside_calendar(chunk)) for chunk in column.chunks], pa.bool_()
    )
    return _set_aside(column, outside, field, rescued) if pc.any(outside).as_py() else column


def _outside_calendar(array: pa.Array) -> np.ndarray:
    """For each value: is it, or does it hold, a date outside years 1 to 9999?"""
    kind = array.type
    if pa.types.is_date(kind):
        first, last = _calendar_bounds(kind)
        outside = pc.or_(pc.less(array, first), pc.greater(array, last))
        found: np.ndarray = pc.fill_null(outside, False).to_numpy(zero_copy_only=False)
        return found
    rows = np.zeros(len(array), dtype=bool)
    if pa.types.is_struct(kind):
        for child in array.flatten():  # the struct's own offset and nulls applied
            if holds_date(child.type):
                rows |= _outside_calendar(child)
    elif holds_date(kind) and (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind)
        or pa.types.is_fixed_size_list(kind)
    ):
        if pa.types.is_fixed_size_list(kind):
            offsets = (np.arange(len(array) + 1) + array.offset) * kind.list_size
        else:
            offsets = array.offsets.to_numpy()  # into `values`, the whole child
        inner = np.concatenate(([0], np.cumsum(_outside_calendar(array.values))))
        rows = inner[offsets[1:]] > inner[offsets[:-1]]
    elif holds_date(kind):  # a list view, a union: value by value (rare)
        rows = np.array([_unheld(value) for value in array], dtype=bool)
    return rows


def _unheld(value: pa.Scalar) -> bool:
    """Does Python's value of it fail, as one for a date past year 9999 does?"""
    try:
        value.as_py()
    except (ValueError, OverflowError):
        return True
    return False


@functools.cache
def _calendar_bounds(kind: pa.DataType) -> tuple[pa.Scalar, pa.Scalar]:
    return (
        pa.scalar(datetime.date(1, 1, 1), kind), pa.scalar(datetime.date(9999, 12, 31), kind)
    )


def _cast_to(column: pa.ChunkedArray, field: pa.Field, rescued: Rescued) -> pa.ChunkedArray:
    kind = field.type
    column, settled = _settled(column, field, rescued)
    if settled:
        return column
    written = column  # the values as the file holds them, for the text of those rescued
    if _is_nested(kind) and column.type != kind:
        # One array: the chunks of a part read back (131,072 rows each) may differ in
        # which parts of them hold values, and so in how they are shaped.
        column = pa.chunked_array([_shaped(column.combine_chunks(), kind)])
    text = pa.types.is_string(column.type)
    if text and _kind_of(kind) == "number":
        column = _zero_padded(column, field, rescued)
    # A cast of text to float64 would round an integer beyond 2**53: those are rescued.
    inexact = inexact_integers(column) if text and pa.types.is_floating(kind) else None
    rounds = inexact is not None and bool(pc.any(inexact).as_py())
    if not rounds:
        try:
            return column.cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if pa.types.is_string(kind) and not text and normalise(column.type) == kind:
        # A type Arrow does not cast to text (a union, an interval, a struct whose fields
        # differ only by case), which a table holds as text (`widen.normalise`).
        return pa.chunked_array([
            pa.array([_text(value) if value.is_valid else None for value in column], kind)
        ])
    if text:
        # An empty cell of a text column is a missing value, not text to rescue: the CSV
        # reader gives "" where the cell is empty once the column holds any text.
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
        if not rounds:
            try:
                return column.cast(kind)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        if pa.types.is_timestamp(kind) and (found := _iso(column, field, rescued)) is not None:
            return found
    kept = _set_aside(column, pc.invert(_fits(column, kind, inexact)), field, rescued, written)
    try:
        return kept.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _cast_each(kept, field, rescued, written)


def _settled(
    column: pa.ChunkedArray, field: pa.Field, rescued: Rescued
) -> tuple[pa.ChunkedArray, bool]:
    """What needs no cast: the column as it is, nulls, or every value rescued (True); else
    the column to cast, its dictionary decoded and its times in microseconds (False)."""
    kind = field.type
    if column.type == kind:
        return column, True
    empty = pa.types.is_struct(column.type) and not column.type.num_fields  # `{}`: no value
    if pa.types.is_null(column.type) or empty or (
        is_untyped(field) and column.null_count == len(column)
    ):
        return pa.chunked_array([pa.nulls(len(column), kind)]), True
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    column, settled = _guard(_to_microseconds(column, field, rescued), field, rescued)
    if not settled and _is_nested(kind) and _case_clash(column.type):
        # A struct whose fields differ only by case (`{"a": 5, "A": 6}`) is one field to
        # readers, and the table's struct holds one: the whole value is rescued.
        return _rescue_all(column, field, rescued), True
    return column, settled


def _iso(column: pa.ChunkedArray, field: pa.Field, rescued: Rescued) -> pa.ChunkedArray | None:
    """Text to timestamps where Arrow's cast refuses some: ISO 8601 values zoned (`Z`,
    `+02:00`, ` UTC`), or past microseconds, at the instant each names (`isotime`); the
    others value by value. None if an ISO 8601 one is not a time at all (a 13th month):
    all go value by value."""
    written = isotime.with_utc_as_z(column)  # `... UTC`, as BigQuery writes a CSV's
    iso = pc.fill_null(pc.match_substring_regex(written, isotime.TIMESTAMP), False)
    none = pa.scalar(None, pa.string())
    try:
        parsed = isotime.parse(pc.if_else(iso, written, none)).cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    others = pc.if_else(iso, none, column)
    if others.null_count == len(others):
        return parsed
    return pc.if_else(iso, parsed, _cast_each(others, field, rescued))


def _guard(
    column: pa.ChunkedArray, field: pa.Field, rescued: Rescued
) -> tuple[pa.ChunkedArray, bool]:
    """The values Arrow's cast would change rather than refuse, rescued: all of them
    where a flag, a number and a moment meet (Arrow makes 5 true, and 1700000000 a moment
    in 1970), times of day bound for a date column, and floats a decimal column cannot
    hold exactly. True if none is left."""
    if _kinds_clash(column.type, field.type):
        return _rescue_all(column, field, rescued), True
    if pa.types.is_date(field.type) and pa.types.is_timestamp(column.type):
        # Arrow's cast to a date drops a time of day: such a value is rescued.
        timed = pc.fill_null(pc.not_equal(pc.floor_temporal(column, unit="day"), column), False)
        if pc.any(timed).as_py():
            return _set_aside(column, timed, field, rescued), False
        return column, False
    if pa.types.is_decimal(field.type) and pa.types.is_floating(column.type):
        return _exact_decimals(column, field, rescued), False
    if pa.types.is_floating(field.type) and pa.types.is_decimal(column.type):
        return _exact_floats(column, field, rescued), False
    return column, False


def _zero_padded(column: pa.ChunkedArray, field: pa.Field, rescued: Rescued) -> pa.ChunkedArray:
    """Text written with a leading zero (`01234`: a ZIP code, an account number) rescued
    rather than cast, as a number would lose its spelling: it is text, as DuckDB reads it."""
    padded = pc.fill_null(pc.match_substring_regex(column, ZERO_PADDED), False)
    return _set_aside(column, padded, field, rescued) if pc.any(padded).as_py() else column


def _kinds_clash(have: pa.DataType, want: pa.DataType) -> bool:
    """Do a flag, a number or a moment meet, at the top or at one place inside a list,
    a map or a struct (its fields matched as `_shaped` matches them)? Arrow casts a list
    of flags to a list of floats as 1.0 and 0.0."""
    mine, theirs = _kind_of(have), _kind_of(want)
    if mine is not None and theirs is not None:
        return mine != theirs
    if _is_list(have) and _is_list(want):
        return _kinds_clash(have.value_type, want.value_type)
    if pa.types.is_map(have) and pa.types.is_map(want):
        return _kinds_clash(have.key_type, want.key_type) or _kinds_clash(
            have.item_type, want.item_type
        )
    if pa.types.is_struct(have) and pa.types.is_struct(want):
        fields = {f.name: f.type for f in have}
        matched = matching([f.name for f in want], list(fields))
        return any(
            _kinds_clash(fields[matched[f.name]], f.type) for f in want if f.name in matched
        )
    return False


def _is_list(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(kind) or pa.types.is_large_list(kind)
        or pa.types.is_fixed_size_list(kind) or pa.types.is_list_view(kind)
        or pa.types.is_large_list_view(kind)
    )


def _kind_of(kind: pa.DataType) -> str | None:
    """Which of flag, number or moment a type is; None for any other (a duration among
    them: the table holds it as its count of microseconds, which its cast gives)."""
    if pa.types.is_boolean(kind):
        return "flag"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "moment"
    return None


def _rescue(
    column: pa.ChunkedArray, where: pa.ChunkedArray, field: pa.Field, rescued: Rescued
) -> None:
    """Keep the text of the column's values `where` is true, in their rows' rescued data."""
    for row in pc.indices_nonzero(where).to_pylist():
        rescued.setdefault(row, {})[field.name] = _text(column[row])


def _set_aside(
    column: pa.ChunkedArray, where: pa.ChunkedArray, field: pa.Field, rescued: Rescued,
    written: pa.ChunkedArray | None = None,
) -> pa.ChunkedArray:
    """The column with its values `where` is true null, their text rescued: that of
    `written`, the values as the file held them, if given."""
    _rescue(column if written is None else written, pc.and_(where, pc.is_valid(column)),
            field, rescued)
    return pc.if_else(where, pa.scalar(None, column.type), column)


def _rescue_all(column: pa.ChunkedArray, field: pa.Field, rescued: Rescued) -> pa.ChunkedArray:
    _rescue(column, pc.is_valid(column), field, rescued)
    return pa.chunked_array([pa.nulls(len(column), field.type)])


def _exact_decimals(
    column: pa.ChunkedArray, field: pa.Field, rescued: Rescued
) -> pa.ChunkedArray:
    """Floats bound for a decimal column, less those it cannot hold exactly (1.239 in a
    decimal of two places, which Arrow would round): rescued instead."""
    try:
        back = column.cast(field.type, safe=False).cast(column.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column  # the value-by-value path decides
    return _set_aside(column, pc.fill_null(pc.not_equal(back, column), False), field, rescued)


def _exact_floats(
    column: pa.ChunkedArray, field: pa.Field, rescued: Rescued
) -> pa.ChunkedArray:
    """Decimals bound for a float column, less those it cannot hold at their scale
    (9007199254740993.0, or 37 digits, which Arrow would round): rescued instead, as an
    integer past 2**53 is. A float holds some 15 digits: nearly every decimal fits."""
    floats = column.cast(field.type)
    try:
        differs = pc.not_equal(floats.cast(column.type), column)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # one past the decimal's range
        differs = pa.chunked_array([pa.array([
            d is not None and decimal.Decimal(f) != d
            for f, d in zip(floats.to_pylist(), column.to_pylist(), strict=True)
        ], pa.bool_())])
    return _set_aside(column, pc.fill_null(differs, False), field, rescued)


def _to_microseconds(
    column: pa.ChunkedArray, field: pa.Field, rescued: Rescued
) -> pa.ChunkedArray:
    """Times in the microseconds a table holds (`widen.normalise`), at any depth: a
    timestamp's nanoseconds floored, as Arrow's Parquet writer would cut them; a
    duration in microseconds, so that it becomes their count, not its own unit's. A
    duration of seconds or milliseconds past int64's microseconds (some 292,000 years)
    is rescued: Arrow's cast that cuts nanoseconds wraps it around, silently."""
    have = column.type
    if pa.types.is_timestamp(have) and have.unit == "ns" and pa.types.is_timestamp(field.type):
        column = pc.floor_temporal(column, unit="microsecond")
    micro = _micro(have)
    if micro == have:
        return column
    if _nanoseconds_inside(have):
        if have.num_fields:
            column = pa.chunked_array([_floored(chunk) for chunk in column.chunks], have)
        # Unsafe for the units: nanoseconds cut (floored above where it matters).
        return column.cast(micro, safe=False)
    try:
        return column.cast(micro)
    except pa.ArrowInvalid:  # a count of seconds or milliseconds past int64's microseconds
        if not pa.types.is_duration(have):  # inside a list or a struct: value by value
            return _cast_each(column, field, rescued)
        bound = (2**63 - 1) // (1_000_000 if have.unit == "s" else 1_000)
        counts = column.cast(pa.int64())
        past = pc.or_(pc.greater(counts, bound), pc.less(counts, -bound))
        return _set_aside(column, past, field, rescued).cast(micro)


def _nanoseconds_inside(kind: pa.DataType) -> bool:
    if pa.types.is_timestamp(kind) or pa.types.is_duration(kind):
        return bool(kind.unit == "ns")
    return any(_nanoseconds_inside(kind.field(i).type) for i in range(kind.num_fields))


def _floored(array: pa.Array) -> pa.Array:
    """A nested array's nanosecond timestamps floored to microseconds, as a column's are:
    Arrow's cast, which the nested ones get, cuts toward zero (-1 ns to 1970, not 1969)."""
    have = array.type
    if pa.types.is_timestamp(have):
        return pc.floor_temporal(array, unit="microsecond") if have.unit == "ns" else array
    if not _nanoseconds_inside(have):
        return array
    array = pa.concat_arrays([array])  # from offset 0, each child as long as it says
    mask = array.is_null()
    if pa.types.is_struct(have):
        children = [_floored(child) for child in array.flatten()]
        return pa.StructArray.from_arrays(children, fields=list(have), mask=mask)
    if pa.types.is_map(have):
        return pa.MapArray.from_arrays(
            array.offsets, _floored(array.keys), _floored(array.items), type=have, mask=mask
        )
    if pa.types.is_fixed_size_list(have):
        return pa.FixedSizeListArray.from_arrays(_floored(array.values), type=have, mask=mask)
    if pa.types.is_list(have) or pa.types.is_large_list(have):
        return type(array).from_arrays(
            array.offsets, _floored(array.values), type=have, mask=mask
        )
    return array  # a list view: cut toward zero by the cast, as before


def _case_clash(kind: pa.DataType) -> bool:
    """Does the type hold, at any depth, a struct with two fields of one name but for case?"""
    if pa.types.is_struct(kind) and len({folded(f.name) for f in kind}) < kind.num_fields:
        return True
    return any(_case_clash(kind.field(i).type) for i in range(kind.num_fields))


def _is_nested(kind: pa.DataType) -> bool:
    return bool(pa.types.is_struct(kind) or pa.types.is_list(kind) or pa.types.is_map(kind))


def _shaped(array: pa.Array, kind: pa.DataType) -> pa.Array:
    """A nested array that Arrow's cast can take to `kind`: a struct's fields matched by
    name in any case (`widen.matching`, the table's spelling), and a part that holds no
    value (all null, or `{}`: an untyped field a later file typed) made nulls of its type."""
    have = array.type
    if have == kind:
        return array
    if array.null_count == len(array) or (pa.types.is_struct(have) and not have.num_fields):
        return pa.nulls(len(array), kind)
    if pa.types.is_list_view(have) or pa.types.is_large_list_view(have):
        array = _view_as_list(array)
        have = array.type
    if pa.types.is_large_list(have) or pa.types.is_fixed_size_list(have):
        array, have = array.cast(pa.list_(have.value_field)), pa.list_(have.value_field)
    if (pa.types.is_list(have) or pa.types.is_map(have)) and array.offset:
        array = pa.concat_arrays([array])  # offsets from 0: Arrow builds no sliced list
    if pa.types.is_struct(have) and pa.types.is_struct(kind):
        names = [have.field(i).name for i in range(have.num_fields)]
        matched = matching([f.name for f in kind], names)
        children = dict(zip(names, array.flatten(), strict=True))
        shaped = [
            _shaped(children[matched[f.name]], f.type) if f.name in matched
            else pa.nulls(len(array), f.type)
            for f in kind
        ]
        fields = [f.with_type(a.type) for f, a in zip(kind, shaped, strict=True)]
        return pa.StructArray.from_arrays(shaped, fields=fields, mask=array.is_null())
    if pa.types.is_list(have) and pa.types.is_list(kind):
        values = _shaped(array.values, kind.value_type)
        return pa.ListArray.from_arrays(
            array.offsets, values, type=pa.list_(kind.value_field.with_type(values.type)),
            mask=array.is_null(),
        )
    if pa.types.is_map(have) and pa.types.is_map(kind):
        items = _shaped(array.items, kind.item_type)
        return pa.MapArray.from_arrays(array.offsets, array.keys, items, mask=array.is_null())
    return array


def _view_as_list(array: pa.Array) -> pa.Array:
    """A list view as a large list of the same values. Arrow's own cast (as of pyarrow 26)
    keeps the views' offsets as a list's: a large list view's values are lost, and a
    list view's make an invalid array."""
    sizes = np.where(array.is_valid().to_numpy(zero_copy_only=False),
                     array.sizes.to_numpy(zero_copy_only=False), 0).astype(np.int64)
    starts = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    ends = np.concatenate([[0], np.cumsum(sizes)])
    # Each value's place in `values`: its view's start, plus how far into the view it is.
    taken = np.repeat(starts - ends[:-1], sizes) + np.arange(ends[-1], dtype=np.int64)
    return pa.LargeListArray.from_arrays(
        pa.array(ends), array.values.take(pa.array(taken)),
        type=pa.large_list(array.type.value_field), mask=array.is_null(),
    )


def _micro(kind: pa.DataType) -> pa.DataType:
    return mapped(kind, _micro_leaf)


def _micro_leaf(kind: pa.DataType) -> pa.DataType | None:
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        return pa.timestamp("us", kind.tz)
    if pa.types.is_duration(kind) and kind.unit != "us":
        return pa.duration("us")
    return None


def _fits(
    column: pa.ChunkedArray, kind: pa.DataType, inexact: pa.ChunkedArray | None = None
) -> pa.ChunkedArray:
    """Which values can become `kind` (a fast guess; `_cast_each` settles the rest).
    `inexact`: `inexact_integers` of a text column bound for float64."""
    if pa.types.is_string(column.type) and pa.types.is_integer(kind):
        ints = pc.match_substring_regex(column, INT_PATTERN)
        # Beyond int64 (a 20-digit ID) is rescued here, not value by value: 18 characters
        # always fit, and a longer one (up to 21, with a sign) is compared exactly.
        short = pc.less_equal(pc.utf8_length(column), 18)
        long = pc.and_(ints, pc.invert(short))
        if not pc.any(long).as_py():
            return ints
        fits = pc.less_equal(pc.utf8_length(column), 21)
        values = pc.cast(pc.if_else(pc.and_(long, fits), column, "0"), _INT64_TEXT)
        least, most = _int64_bounds()
        within = pc.and_(pc.greater_equal(values, least), pc.less_equal(values, most))
        return pc.and_(ints, pc.or_(short, pc.and_(fits, within)))
    if pa.types.is_string(column.type) and pa.types.is_floating(kind):
        floats = pc.match_substring_regex(column, FLOAT_PATTERN)
        found = inexact if inexact is not None else inexact_integers(column)
        return pc.and_(floats, pc.invert(found))
    if pa.types.is_integer(column.type) and pa.types.is_floating(kind):
        return pc.less_equal(pc.abs(column), _EXACT)
    return pc.is_valid(column)


def inexact_integers(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Which texts are integers that float64 cannot hold (beyond 2**53): kept as text."""
    long = pc.and_(
        pc.greater(pc.utf8_length(column), 15), pc.match_substring_regex(column, INT_PATTERN)
    )
    values = pc.cast(pc.if_else(long, column, "0"), pa.float64())
    return pc.fill_null(pc.greater_equal(pc.abs(values), float(_EXACT)), False)


def _cast_each(
    column: pa.ChunkedArray, field: pa.Field, rescued: Rescued,
    written: pa.ChunkedArray | None = None,
) -> pa.ChunkedArray:
    """Value by value: slow, and only for the values a vectorised cast refused; the text
    of one refused is that of `written`, the value as the file held it, if given."""
    values = []
    for row, value in enumerate(column):
        try:
            values.append(value.cast(field.type).as_py() if value.is_valid else None)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            rescued.setdefault(row, {})[field.name] = _text(
                value if written is None else written[row]
            )
            values.append(None)
    return pa.chunked_array([pa.array(values, field.type)])


def _text(value: pa.Scalar) -> str:
    try:
        raw = value.as_py()
    except (ValueError, OverflowError):  # no Python value holds it (year 10000, say)
        if pa.types.is_timestamp(value.type):
            # Arrow's text of one past its calendar's years is "<value out of range: N>".
            spelled = str(np.datetime64(value.value, value.type.unit)).replace("T", " ")
            return spelled + ("Z" if value.type.tz else "")
        if pa.types.is_duration(value.type):  # past a timedelta's 999,999,999 days
            return str(np.timedelta64(value.value, value.type.unit))
        if pa.types.is_struct(value.type) or _is_list(value.type) or pa.types.is_map(value.type):
            # A struct whose fields share a name, or a date past year 9999, at any depth.
            return _json_text(value)
        try:
            return str(value.cast(pa.string()).as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # nested: Arrow's own print
            return str(pa.repeat(value, 1).to_string(top_level_indent=0, window=1 << 20))
    if isinstance(raw, str):
        return raw
    if raw is None or isinstance(raw, bool | int | float | list | dict):
        try:
            return json.dumps(raw, default=str)
        except (TypeError, ValueError):
            return str(raw)
    return str(raw)  # a date or a decimal as its text, not as a JSON string in quotes


def _json_text(value: pa.Scalar) -> str:
    """A value as JSON, a struct field by field in its order: one whose fields share a
    name (`{"x": 1, "x": 3}`, which JSON may spell) has no Python dict."""
    if not value.is_valid:
        return "null"
    if pa.types.is_struct(value.type):
        return "{" + ", ".join(
            f"{json.dumps(field.name)}: {_json_text(value[i])}"
            for i, field in enumerate(value.type)
        ) + "}"
    if _is_list(value.type):
        return "[" + ", ".join(_json_text(item) for item in value) + "]"
    if pa.types.is_map(value.type):  # as Python's value of it: a list of [key, value]
        return "[" + ", ".join(
            f"[{_json_text(entry[0])}, {_json_text(entry[1])}]" for entry in value.values
        ) + "]"
    try:
        raw = value.as_py()
    except (ValueError, OverflowError):
        return json.dumps(_text(value))
    return json.dumps(raw, default=str)


def _rescued_column(
    rows: int, rescued: Rescued, previous: pa.ChunkedArray | None
) -> pa.ChunkedArray:
    if not rescued:
        if previous is not None:
            return previous.cast(pa.string())
        return pa.chunked_array([pa.nulls(rows, pa.string())])
    values: list[str | None] = (
        previous.cast(pa.string()).to_pylist() if previous is not None else [None] * rows
    )
    for row, found in rescued.items():
        raw = values[row]
        earlier = json.loads(raw) if raw else {}
        values[row] = json.dumps({**earlier, **found}, ensure_ascii=False)
    return pa.chunked_array([pa.array(values, pa.string())])
