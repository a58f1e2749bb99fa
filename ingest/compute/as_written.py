"""A task's CSV and JSON Lines values that reach a text column, kept as written.

Runs in a worker process, once every file of a task is featurised. Each file is
fitted to its table as the service last knew it, and the task's part then takes
one schema, in which the first file to give a column a type fixes it
(`encode.joint_schema`), as the first of two runs would. A CSV that a file before
it in the task made text in a column was still read as numbers, flags or times
there, and cast to text its values would be spelled anew (`1.10` as `1.1`,
`2024-01-01T10:00:00` as `2024-01-01 10:00:00.000000`), where a later run reads
them as text from the start (`names.read_as_text`). Such a file is read again,
alone, as if its table held the task's schema already: as that later run would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace

import pyarrow as pa

from ..blocks import is_json_lines
from ..jobs import Failure, Job, Outcome, Task
from ..widen import folded
from .encode import Featurised, joint_schema

FeaturiseAlone = Callable[[Job, Task], Featurised | Failure]


def as_written(
    done: list[Featurised], outcomes: Sequence[Outcome], jobs: Sequence[Job], task: Task,
    alone: FeaturiseAlone,
) -> list[Featurised]:
    """`done`, with each CSV or JSON Lines file whose records would be cast to text in
    the task's part read again as `alone` reads a file with its table's schema as the
    task makes it.
    A file that fails that way (it did not the first time), or reads other rows, keeps
    its first reading. Changed in place: each first reading is let go of as its file is
    read again, so that a task never holds two readings of more than one file."""
    schemas: dict[str, list[pa.Schema]] = defaultdict(list)
    for item in done:
        if item.records is not None:
            schemas[item.table].append(item.records.schema)
    joint = {table: joint_schema(found) for table, found in schemas.items()}
    if not any(_cast_to_text(s, joint[t]) for t, found in schemas.items() for s in found):
        return done
    by_source = {(job.source_file, job.sha256): job for job in jobs}
    # A CSV, and a JSON Lines file, whose times reach such a column as text.
    rereadable = {(o.source_file, o.sha256) for o in outcomes if o.dialect is not None} | {
        source for source, job in by_source.items() if is_json_lines(job.source_file)
    }
    for index in reversed(range(len(done))):  # from the end: a splice moves no item ahead
        item = done[index]
        sources = [(name, sha256) for name, sha256, _ in item.sources]
        if (
            item.records is None or not _cast_to_text(item.records.schema, joint[item.table])
            or not all(source in rereadable for source in sources)
        ):
            continue
        spec = task.spec(item.table)
        wider = replace(spec, schema=joint[item.table].serialize().to_pybytes())
        again_task = replace(
            task, specs=(*(s for s in task.specs if s.name != spec.name), wider)
        )
        again = [alone(by_source[source], again_task) for source in sources]
        read = [result for result in again if isinstance(result, Featurised)]
        rows = [source for result in read for source in result.sources]
        # A failure, or other rows than the first reading's (which the ledger counts),
        # keeps the first reading.
        if len(read) == len(again) and rows == list(item.sources):
            done[index:index + 1] = read
    return done


def _cast_to_text(records: pa.Schema, joint: pa.Schema) -> bool:
    """Does a column of `records` that holds numbers, flags or times (not text, nor only
    nulls) become text in the `joint` schema?"""
    if records.equals(joint):  # most files of a task: one look, in Arrow
        return False
    # A file's `v` is its table's `V`: the joint schema keeps the first file's spelling.
    own = {folded(field.name): field.type for field in records}
    return any(
        pa.types.is_string(field.type) and (kind := own.get(folded(field.name))) is not None
        and not pa.types.is_string(kind) and not pa.types.is_null(kind)
        for field in joint
    )
