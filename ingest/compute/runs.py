"""Runs of files parsed up front, fitted to their table and featurised as one.

Runs in a worker process. `together.py` parses a task's small plain CSVs in
one call, and `jsonlines.py` its JSON Lines files one by one, grouped by
schema; taken apart again, each file would then be fitted to its table and
featurised alone, a few hundred microseconds of Arrow and numpy calls for ten
rows. A run is a stretch of the task's jobs, next to each other both in the
task and in their group's joint table, routed to one records table. Its files
that share a target schema (the same verdicts on their text columns, as
`conform.Targets` decides it per file) are fitted with one table and
featurised with one set of calls (`summaries.py`), each with the rows,
features and schema it gets alone.

Only the built-in `summary` over whole files is computed this way: a plugin
set, or windows, take every file alone. A run that fails for any reason is
taken file by file, so each file still gets its own verdict.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import conform, fitting
from ..dialect import PLAIN, Dialect
from ..jobs import Job, Task
from ..partfile import Source
from .encode import Featurised
from .names import check_columns
from .summaries import summary_table
from .together import Group


@dataclass(frozen=True)
class Run:
    """Files parsed together whose rows follow one another in `table`, as the jobs do."""

    table: pa.Table  # their group's joint table
    members: tuple[tuple[int, int, int], ...]  # (job index, first row, rows), in order
    dialect: Dialect | None = PLAIN  # what each file was read with (None: not a CSV)


def runs(groups: Sequence[Group], jobs: Sequence[Job]) -> dict[int, Run]:
    """The groups' runs, by the index of each run's first job."""
    found: dict[int, Run] = {}
    for group in groups:
        run: list[tuple[int, int, int]] = []
        for member in group.members:
            index, start, _ = member
            if run and not (
                index == run[-1][0] + 1 and start == run[-1][1] + run[-1][2]
                and jobs[index].table == jobs[run[0][0]].table
            ):
                found[run[0][0]] = Run(group.table, tuple(run), group.dialect)
                run = []
            run.append(member)
        if run:
            found[run[0][0]] = Run(group.table, tuple(run), group.dialect)
    return found


def batchable(task: Task) -> bool:
    """May the task's runs be featurised as one? Not for plugin sets or windows."""
    wanted = task.features
    return "features" not in task.tables or (
        wanted.window <= 0 and bool(wanted.sets) and set(wanted.sets) == {"summary"}
    )


def featurise_run(
    run: Run, jobs: Sequence[Job], task: Task, targets: conform.Targets
) -> list[Featurised]:
    """The run's files, as one Featurised per stretch of them with one target schema.
    Raises where a file alone might fail; the caller then takes the files one by one."""
    first = jobs[run.members[0][0]]
    spec = task.spec(first.table)
    hints = dict(spec.hints)
    counts = [rows for _, _, rows in run.members]
    data = check_columns(run.table.slice(run.members[0][1], sum(counts)))
    verdicts = conform.text_verdicts(data, hints, counts)
    done: list[Featurised] = []
    offset = 0
    pairs = zip(run.members, verdicts, strict=True)
    for verdict, stretch in itertools.groupby(pairs, key=lambda pair: pair[1]):
        sources = tuple(
            (jobs[index].source_file, jobs[index].sha256, rows) for (index, _, rows), _ in stretch
        )
        rows = sum(count for _, _, count in sources)
        part = data.slice(offset, rows)
        offset += rows
        schema = targets.of(part.slice(0, sources[0][2]), spec.name, spec.schema, hints, verdict)
        records = fit_run(part, sources, schema)
        feature_table = None
        if "features" in task.tables:
            feature_table = summary_table(
                records, sources, task.features.time_column, first.table,
                fitting.own_columns(part.schema, schema),
            )
        kept = records if "records" in task.tables else None
        done.append(Featurised(sources, kept, feature_table, first.table))
    return done


def fit_run(data: pa.Table, sources: Sequence[Source], schema: pa.Schema) -> pa.Table:
    """`fitting.fit_file` of each file whose rows, in order, make `data`, as one table."""
    # Taken in one array, the text of the names (and of the sha256s, 64 characters each)
    # must fit its 32-bit offsets.
    longest = max(64, *(len(source[0].encode()) for source in sources))
    if not fitting.fits_as_is(data.schema, schema) or data.num_rows * longest >= 2**31:
        pieces, offset = [], 0
        for source_file, sha256, rows in sources:
            pieces.append(fitting.fit_file(data.slice(offset, rows), source_file, sha256, schema))
            offset += rows
        return pa.concat_tables(pieces)
    which = pa.array(np.repeat(np.arange(len(sources)), [rows for _, _, rows in sources]))
    identity = [
        pc.take(pa.array([source[k] for source in sources], pa.string()), which) for k in (0, 1)
    ]
    return pa.Table.from_arrays(
        [*data.columns, *identity, pa.nulls(data.num_rows, pa.string())], schema=schema
    )
