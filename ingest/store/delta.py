"""Each table as a Delta table: the log `<output>/<table>/_delta_log/` over our part files.

Called in the committer's thread (commits, compactions, rewrites), at start-up in a
thread, or in `ingest compact` and `ingest ledger rebuild`; never on the event loop.
Used only with `[output] format = "delta"` (`Layout.delta`).

One ingest commit is one Delta commit per table it adds parts to; a compaction or a
rewrite is one Delta commit that removes the old parts and adds the new ones. Every
commit carries an application transaction (`txn`): our app id and a version one above
the last, per table. delta-rs enforces none of this, so `commit` checks the log's
version first, and fsyncs the new log entry before the ledger records the commit
(delta-rs does not). The order in `parts.publish`, and what a crash leaves:

    ledger: part pending, its txn versions   crash: log lacks it -> part rolled back
    parts renamed into place                 crash: log lacks it -> part rolled back
    Delta commit(s) + fsync                   crash: log has it   -> ledger finishes it
    ledger: part committed                    (the log and the ledger agree)

If the ledger then fails to commit (a full disk), a second Delta commit takes the parts
out again and the batch is retried (`delta_step.py`): the log's history then shows them
for one version. A compaction removes the parts it replaced from disk at once, since
plain glob readers must not see them: time travel reads a version only while the parts
it names are still there, that is since the last compaction of their partitions, and
while the log still holds its entry (RETENTION).

A DeltaTable object is stale after a commit made through it: `commit` refreshes the one
it used (kept in `Layout.logs`), and a failed commit drops it, to be opened afresh.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, PostCommitHookProperties, Schema, TableFeatures
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)

from ..errors import LedgerError
from .catalog import split
from .crashpoints import CrashPlan
from .delta_stats import stats_json
from .fsync import fsync_path
from .layout import Layout

log = logging.getLogger("ingest.delta")

APP_ID = "ingest"
PARTITION = "ingest_date"
# A checkpoint every this many commits: opening the table reads the last checkpoint and
# at most this many JSON entries after it. More: fewer checkpoint writes; fewer: faster opens.
CHECKPOINT_EVERY = 100
# How long the log keeps entries. Every commit lists the whole `_delta_log` folder, as
# every reader's open does: at 7 days, a trickle of a commit a second held 600,000
# entries, and a commit took 1.5 s (bench/README.md). Time travel reaches no further
# back than the last compaction of the partitions read in any case (above), so an hour
# of history is all it loses. Expired entries are deleted once a new checkpoint is on
# disk (`_fsync_log`), deltalake keeping the checkpoint that the oldest version of the
# hour is read from.
RETENTION = "interval 1 hour"
# How long a removed part's tombstone stays in the log's state. Every checkpoint carries
# each tombstone still this young, and a Delta `vacuum` leaves a removed file this long.
# Ours are deleted by the compaction that removes them (see above), so a tombstone
# protects nothing once its commit is read: at 7 days, a trickle of a file a second
# made each checkpoint (one every 100 commits, each kept for RETENTION) carry about
# 600,000 tombstones, some 36 MB (bench/README.md).
TOMBSTONE_RETENTION = "interval 1 hour"
CONFIGURATION: dict[str, str | None] = {
    "delta.checkpointInterval": str(CHECKPOINT_EVERY),
    "delta.logRetentionDuration": RETENTION,
    "delta.deletedFileRetentionDuration": TOMBSTONE_RETENTION,
    "delta.enableExpiredLogCleanup": "true",
}


# deltalake would delete expired entries in the commit itself, before `_fsync_log` makes
# its new checkpoint durable: after an idle hour, a power cut could then leave a log whose
# only checkpoint was lost. They are deleted once it is on disk instead.
NO_CLEANUP = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


class DeltaConflict(LedgerError):
    """Raised when a table's Delta log already holds the txn version about to be committed."""


@dataclass(frozen=True)
class Change:
    """One Delta commit: part files (relative to the output folder) added and removed."""

    table: str
    add: Sequence[str] = ()
    remove: Sequence[str] = ()
    data_change: bool = True
    schema: pa.Schema | None = None  # a new table schema: every part is replaced at once


def table_uri(layout: Layout, table: str) -> Path:
    return layout.output / table


def open_table(layout: Layout, table: str, version: int | None = None) -> DeltaTable | None:
    """The table as its log says now (or at `version`); None if it has no log yet."""
    if version is None and table in layout.logs:
        cached: DeltaTable = layout.logs[table]
        return cached
    uri = table_uri(layout, table)
    if not (uri / "_delta_log").is_dir() or not DeltaTable.is_deltatable(str(uri)):
        return None
    found = DeltaTable(str(uri), version=version)
    if version is None:
        layout.logs[table] = found
    return found


def configure(layout: Layout, table: str) -> dict[str, str]:
    """Bring the table's properties to CONFIGURATION (a table made by an older release
    keeps what it was made with): one Delta commit of its metadata, which carries no txn
    and changes no part. The properties it changed, with their new values."""
    found = open_table(layout, table)
    if found is None:
        return {}
    have = found.metadata().configuration
    changed = {k: v for k, v in CONFIGURATION.items() if v is not None and have.get(k) != v}
    if changed:
        try:
            found.alter.set_table_properties(changed)
        finally:
            layout.logs.pop(table, None)  # opened afresh: this object's state is older
        _fsync_log(layout, table, None)
    return changed


# Which statistics the parts' add actions carry: 2, each column's own. Before it, a
# column after a nested one took another Parquet column's statistics (a nested column
# has one per leaf), and readers skipped its rows or read them null. The ledger keeps
# the version its tables' logs were last brought to (`delta_repair.sync`).
STATS_VERSION = "2"


def nested(layout: Layout, table: str) -> bool:
    """Does the table's log hold a nested column (whose statistics an older release
    shifted onto the columns after it)?"""
    found = open_table(layout, table)
    return found is not None and any(
        pa.types.is_nested(field.type) for field in pa.schema(found.schema().to_arrow())
    )


def txn_version(layout: Layout, table: str) -> int:
    """Our last txn version in the table's log; 0 before the first commit."""
    found = open_table(layout, table)
    return (found.transaction_version(APP_ID) or 0) if found is not None else 0


def files(layout: Layout, table: str) -> set[str]:
    """The part files of the table's current snapshot, relative to the output folder."""
    found = open_table(layout, table)
    if found is None:
        return set()
    paths = pa.table(found.get_add_actions(flatten=True)).column("path").to_pylist()
    return {f"{table}/{path}" for path in paths}


def commit(layout: Layout, change: Change, crash: CrashPlan, version: int | None = None) -> int:
    """Commit `change` as txn `version` (by default one above the log's), fsync the
    log entry, and return the version. Raises DeltaConflict if the log has it already."""
    table = change.table
    found = open_table(layout, table)
    have = (found.transaction_version(APP_ID) or 0) if found is not None else 0
    version = have + 1 if version is None else version
    if have >= version:
        raise DeltaConflict(
            f"{table}: the Delta log already holds txn version {have}; not committing"
            f" version {version} again"
        )
    adds = [_add(layout, rel, change.data_change) for rel in change.add]
    # No retries: a commit that finds the log moved on fails, rather than being rebased
    # past a version this check did not see.
    props = CommitProperties(
        max_commit_retries=0, app_transactions=[Transaction(APP_ID, version)]
    )
    schema = change.schema or _schema_of(layout, change.add)
    try:
        _write(layout, change, found, adds, schema, props)
    except BaseException:
        layout.logs.pop(table, None)  # perhaps stale now: the next call opens it afresh
        raise
    crash.reached("delta-committed")
    return version


def _write(
    layout: Layout, change: Change, found: DeltaTable | None, adds: list[AddAction],
    schema: pa.Schema, props: CommitProperties,
) -> None:
    """The Delta commit itself, then the fsync of its log entry."""
    table = change.table
    now = int(time.time() * 1000)
    if found is None:
        create_table_with_add_actions(
            str(table_uri(layout, table)), Schema.from_arrow(with_partition(schema)), adds,
            mode="error", partition_by=[PARTITION], configuration=CONFIGURATION,
            commit_properties=props,
        )
        found = open_table(layout, table)
    else:
        removes = [] if change.schema is not None else [
            RemoveAction(_in_table(rel), change.data_change, now, None,
                         {PARTITION: split(rel)[1]})
            for rel in change.remove
        ]
        if change.schema is not None:
            _allow_naive_timestamps(layout, table, found, schema)
        # A new schema replaces every part: "overwrite" removes them all and writes
        # the schema in the same commit as the parts that need it.
        found.create_write_transaction(
            [*adds, *removes], "overwrite" if change.schema is not None else "append",
            with_partition(schema), partition_by=[PARTITION], commit_properties=props,
            post_commithook_properties=NO_CLEANUP,
        )
    _fsync_log(layout, table, found)


# The table feature a Delta table needs for a timestamp without a time zone.
NAIVE_TIMESTAMPS = "timestampNtz"


def _naive_timestamp(kind: pa.DataType) -> bool:
    if pa.types.is_timestamp(kind):
        return kind.tz is None
    return any(_naive_timestamp(kind.field(i).type) for i in range(kind.num_fields))


def _allow_naive_timestamps(
    layout: Layout, table: str, found: DeltaTable, schema: pa.Schema
) -> None:
    """A table made with dates that a later file widens to timestamps is given the feature
    first, in a commit of its own: deltalake writes the new schema without it, and no
    reader opens a table whose schema needs a feature its protocol lacks. A table made
    with timestamps has it from its first commit."""
    if not any(_naive_timestamp(field.type) for field in schema):
        return
    if NAIVE_TIMESTAMPS in (found.protocol().reader_features or []):
        return
    found.alter.add_feature(
        TableFeatures.TimestampWithoutTimezone, allow_protocol_versions_increase=True,
        post_commithook_properties=NO_CLEANUP,
    )
    _fsync_log(layout, table, found)


def with_partition(schema: pa.Schema) -> pa.Schema:
    """The Delta schema: the table schema, then the partition column."""
    fields = [field.remove_metadata() for field in schema if field.name != PARTITION]
    return pa.schema([*fields, pa.field(PARTITION, pa.string())])


def same_schema(layout: Layout, table: str, schema: pa.Schema) -> bool:
    found = open_table(layout, table)
    if found is None:
        return False
    log_schema = pa.schema(found.schema().to_arrow())
    return bool(log_schema.equals(with_partition(schema)))


def _add(layout: Layout, rel: str, data_change: bool) -> AddAction:
    path = layout.output / rel
    st = path.stat()
    return AddAction(
        _in_table(rel), st.st_size, {PARTITION: split(rel)[1]}, st.st_mtime_ns // 1_000_000,
        data_change, stats_json(path),
    )


def _in_table(rel: str) -> str:
    return rel.split("/", 1)[1]


def _schema_of(layout: Layout, rels: Iterable[str]) -> pa.Schema:
    for rel in rels:
        return pq.read_schema(layout.output / rel).remove_metadata()
    return pa.schema([])


def _fsync_log(layout: Layout, table: str, used: DeltaTable | None) -> None:
    """The newest log entry (and a checkpoint written with it), its folder, the table's.
    `used`, the object the commit went through, is stale until refreshed."""
    log = table_uri(layout, table) / "_delta_log"
    if used is None:
        used = DeltaTable(str(table_uri(layout, table)))
        layout.logs[table] = used
    else:
        used.update_incremental()  # refresh, not the SQL UPDATE of `update()`
    version = used.version()
    names = [f"{version:020d}.json"]
    checkpointed = (version + 1) % CHECKPOINT_EVERY == 0  # delta-rs checkpoints each N-th
    if checkpointed:
        names += [p.name for p in log.glob(f"{version:020d}.checkpoint*")] + ["_last_checkpoint"]
    for name in names:
        if (log / name).exists():
            fsync_path(log / name)
    fsync_path(log)
    fsync_path(log.parent)
    if checkpointed:
        _expire(used, table)


def _expire(used: DeltaTable, table: str) -> None:
    """Delete the log entries past RETENTION, now that the new checkpoint is durable. A
    failure loses nothing (the next checkpoint tries again), so it never fails a commit
    already in the log, which would be taken out and retried."""
    try:
        used.cleanup_metadata()
    except Exception as exc:
        log.warning("table %s: expired Delta log entries left for the next checkpoint: %s",
                    table, exc)


def intent(versions: dict[str, int], records: list[dict[str, object]],
           holds: dict[str, list[tuple[str, str]]]) -> str:
    """What the ledger keeps with a pending part, to finish it if the log has it."""
    return json.dumps({"txn": versions, "records": records, "holds": holds})
