"""Many small CSVs with the same header, parsed as one.

Runs in a worker process. Arrow's CSV reader costs about a millisecond a call
before it reads a byte, more than a ten-row file takes to parse; a task of
two thousand such files would spend most of its time there. Files that share
a header line are joined and parsed once, with the column types the first of
them infers, then sliced back apart.

Only plain files take this path (`sniff.plain`: commas, a header of distinct
names, no quotes, so no quoted newline to break the row count; or as plain
but for a `;`, tab or `|` delimiter, `sniff.plain_delimited`, in a table
whose first file did not pin another dialect), with no carriage returns and
a final newline. Anything the joint parse
cannot take (a type that does not fit, a ragged row, a blank line, which the
reader skips and so the row count gives away) sends the whole group back to
being parsed file by file, so each file still gets its own verdict and its
own line numbers. A file parsed with others can get a
wider type than it would alone (float64 where its own values are all
integers); its values, and so its features, are the same. A file whose
column would have been numbers alone, where the group reads text, is parsed
alone, so that it keeps its features, as is a file with a number written
with a leading zero (`01234`), which alone reads that column as text, and a
file that may hold timestamps written `... UTC`, which alone reads them as
timestamps.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from .. import bytescan
from ..dialect import PLAIN, Dialect
from ..fitting import ZERO_PADDED
from ..jobs import Job
from ..widen import folded
from .csvread import empty_as_null, inexact_columns
from .sniff import PLAIN_DIALECTS, plain, plain_delimited, plain_like

# Larger files parse well enough alone, and keep their own inferred types.
JOIN_MAX_BYTES = 256 * 1024
# What Arrow reads as null in a file parsed alone ("NA", "nan", "", ...).
NULL_MARKERS = tuple(pa_csv.ConvertOptions().null_values)
# The words a column the first file typed as flags takes from the others: Arrow's reader
# also takes `1` and `0` for flags, which a file alone reads as numbers, and which the
# table's flag column then rescues. A file that holds one sends the group back alone.
FLAG_WORDS = {True: ["true", "True", "TRUE"], False: ["false", "False", "FALSE"]}


def _split(job: Job, plain_headers: dict[bytes, Dialect]) -> tuple[bytes, int, Dialect] | None:
    """(header line, where the body starts, dialect) of a plain CSV fit to be parsed with
    others, else None. A comma header already found plain (in `plain_headers`) needs only
    the rest of its file checked: most files of a task share theirs."""
    data = job.data
    if (
        len(data) > JOIN_MAX_BYTES
        or not job.source_file.lower().endswith(".csv")
        or b'"' in data
        or b"\r" in data
        or data.startswith(b"\xef\xbb\xbf")
    ):
        return None
    end = data.find(b"\n")
    if end < 0 or end + 1 == len(data) or not data.endswith(b"\n"):
        return None
    header = data[: end + 1]
    known = plain_headers.get(header)
    if known is PLAIN:
        return (header, end + 1, known) if plain_like(data, end + 1) else None
    if known is None:
        found = PLAIN if plain(data) else plain_delimited(data)
    else:  # another delimiter: each file's head is looked at whole, as it is alone
        found = plain_delimited(data)
    if found is None:
        return None
    plain_headers[header] = found
    return header, end + 1, found


def _read(
    data: bytes, delimiter: str, types: pa.Schema | dict[str, pa.DataType] | None = None,
    flags: bool = False,
) -> pa.Table:
    """`flags`: a column typed as flags takes only their words (`FLAG_WORDS`)."""
    convert = None if types is None else pa_csv.ConvertOptions(column_types=types)
    if convert is not None and flags:
        convert.true_values, convert.false_values = FLAG_WORDS[True], FLAG_WORDS[False]
    table = pa_csv.read_csv(
        pa.BufferReader(data),
        read_options=pa_csv.ReadOptions(use_threads=False),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter),
        convert_options=convert,
    )
    times = {f.name: pa.string() for f in table.schema if pa.types.is_time(f.type)}
    if times:  # as a file alone reads them (`csvread.read`): a time of day as written
        return _read(data, delimiter, {**_types_of(table.schema), **times}, flags)
    return table


def _types_of(schema: pa.Schema) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in schema}


def _typable(schema: pa.Schema) -> bool:
    # A column with no value in the first file has no type to impose on the others.
    return not any(pa.types.is_null(f.type) or pa.types.is_binary(f.type) for f in schema)


@dataclass(frozen=True)
class Group:
    """Files parsed as one: the joint table, and each kept file's (job index, first row,
    rows) in it, in job order. A file that would read a column as numbers alone is left
    out, and its rows stay in `table` unclaimed."""

    table: pa.Table
    members: tuple[tuple[int, int, int], ...]
    dialect: Dialect | None = PLAIN  # what each member was read with (None: not a CSV)


# Every text that Arrow's cast to float64 accepts, with spaces around it as its CSV reader
# takes it, matches this (and more does): a value that does not is text, and its file
# reads the column as text alone too. A property test holds it to Arrow's parser.
_MAYBE_FLOAT = r"(?is)^\s*[+-]?(nan(\(.*\))?|inf(inity)?|[0-9]*\.?[0-9]*(e[+-]?[0-9]*)?)\s*$"
# A value a file alone may read as a date, a time of day, a timestamp or a boolean: what
# starts with a digit and holds only what such values are written with, and the words of
# true and false. A file whose every value of a text column is so written is parsed alone.
_MAYBE_TYPED = r"(?i)^\s*(true|false|[0-9][0-9:.T +\-/Z]*)\s*$"
_TIME_OF_DAY = r"^\s*[0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]*)?)?\s*$"


def _group(
    members: list[tuple[int, bytes, int]], header: bytes, hinted: frozenset[str],
    dialect: Dialect,
) -> Group | None:
    # Views of the bodies, not copies: a task's worth of them is tens of MB.
    bodies = [memoryview(data)[start:] for _, data, start in members]
    whole = b"".join([header, *bodies])
    names = header.decode("utf-8", errors="replace").rstrip("\r\n").split(dialect.delimiter)
    # The columns hinted `string` (`hinted`, folded) read as text, as each file alone is.
    first = _read(
        b"".join([header, bodies[0]]), dialect.delimiter,
        {name: pa.string() for name in names if folded(name.strip()) in hinted} or None,
    )
    if not _typable(first.schema) or inexact_columns(first):
        return None
    joined = _read(whole, dialect.delimiter, first.schema, flags=True)
    if inexact_columns(joined):
        return None  # each file alone reads such a column as text (`csvread.read`)
    counts = [bytescan.count(data, start=start) for _, data, start in members]
    if joined.num_rows != sum(counts):
        return None
    # By position: a header may repeat a name (each file is then refused on its own). A
    # column hinted text is text in each file alone too: no file need be told apart.
    text = [
        i for i, f in enumerate(first.schema)
        if pa.types.is_string(f.type) and folded(f.name.strip()) not in hinted
    ]
    starts = [0, *itertools.accumulate(counts)]
    padded = _zero_padded_rows(whole, len(header), joined.schema, dialect.delimiter)
    utc = _utc_worded_rows(joined, text)
    # A file whose first value in a text column is surely not a number reads that column
    # as text alone too: only the others need the cast that tells.
    words = [_first_words(joined.column(i), starts) for i in text]
    kept = []
    for k, (index, _, _) in enumerate(members):
        start, end = starts[k], starts[k + 1]
        unsure = [i for i, word in zip(text, words, strict=True) if not word[k]]
        part = joined.slice(start, end - start) if unsure else None
        if padded is not None and padded[end] > padded[start]:
            continue
        if utc is not None and utc[end] > utc[start]:
            continue
        if part is None or not any(
            _numeric(part.column(i)) or _markers_only(part.column(i))
            or _maybe_typed(part.column(i)) for i in unsure
        ):
            kept.append((index, start, end - start))
    return Group(empty_as_null(joined), tuple(kept), dialect)


def _markers_only(column: pa.ChunkedArray) -> bool:
    """Does this file hold nothing but null markers in the column, a word among them ("NA",
    "nan"), which alone it reads as a column of nulls, where the group keeps the words?"""
    if not pc.any(pc.is_in(column, value_set=_markers(words_only=True))).as_py():
        return False
    markers = _markers()
    return bool(pc.all(pc.or_(pc.is_null(column), pc.is_in(column, value_set=markers))).as_py())


@functools.cache
def _markers(words_only: bool = False) -> pa.Array:
    """The null markers as an array, made once per worker (not at import: an array made
    there loads pandas into every worker); `words_only`: without the empty one."""
    return pa.array([m for m in NULL_MARKERS if m or not words_only], pa.string())


def _zero_padded_rows(
    whole: bytes, start: int, schema: pa.Schema, delimiter: str
) -> np.ndarray | None:
    """Running counts, from 0, of the rows with a number column's value written with a
    leading zero (`01234`), which its file alone reads as text (`csvread`): such a file is
    parsed alone. None where the bytes hold no such value, as nearly always."""
    # Only the number columns where one was seen: a date or a time of day starts so too.
    seen = bytescan.zero_padded_columns(whole, delimiter.encode(), start, len(whole))
    numbers = [
        f.name for i, f in enumerate(schema)
        if i in seen and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
    ]
    if not numbers:
        return None
    texts = pa_csv.read_csv(
        pa.BufferReader(whole), read_options=pa_csv.ReadOptions(use_threads=False),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(numbers, pa.string()), include_columns=numbers,
        ),
    )
    rows = np.zeros(texts.num_rows, dtype=bool)
    for column in texts.columns:
        rows |= pc.match_substring_regex(column, ZERO_PADDED).fill_null(False).to_numpy()
    return np.concatenate(([0], np.cumsum(rows, dtype=np.int64)))


def _utc_worded_rows(table: pa.Table, text: list[int]) -> np.ndarray | None:
    """Running counts, from 0, of the rows with a text value ending ` UTC`: alone, its file
    may read that column as timestamps (`csvread`), and so is parsed alone. None where no
    text column holds one, as nearly always."""
    rows = None
    for i in text:
        found = pc.ends_with(table.column(i), pattern=" UTC")
        if pc.any(found).as_py():
            hits = found.fill_null(False).to_numpy()
            rows = hits if rows is None else rows | hits
    return None if rows is None else np.concatenate(([0], np.cumsum(rows, dtype=np.int64)))


def _first_words(column: pa.ChunkedArray, starts: list[int]) -> list[bool]:
    """For each file (its rows from starts[k] to starts[k + 1]), is its first value one
    that `_MAYBE_FLOAT` and `_MAYBE_TYPED` rule out as a number, a date or the like?"""
    firsts = column.take([start for start, end in itertools.pairwise(starts) if end > start])
    # A null marker ("NA") is no word: alone, the file reads it as null, in a number column.
    ruled_out = pc.invert(pc.or_(
        pc.or_(
            pc.match_substring_regex(firsts, _MAYBE_FLOAT),
            pc.match_substring_regex(firsts, _MAYBE_TYPED),
        ),
        pc.is_in(firsts, value_set=_markers()),
    ))
    found = iter(ruled_out.fill_null(False).to_pylist())
    return [end > start and next(found) for start, end in itertools.pairwise(starts)]


def _present(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The file's values in the column, nulls and null markers left out."""
    missing = pc.is_in(column, value_set=_markers())
    return pc.drop_null(pc.if_else(missing, pa.scalar(None, pa.string()), column))


def _maybe_typed(column: pa.ChunkedArray) -> bool:
    """Might this file, alone, read the column as dates, timestamps or booleans? Only if
    every value it holds (null markers aside) is written as one may be, and none is a
    time of day, which alone it reads as written too (`csvread.read`)."""
    values = _present(column)
    return bool(len(values)) and bool(
        pc.all(pc.match_substring_regex(values, _MAYBE_TYPED)).as_py()
    ) and not pc.any(pc.match_substring_regex(values, _TIME_OF_DAY)).as_py()


def _numeric(column: pa.ChunkedArray) -> bool:
    """Would this file, alone, have read the column as numbers (and so get features for it)?"""
    values = _present(column)
    if not len(values):
        return False
    values = pc.utf8_trim_whitespace(values)  # as Arrow's number parser takes " 5"
    try:
        # Text fails at its first value; a failed cast of a whole column costs as much as
        # a successful one (0.4 ms for 2,000 values), and most text columns are text.
        pc.cast(values.slice(0, 1), pa.float64())
        pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def parse_groups(
    jobs: tuple[Job, ...], text: Callable[[Job], Collection[str]] = lambda job: (),
    dialects: Callable[[Job], Collection[Dialect]] = lambda job: PLAIN_DIALECTS,
) -> list[Group]:
    """The groups of jobs that could be parsed together; the other jobs are in none.
    `text`: a job's columns hinted `string` (its table's), read as text; `dialects`: those
    its table takes a file in as it is (a table reads each file in the dialect its first
    file pinned)."""
    Key = tuple[bytes, frozenset[str], Dialect]
    groups: dict[Key, list[tuple[int, bytes, int]]] = defaultdict(list)
    plain_headers: dict[bytes, Dialect] = {}
    for index, job in enumerate(jobs):
        parts = _split(job, plain_headers)
        if parts is not None and parts[2] in dialects(job):
            hinted = frozenset(folded(name) for name in text(job))
            groups[parts[0], hinted, parts[2]].append((index, job.data, parts[1]))
    found: list[Group] = []
    for (header, hinted, dialect), members in groups.items():
        if len(members) < 2:
            continue
        try:
            group = _group(members, header, hinted, dialect)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue  # each file is parsed alone, and gets its own verdict
        if group is not None:
            found.append(group)
    return found


def parse_together(jobs: tuple[Job, ...]) -> dict[int, pa.Table]:
    """Tables for the jobs (by index) that could be parsed in a group; the rest are absent."""
    return {
        index: group.table.slice(start, rows)
        for group in parse_groups(jobs)
        for index, start, rows in group.members
    }
