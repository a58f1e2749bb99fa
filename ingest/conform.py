"""The schema a file's records are written with: its table's, widened by the file.

Runs in a worker process, on each decoded file. Pure pyarrow, no I/O. The type
rules are `ingest.widen`'s; a text column that mostly holds numbers is read as
numbers (the rest is rescued by `ingest.fitting`). The files of a task are
judged together (`text_verdicts`), each as it would be alone.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .fitting import FLOAT_PATTERN, INT_PATTERN
from .widen import HINTS, IDENTITY, folded, merge_schemas, normalise, schema_of

_SAMPLE = 1000
# The same patterns for Python's `re`, where "$" would also match before a final newline.
_INT_TEXT = re.compile(INT_PATTERN.replace("$", r"\Z"))
_FLOAT_TEXT = re.compile(FLOAT_PATTERN.replace("$", r"\Z"))
_SMALL = 256  # a column this short is checked in plain Python
Verdicts = tuple[pa.DataType | None, ...]  # `_numbers_in_text` of each of `text_columns`


# On a text column whose file said it is text: a JSON string, a Parquet, Arrow or numpy
# string column. Its values keep their spelling (`"00123"`, `"1.10"`), as DuckDB reads
# them: only text written without a type (a CSV's, a JSON column of strings and numbers)
# is read as numbers where most of it is numbers.
TYPED_TEXT = {b"ingest.typed_text": b"1"}


def typed_text(table: pa.Table, untyped: Collection[str] = ()) -> pa.Table:
    """The table with its text columns, but those named in `untyped`, marked TYPED_TEXT."""
    fields = [
        field.with_metadata(TYPED_TEXT)
        if _textual(field.type) and field.name not in untyped else field
        for field in table.schema
    ]
    schema = pa.schema(fields, table.schema.metadata)
    return table if schema.equals(table.schema, check_metadata=True) else pa.Table.from_arrays(
        table.columns, schema=schema
    )


def _judged(field: pa.Field) -> bool:
    """Does the column's type follow from its values: text not marked TYPED_TEXT?"""
    return _textual(field.type) and field.metadata != TYPED_TEXT


def own_schema(data: pa.Table, hints: Mapping[str, str]) -> pa.Schema:
    """The schema a file's data columns would give a new table: normalised types, hints
    applied, and a text column that mostly holds numbers read as numbers."""
    fields = []
    hinted = _by_folded_name(hints)
    for field, column in zip(data.schema, data.columns, strict=True):
        name = field.name
        if name in IDENTITY:
            continue
        hint = hinted.get(folded(name))
        kind = HINTS[hint] if hint is not None else normalise(column.type)
        if pa.types.is_string(kind) and hint is None and _judged(field):
            kind = _numbers_in_text(column) or kind
        fields.append(pa.field(name, kind))
    return schema_of(pa.schema(fields))


def _by_folded_name(hints: Mapping[str, str]) -> dict[str, str]:
    """A hint names its column in any case, as a file's columns match their table's."""
    return {folded(name): kind for name, kind in hints.items()}


def _numbers_in_text(column: pa.ChunkedArray) -> pa.DataType | None:
    """int64 or float64 if most values of a text column are numbers (the rest are rescued)."""
    if len(column) <= _SMALL:
        return _numbers_in_short_text(column.cast(pa.string()).to_pylist())
    return _numbers_in_long_text(column)


def _numbers_in_long_text(column: pa.ChunkedArray) -> pa.DataType | None:
    sample = column.drop_null().slice(0, _SAMPLE).cast(pa.string())
    sample = sample.filter(pc.not_equal(sample, ""))  # empty cells are missing values
    numbers = pc.sum(pc.match_substring_regex(sample, FLOAT_PATTERN)).as_py() if len(sample) else 0
    if len(sample) == 0 or numbers * 2 < len(sample):
        return None
    values = column.cast(pa.string())
    floats = pc.match_substring_regex(values, FLOAT_PATTERN)
    ints = pc.match_substring_regex(values, INT_PATTERN)
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
        self._known: dict[tuple[str, pa.Schema, tuple[int, ...], Verdicts], pa.Schema] = {}

    def of(
        self, data: pa.Table, table: str, schema: bytes | None, hints: Mapping[str, str],
        verdicts: Verdicts | None = None,
    ) -> pa.Schema:
        """The file's target; `verdicts`, if given, are `text_verdicts(data, hints)`."""
        judged = tuple(text_columns(data, hints))
        if verdicts is None:
            verdicts = tuple(_numbers_in_text(data.column(i)) for i in judged)
        # Which columns were judged, too: a schema's equality leaves out TYPED_TEXT.
        key = (table, data.schema, judged, verdicts)
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
    hinted = _by_folded_name(hints)
    return [
        i for i, field in enumerate(data.schema)
        if _judged(field) and folded(field.name) not in hinted and field.name not in IDENTITY
        and pa.types.is_string(normalise(field.type))
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
        for flags in (pc.match_substring_regex(sample, FLOAT_PATTERN), pc.not_equal(sample, ""))
    )
    numbers, filled = numbers[at[1:]] - numbers[at[:-1]], filled[at[1:]] - filled[at[:-1]]
    text: list[bool] = ((filled == 0) | (numbers * 2 < filled)).tolist()
    return text


def _tallies(column: pa.ChunkedArray) -> list[np.ndarray]:
    """Running counts, from 0, of a text column's values that are numbers, that are
    filled, and that match one of the int and float patterns but not the other."""
    floats = pc.match_substring_regex(column, FLOAT_PATTERN)
    ints = pc.match_substring_regex(column, INT_PATTERN)
    return [
        np.concatenate(([0], np.cumsum(flags.fill_null(False).to_numpy(), dtype=np.int64)))
        for flags in (floats, pc.not_equal(column, ""), pc.not_equal(floats, ints))
    ]
