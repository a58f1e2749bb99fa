"""Start-up repair of the Delta logs: the ledger and each table's log made to agree.

Runs at start-up in a thread of the main process (from `parts.reconcile`), or in
`ingest compact`; never on the event loop, and only with `format = "delta"`.

A pending part whose txn version the log holds was committed to Delta before the
crash: it is finished in the ledger, from the records kept with it (a part spanning
tables is first committed to the logs that lack it). A pending part the log lacks is
rolled back by the caller, as without Delta. Then each table's log is brought to the
ledger's committed part files in one commit (`sync`): what a crash between a
compaction's swap and its Delta commit, or a switch from plain Parquet, left behind.
A log made by an older release gets this one's table properties first
(`delta.configure`).
"""

from __future__ import annotations

import json
import logging

import pyarrow.parquet as pq

from . import delta
from .catalog import split
from .crashpoints import CrashPlan
from .layout import Layout
from .ledger import FileRecord, Ledger

log = logging.getLogger("ingest.delta")
# The ledger's record of delta.STATS_VERSION, once every table's log has it.
DELTA_STATISTICS = "delta_statistics"


def finish_pending(ledger: Ledger, layout: Layout, part_id: str, paths: list[str]) -> bool:
    """True if the pending part was in a Delta log and is now committed in the ledger."""
    raw = ledger.intent(part_id)
    if raw is None:
        return False
    intent = json.loads(raw)
    versions: dict[str, int] = intent["txn"]
    have = {table: delta.txn_version(layout, table) for table in versions}
    # A log past the part's version holds it only if its snapshot names the part's files:
    # a commit taken out again (`DeltaStep.revert`, whose forget then failed, or was cut
    # short) moved the version on with a remove of them.
    if not any(have[table] >= version and _names_any(layout, table, paths)
               for table, version in versions.items()):
        return False
    if not all((layout.output / rel).exists() for rel in paths):
        raise delta.DeltaConflict(
            f"part {part_id} is in the Delta log but some of its files are missing"
        )
    for table, version in versions.items():
        if have[table] < version:
            mine = [rel for rel in paths if split(rel)[0] == table]
            delta.commit(layout, delta.Change(table, add=mine), CrashPlan())
    records = [FileRecord(**record) for record in intent["records"]]
    holds = {rel: [tuple(pair) for pair in pairs] for rel, pairs in intent["holds"].items()}
    ledger.finish_part(part_id, records, holds)
    log.warning("start-up repair: part %s was in the Delta log; finished in the ledger", part_id)
    return True


def _names_any(layout: Layout, table: str, paths: list[str]) -> bool:
    """Whether the table's current snapshot holds any of these part files of its own."""
    mine = {rel for rel in paths if split(rel)[0] == table}
    return not mine.isdisjoint(delta.files(layout, table))


def sync(ledger: Ledger, layout: Layout, crash: CrashPlan) -> int:
    """Bring each table's log to the ledger's committed part files; how many commits."""
    commits = 0
    restat = ledger.meta(DELTA_STATISTICS) != delta.STATS_VERSION
    for table in ledger.tables():
        if restat and delta.nested(layout, table):
            commits += _restat(layout, table, crash)
        if changed := delta.configure(layout, table):
            log.info("table %s: Delta log properties set: %s", table,
                     ", ".join(f"{key} = {value}" for key, value in sorted(changed.items())))
        want = _on_disk(layout, table, {part.path for part in ledger.part_files(table)})
        have = delta.files(layout, table)
        if not want and not have:
            continue
        exists = delta.open_table(layout, table) is not None
        schema = pq.read_schema(layout.output / min(want)).remove_metadata() if want else None
        if exists and schema is not None and not delta.same_schema(layout, table, schema):
            change = delta.Change(table, add=sorted(want), schema=schema, data_change=False)
        elif want != have:
            change = delta.Change(
                table, add=sorted(want - have), remove=sorted(have - want), data_change=False
            )
        else:
            continue
        delta.commit(layout, change, crash)
        commits += 1
        log.warning(
            "start-up repair: %s's Delta log brought to the ledger (%d added, %d removed)",
            table, len(want - have), len(have - want),
        )
    if restat:
        ledger.set_meta(DELTA_STATISTICS, delta.STATS_VERSION)
    return commits


def _on_disk(layout: Layout, table: str, parts: set[str]) -> set[str]:
    """The ledger's part files of the table that are on disk. One removed by hand is left
    out of the log, as compaction leaves it out (`store/compact.plan`): a log that named
    it would fail every reader, and every start, at the file it cannot open."""
    gone = {rel for rel in parts if not (layout.output / rel).exists()}
    for rel in sorted(gone):
        log.warning(
            "%s is in the ledger but not on disk: left out of %s's Delta log; its rows are"
            " gone from the table (`ingest ledger rebuild` makes the ledger agree with the"
            " output)", layout.output / rel, table,
        )
    return parts - gone


def _restat(layout: Layout, table: str, crash: CrashPlan) -> int:
    """Add the log's parts again, in one commit of adds alone (`dataChange = false`: the
    protocol's way to change a file's metadata; a remove of the same path beside it
    would leave readers to choose the order), with statistics read from their footers as
    this release reads them; how many commits (0 with no parts)."""
    want = sorted(delta.files(layout, table))
    if not want:
        return 0
    delta.commit(layout, delta.Change(table, add=want, data_change=False), crash)
    log.warning(
        "start-up repair: %s's Delta statistics written again for its %d parts (a column"
        " after a nested one had another column's)", table, len(want),
    )
    return 1
