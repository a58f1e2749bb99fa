"""A task's JSON Lines files parsed up front, each alone, and grouped by schema for runs.

Runs in a worker process. Each file is parsed by itself, exactly as it would be
alone (`decode.decode`), so it keeps its own columns, types and row count. The
files that parse are then grouped by their schema: the tables of one schema are
joined without a copy (`pa.concat_tables`) into a `Group`, as `together.py`
makes of plain CSVs parsed as one, so that the files next to each other in the
task with one schema and one records table are fitted and featurised as one run
(`runs.py`, `summaries.py`): a few dozen Arrow and numpy calls per run instead
of per file. A file that fails to parse (or takes longer than the task's time
limit) is in no group: it is parsed again alone, and gets its own verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager

import pyarrow as pa

from ..blocks import JSON_LINES
from ..jobs import Job
from .bounded import bounded
from .decode import decode
from .together import Group


def is_jsonl(job: Job) -> bool:
    """Is the job a whole JSON Lines file in hand (not a measured, compressed one)?"""
    return job.source_file.lower().endswith(JSON_LINES) and not bounded(job)


def parse_jsonl(
    jobs: Sequence[Job], skip: Collection[int], step: Callable[[], AbstractContextManager[None]],
    text: Callable[[Job], Collection[str]] = lambda job: (),
) -> list[Group]:
    """The JSON Lines jobs (by index into `jobs`, except those in `skip`) parsed one by
    one, each within `step()` (the worker's beat and time limit for one file), in groups
    of one schema, in job order; `text(job)`: the columns its table holds as text."""
    # By schema, compared with `equals`: a schema's hash costs tens of microseconds. With
    # its metadata: a column of strings is typed text, one of strings and numbers is not
    # (`conform.TYPED_TEXT`), and a run's files must be judged alike.
    tables: list[tuple[pa.Schema, list[tuple[int, pa.Table]]]] = []
    for index, job in enumerate(jobs):
        if index in skip or not is_jsonl(job):
            continue
        try:
            with step():
                table = decode(job.source_file, job.data, text(job))
        except Exception:  # anything at all: the file is taken alone again, to its verdict
            continue
        same = next(
            (members for schema, members in tables
             if schema.equals(table.schema, check_metadata=True)),
            None,
        )
        if same is None:
            tables.append((table.schema, same := []))
        same.append((index, table))
    groups = []
    for _, members in tables:
        placed, rows = [], 0
        for index, table in members:
            placed.append((index, rows, table.num_rows))
            rows += table.num_rows
        joined = pa.concat_tables([table for _, table in members])
        groups.append(Group(joined, tuple(placed), dialect=None))
    return groups
