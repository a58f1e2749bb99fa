"""A file's columns made to fit its table's schema, values that do not fit rescued.

Runs in a worker process, on each decoded file; and in the committer's thread,
for a part that was encoded against a schema the table has since widened. Pure
pyarrow, no I/O. The type rules are `ingest.widen`'s.

A value that does not fit its column's type (text in a numeric column, a number
too large for float64, a value outside a hinted type) reads null in its column,
and its raw text is kept in `_rescued_data`, a JSON object of column -> text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .widen import HINTS, IDENTITY, RESCUED, is_untyped, merge_schemas, normalise, schema_of

_INT = r"^[+-]?[0-9]+$"
_FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(inf|nan)$"
_SAMPLE = 1000
# The same patterns for Python's `re`, where "$" would also match before a final newline.
_INT_TEXT = re.compile(_INT.replace("$", r"\Z"))
_FLOAT_TEXT = re.compile(_FLOAT.replace("$", r"\Z"))
_SMALL = 256  # a column this short is checked in plain Python
# Integers beyond this lose their value as float64; such values are rescued instead.
_EXACT = 2**53

Rescued = dict[int, dict[str, str]]  # row -> column -> raw text
Verdicts = tuple[pa.DataType | None, ...]  # `_numbers_in_text` of each of `text_columns`


def own_schema(data: pa.Table, hints: Mapping[str, str]) -> pa.Schema:
    """The schema a file's data columns would give a new table: normalised types, hints
    applied, and a text column that mostly holds numbers read as numbers."""
    fields = []
    for name, column in zip(data.column_names, data.columns, strict=True):
        if name in IDENTITY:
            continue
        kind = HINTS[hints[name]] if name in hints else normalise(column.type)
        if pa.types.is_string(kind) and name not in hints:
            kind = _numbers_in_text(column) or kind
        fields.append(pa.field(name, kind))
    return schema_of(pa.schema(fields))


def _numbers_in_text(column: pa.ChunkedArray) -> pa.DataType | None:
    """int64 or float64 if most values of a text column are numbers (the rest are rescued)."""
    if len(column) <= _SMALL:
        return _numbers_in_short_text(column.cast(pa.string()).to_pylist())
    return _numbers_in_long_text(column)


def _numbers_in_long_text(column: pa.ChunkedArray) -> pa.DataType | None:
    sample = column.drop_null().slice(0, _SAMPLE).cast(pa.string())
    sample = sample.filter(pc.not_equal(sample, ""))  # empty cells are missing values
    if len(sample) == 0 or pc.sum(pc.match_substring_regex(sample, _FLOAT)).as_py() * 2 < len(
        sample
    ):
        return None
    values = column.cast(pa.string())
    floats = pc.match_substring_regex(values, _FLOAT)
    ints = pc.match_substring_regex(values, _INT)
    empty = pc.sum(pc.equal(values, "")).as_py() or 0  # missing values, as in `_cast`
    if pc.sum(floats).as_py() * 2 < len(values) - values.null_count - empty:
        return None
    return pa.int64() if pc.all(pc.equal(floats, ints)).as_py() is not False else pa.float64()


def _numbers_in_short_text(values: list[str | None]) -> pa.DataType | None:
    """`_numbers_in_text` for a short column, in plain Python: each of the four Arrow
    calls that decide it costs tens of microseconds, whatever the length, and a small
    file's text column (a device name, say) is checked once per file."""
    texts = [v for v in values if v is not None]
    filled = [v for v in texts if v != ""]  # empty cells are missing values
    floats = sum(1 for v in filled if _FLOAT_TEXT.match(v))
    if not filled or floats * 2 < len(filled):
        return None
    same = all(bool(_FLOAT_TEXT.match(v)) == bool(_INT_TEXT.match(v)) for v in texts)
    return pa.int64() if same else pa.float64()


def target(data: pa.Table, table: pa.Schema | None, hints: Mapping[str, str]) -> pa.Schema:
    """The schema a file's records are written with: the table's, widened by the file."""
    own = own_schema(data, hints)
    start = table if table is not None else pa.schema([pa.field(n, pa.string()) for n in IDENTITY])
    return merge_schemas(start, own, frozenset(hints))


class Targets:
    """`target` for the files of one task, remembered: its tables' schemas are read once,
    and a file shares the target of the files before it with the same column types and,
    for each text column, the same verdict of `_numbers_in_text` (the one thing in a
    file's target that its values decide)."""

    def __init__(self) -> None:
        self._tables: dict[bytes, pa.Schema] = {}
        self._known: dict[tuple[str, pa.Schema, Verdicts], pa.Schema] = {}

    def of(
        self, data: pa.Table, table: str, schema: bytes | None, hints: Mapping[str, str],
        verdicts: Verdicts | None = None,
    ) -> pa.Schema:
        """The file's target; `verdicts`, if given, are `text_verdicts(data, hints)`."""
        if verdicts is None:
            verdicts = tuple(_numbers_in_text(data.column(i)) for i in text_columns(data, hints))
        key = (table, data.schema, verdicts)
        found = self._known.get(key)
        if found is not None:
            return found
        current = None
        if schema:
            current = self._tables.get(schema)
            if current is None:
                current = self._tables[schema] = pa.ipc.read_schema(pa.py_buffer(schema))
        result = self._known[key] = target(data, current, hints)
        return result


def _textual(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind)
        or pa.types.is_dictionary(kind)
    )


def text_columns(data: pa.Table, hints: Mapping[str, str]) -> list[int]:
    """Where the columns are whose values decide their type in the file's target: text
    that is not hinted, and so is read as numbers if most of it is numbers."""
    return [
        i for i, (name, column) in enumerate(zip(data.column_names, data.columns, strict=True))
        if _textual(column.type) and name not in hints and name not in IDENTITY
        and pa.types.is_string(normalise(column.type))
    ]


def text_verdicts(
    data: pa.Table, hints: Mapping[str, str], counts: Sequence[int]
) -> list[Verdicts]:
    """The `_numbers_in_text` verdicts of each file whose rows, `counts` of them in order,
    make `data`: what `Targets.of` finds for each alone, with a few Arrow calls for all.
    A file longer than `_SMALL` rows is judged on its own, as it would be alone."""
    ends = np.cumsum(np.asarray(counts, dtype=np.int64))
    starts = ends - counts
    columns = [
        _verdicts_of_column(data.column(i).cast(pa.string()), starts, ends)
        for i in text_columns(data, hints)
    ]
    return [tuple(column[k] for column in columns) for k in range(len(counts))]


def _verdicts_of_column(
    column: pa.ChunkedArray, starts: np.ndarray, ends: np.ndarray
) -> list[pa.DataType | None]:
    short = ends - starts <= _SMALL
    if not short.any():
        text = _text_by_sample(column, starts, ends)
        return [
            None if text[k] else _numbers_in_text(column.slice(start, end - start))
            for k, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True))
        ]
    numbers, filled, mixed = (t[ends] - t[starts] for t in _tallies(column))
    text = ((filled == 0) | (numbers * 2 < filled)).tolist()
    floats = (mixed > 0).tolist()
    return [
        (None if text[k] else pa.float64() if floats[k] else pa.int64()) if short[k]
        else _numbers_in_text(column.slice(int(starts[k]), int(ends[k] - starts[k])))
        for k in range(len(starts))
    ]


def _text_by_sample(column: pa.ChunkedArray, starts: np.ndarray, ends: np.ndarray) -> list[bool]:
    """For each file, is its text column text by the first test of `_numbers_in_long_text`,
    its sample? Taken for every file at once from a column without nulls, where a file's
    sample is its first `_SAMPLE` values; no file is settled by it otherwise."""
    if column.null_count or not len(starts):
        return [False] * len(starts)
    ends = np.minimum(ends, starts + _SAMPLE)
    lengths = ends - starts
    # Each file's first rows, one after another: row i of a file is its start plus i.
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    sample = column.take(pa.array(np.arange(int(lengths.sum())) + offsets))
    at = np.concatenate(([0], np.cumsum(lengths)))
    numbers, filled = (
        np.concatenate(([0], np.cumsum(flags.to_numpy(zero_copy_only=False), dtype=np.int64)))
        for flags in (pc.match_substring_regex(sample, _FLOAT), pc.not_equal(sample, ""))
    )
    numbers, filled = numbers[at[1:]] - numbers[at[:-1]], filled[at[1:]] - filled[at[:-1]]
    text: list[bool] = ((filled == 0) | (numbers * 2 < filled)).tolist()
    return text


def _tallies(column: pa.ChunkedArray) -> list[np.ndarray]:
    """Running counts, from 0, of a text column's values that are numbers, that are
    filled, and that match one of the int and float patterns but not the other."""
    floats = pc.match_substring_regex(column, _FLOAT)
    ints = pc.match_substring_regex(column, _INT)
    return [
        np.concatenate(([0], np.cumsum(flags.fill_null(False).to_numpy(), dtype=np.int64)))
        for flags in (floats, pc.not_equal(column, ""), pc.not_equal(floats, ints))
    ]


def fit_file(data: pa.Table, source_file: str, sha256: str, schema: pa.Schema) -> pa.Table:
    """A file's records: its columns and where each row came from, fitted to `schema`."""
    rows = data.num_rows
    columns = [
        *data.columns,
        pa.repeat(pa.scalar(source_file, pa.string()), rows),
        pa.repeat(pa.scalar(sha256, pa.string()), rows),
    ]
    if fits_as_is(data.schema, schema):
        # The common case, a file just like its table: one new table, nothing to cast.
        return pa.Table.from_arrays([*columns, pa.nulls(rows, pa.string())], schema=schema)
    return fit(pa.Table.from_arrays(columns, names=[*data.column_names, *IDENTITY[:2]]), schema)


def fits_as_is(have: pa.Schema, want: pa.Schema) -> bool:
    """Is `want` a file's own columns, `have`, then the identity columns?"""
    return (
        len(want) == len(have) + len(IDENTITY) and tuple(want.names[-len(IDENTITY):]) == IDENTITY
        and all(a.name == b.name and a.type == b.type for a, b in zip(have, want, strict=False))
    )


def fit(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """`data` with exactly `schema`: columns in its order, missing ones null, each cast;
    values that do not fit are rescued into `_rescued_data` (when the schema has it)."""
    rows = data.num_rows
    rescued: Rescued = {}
    names = set(data.column_names)
    columns: list[pa.ChunkedArray | pa.Array | None] = []
    for field in schema:
        if field.name == RESCUED:
            columns.append(None)  # filled in once every column has been cast
        elif field.name not in names:
            columns.append(pa.nulls(rows, field.type))
        else:
            columns.append(_cast(data.column(field.name), field, rescued))
    if RESCUED in schema.names:
        at = schema.get_field_index(RESCUED)
        previous = data.column(RESCUED) if RESCUED in names else None
        columns[at] = _rescued_column(rows, rescued, previous)
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, field: pa.Field, rescued: Rescued) -> pa.ChunkedArray:
    kind = field.type
    if column.type == kind:
        return column
    if pa.types.is_null(column.type) or (is_untyped(field) and column.null_count == len(column)):
        return pa.chunked_array([pa.nulls(len(column), kind)])
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    try:
        return column.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if pa.types.is_string(column.type):
        # An empty cell of a text column is a missing value, not text to rescue: the CSV
        # reader gives "" where the cell is empty once the column holds any text.
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
        try:
            return column.cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    keep = _fits(column, kind)
    bad = pc.and_(pc.invert(keep), pc.is_valid(column))
    for row in pc.indices_nonzero(bad).to_pylist():
        rescued.setdefault(row, {})[field.name] = _text(column[row])
    kept = pc.if_else(keep, column, pa.scalar(None, column.type))
    try:
        return kept.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _cast_each(kept, field, rescued)


def _fits(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    """Which values can become `kind` (a fast guess; `_cast_each` settles the rest)."""
    if pa.types.is_string(column.type) and pa.types.is_integer(kind):
        return pc.match_substring_regex(column, _INT)
    if pa.types.is_string(column.type) and pa.types.is_floating(kind):
        return pc.match_substring_regex(column, _FLOAT)
    if pa.types.is_integer(column.type) and pa.types.is_floating(kind):
        return pc.less_equal(pc.abs(column), _EXACT)
    return pc.is_valid(column)


def _cast_each(column: pa.ChunkedArray, field: pa.Field, rescued: Rescued) -> pa.ChunkedArray:
    """Value by value: slow, and only for the values a vectorised cast refused."""
    values = []
    for row, value in enumerate(column):
        try:
            values.append(value.cast(field.type).as_py() if value.is_valid else None)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            rescued.setdefault(row, {})[field.name] = _text(value)
            values.append(None)
    return pa.chunked_array([pa.array(values, field.type)])


def _text(value: pa.Scalar) -> str:
    raw = value.as_py()
    if isinstance(raw, str):
        return raw
    try:
        return json.dumps(raw, default=str)
    except (TypeError, ValueError):
        return str(raw)


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
