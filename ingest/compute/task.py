"""The one function the service runs in a worker: a Task in, a TaskResult out.

Runs in a worker process. Every failure of the input is caught here and
returned as a `Failure`, so the parent never has to unpickle a foreign
exception. Only a dying worker reaches the parent as an error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace

import pyarrow as pa

from .. import beacon, conform, fitting
from ..config import RESERVED_COLUMNS as RESERVED_COLUMNS
from ..config import Features
from ..dialect import PLAIN, CsvOptions, Dialect, as_seen
from ..errors import TaskTimeout
from ..jobs import Failure, Job, Outcome, TableSpec, Task, TaskResult
from . import features
from .as_written import as_written
from .bounded import bounded, check_npy, decode_bounded
from .decode import DecodeError, decode_file
from .encode import Featurised, encode
from .inputs import message, with_bytes
from .jsonlines import parse_jsonl
from .limit import time_limit
from .names import check_columns as check_columns
from .names import known_columns, read_as_text
from .runs import Run, batchable, featurise_run, runs
from .sniff import PLAIN_DIALECTS
from .startup import init_worker as init_worker
from .startup import pyarrow_without_pandas as pyarrow_without_pandas
from .together import Group, parse_groups

WARM_UP = Task((Job("warm-up.csv", "0" * 64, b"timestamp,v\n1,1.5\n2,2.5\n"),), Features())


def warm() -> int:
    """Start a worker and run one tiny file through every stage, so the first real task
    does not pay for lazy imports and first-call set-up. Returns the worker's pid."""
    process(WARM_UP)
    return os.getpid()


def table_schema(spec: TableSpec) -> pa.Schema | None:
    return pa.ipc.read_schema(pa.py_buffer(spec.schema)) if spec.schema else None


def featurise(
    job: Job, task: Task, parsed: pa.Table | None = None,
    targets: conform.Targets | None = None, parsed_as: Dialect | None = PLAIN,
) -> tuple[Featurised, Dialect | None]:
    """Decode (unless already parsed, in the dialect `parsed_as`: with others, in the plain
    dialect, or a JSON Lines file up front), fit the file to its table's schema with the
    identity columns, compute features; raise on bad input. Also the dialect a CSV was
    read with."""
    spec = task.spec(job.table)
    dialect: Dialect | None = parsed_as
    if parsed is not None:
        table = parsed
    elif bounded(job):
        table, dialect = decode_bounded(job, spec)
    else:
        check_npy(job, task.memory_mb)
        table, dialect = decode_file(
            job.source_file, job.data, spec.csv, spec.dialect, read_as_text(spec, job.source_file),
            known_columns(spec.schema),
        )
    table = check_columns(table)
    dialect = as_seen(dialect, table.num_columns)
    targets = targets or conform.Targets()
    schema = targets.of(table, spec.name, spec.schema, dict(spec.hints))
    records = fitting.fit_file(table, job.source_file, job.sha256, schema)
    feature_table = None
    if "features" in task.tables:
        wanted = task.features
        feature_table = features.rows(
            records, job.source_file, job.sha256, wanted.time_column, wanted.sets, wanted.window,
            source_table=job.table, own=fitting.own_columns(table.schema, schema),
        )
    kept = records if "records" in task.tables else None
    featurised = Featurised(
        ((job.source_file, job.sha256, table.num_rows),), kept, feature_table, job.table
    )
    return featurised, dialect


@contextlib.contextmanager
def _file_step(task: Task) -> Iterator[None]:
    """One file's step of the task: a beat for the service's backstop, then the file's
    own time limit."""
    beacon.beat(task.beacon)
    with time_limit(task.timeout_s):
        yield


def _featurise_one(
    job: Job, task: Task, table: pa.Table | None, targets: conform.Targets,
    parsed_as: Dialect | None = PLAIN,
) -> tuple[Featurised, Dialect | None] | Failure:
    try:
        with time_limit(task.timeout_s):
            return featurise(job, task, table, targets, parsed_as)
    except DecodeError as exc:
        return Failure(type(exc).__name__, message(exc), line=exc.line, offset=exc.offset)
    except BaseException as exc:  # a plugin feature set may raise anything at all
        return Failure(type(exc).__name__, message(exc))


def read_again(job: Job, task: Task) -> Featurised | Failure:
    """A file of the task featurised once more, alone (`as_written`)."""
    beacon.beat(task.beacon)
    result = _featurise_one(job, task, None, conform.Targets())
    return result if isinstance(result, Failure) else result[0]


def _in_hand(job: Job, index: int, lost: dict[int, Failure]) -> Job:
    found = with_bytes(job)
    if isinstance(found, Failure):
        lost[index] = found
        return replace(job, shared=None, path=None)
    return found


def _joinable(spec: TableSpec) -> frozenset[Dialect]:
    """The dialects in which a table's CSVs may be parsed together: the plain ones (the
    joint parse reads plain files, together.py checks each one, as `sniff.plain_dialect`
    does a file alone), but those a pin or the dialect the table's first file pinned
    rules out."""
    pins = spec.csv or CsvOptions()
    if (
        pins.header not in (None, True) or pins.skip_rows not in (None, 0)
        or pins.decimal not in (None, ".") or pins.null_values is not None
        or pins.timestamp_formats
    ):
        return frozenset()
    found = frozenset(d for d in PLAIN_DIALECTS if pins.delimiter in (None, d.delimiter))
    if spec.dialect is None or not spec.dialect.delimited:  # one column pinned: no delimiter
        return found
    return found & {spec.dialect}


def process(task: Task) -> TaskResult:
    """Runs in a worker process: every file of the task, then its part files.

    Never raises for bad input: each failure comes back as data, and only
    plain strings leave this function, so an exception that cannot be
    pickled, or a plugin that calls sys.exit(), is still an ordinary Failure.
    """
    beacon.report(task.beacon)
    try:
        _injected_failure(task)
        return _process(task)
    finally:
        beacon.done(task.beacon)


def _injected_failure(task: Task) -> None:
    """Test-only: `INGEST_FAIL_AT=worker:<file>` makes a task holding that file raise, as a
    bug in the worker's own code would (the service's points: ingest/store/crashpoints.py)."""
    point, _, name = os.environ.get("INGEST_FAIL_AT", "").partition(":")
    if point == "worker" and any(job.source_file == name for job in task.jobs):
        raise RuntimeError(f"INGEST_FAIL_AT=worker:{name}")


def _process(task: Task) -> TaskResult:
    # A job whose bytes could not be had (or were not the file as it settled) keeps its
    # place, with no bytes, and its failure in `lost`.
    lost: dict[int, Failure] = {}
    jobs = tuple(_in_hand(job, index, lost) for index, job in enumerate(task.jobs))
    outcomes, done = _featurise_all(jobs, task, lost)
    done = as_written(done, outcomes, jobs, task, read_again)
    beacon.beat(task.beacon)
    try:
        versions = {spec.name: spec.version for spec in task.specs}
        hinted = {spec.name: frozenset(name for name, _ in spec.hints) for spec in task.specs}
        parts = encode(done, task.compression, task.features.sets, task.stage, versions, hinted)
    except Exception as exc:  # not expected: every file was checked on its own above
        failure = Failure(type(exc).__name__, f"could not write the task's parts: {message(exc)}")
        return TaskResult(tuple(
            o if o.failure else Outcome(o.source_file, o.sha256, failure=failure)
            for o in outcomes
        ))
    return TaskResult(tuple(outcomes), tuple(parts))


def _parse_groups(jobs: tuple[Job, ...], task: Task, lost: dict[int, Failure]) -> list[Group]:
    """The groups of files parsed up front, with job indices into `jobs`: CSVs parsed
    together (of tables that pin nothing but a plain dialect), and JSON Lines files
    parsed one by one, grouped by schema."""
    found = parse_jsonl(
        jobs, lost, lambda: _file_step(task),
        lambda job: read_as_text(task.spec(job.table), job.source_file),
    )
    by_table: dict[str, frozenset[Dialect]] = {}

    def dialects(job: Job) -> frozenset[Dialect]:
        found = by_table.get(job.table)
        if found is None:
            found = by_table[job.table] = _joinable(task.spec(job.table))
        return found

    joinable = [i for i, job in enumerate(jobs) if i not in lost and dialects(job)]
    try:
        with time_limit(task.timeout_s):
            groups = parse_groups(
                tuple(jobs[i] for i in joinable), lambda job: read_as_text(task.spec(job.table)),
                dialects,
            )
    except TaskTimeout:
        return found
    return found + [
        replace(g, members=tuple((joinable[k], start, rows) for k, start, rows in g.members))
        for g in groups
    ]


def _featurise_all(
    jobs: tuple[Job, ...], task: Task, lost: dict[int, Failure]
) -> tuple[list[Outcome], list[Featurised]]:
    """Each job's outcome and the tables of those that succeed, in job order: a run of
    files parsed together at once where it can be, every other file alone."""
    groups = _parse_groups(jobs, task, lost)
    # Where each file's rows are in its group's table, sliced only for a file taken alone.
    parsed = {
        i: (g.table, start, rows, g.dialect) for g in groups for i, start, rows in g.members
    }
    run_at = runs(groups, jobs) if batchable(task) else {}
    targets = conform.Targets()
    outcomes: list[Outcome] = []
    done: list[Featurised] = []
    index = 0
    while index < len(jobs):
        beacon.beat(task.beacon)  # each file has task_timeout_s, and the service's backstop
        run = run_at.get(index)
        together = _featurise_run(run, jobs, task, targets) if run is not None else None
        if run is not None and together is not None:
            done.extend(together)
            outcomes.extend(
                Outcome(name, sha256, rows, None, run.dialect)
                for item in together for name, sha256, rows in item.sources
            )
            index += len(run.members)
            continue
        job = jobs[index]
        table, start, rows, parsed_as = parsed.get(index, (None, 0, 0, PLAIN))
        own = table.slice(start, rows) if table is not None else None
        result = lost.get(index) or _featurise_one(job, task, own, targets, parsed_as)
        if isinstance(result, Failure):
            outcomes.append(Outcome(job.source_file, job.sha256, failure=result))
        else:
            featurised, dialect = result
            ((_, _, rows),) = featurised.sources
            outcomes.append(Outcome(job.source_file, job.sha256, rows, None, dialect))
            done.append(featurised)
        index += 1
    return outcomes, done


def _featurise_run(
    run: Run, jobs: tuple[Job, ...], task: Task, targets: conform.Targets
) -> list[Featurised] | None:
    """A run's files at once, within one file's time limit; None if anything fails, for
    its files to be taken one by one, each to its own verdict."""
    try:
        with time_limit(task.timeout_s):
            return featurise_run(run, jobs, task, targets)
    except Exception:
        return None
