"""The Delta step of an ingest commit (`parts.publish`), when the tables are Delta tables.

Runs in the committer's thread, between the rename of the part files and the ledger's
commit; `delta.py` has the order and its crash table. `deltalake` is imported only
here and in the modules it calls, so plain Parquet needs no extra package.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from .catalog import split
from .crashpoints import CrashPlan
from .layout import Layout
from .ledger import FileRecord, Ledger

log = logging.getLogger("ingest.delta")


class Unsettled(RuntimeError):
    """Raised when a commit starts while an earlier one is half in a Delta log: only
    start-up repair may settle it, or its inputs would be committed twice."""


@dataclass
class DeltaStep:
    layout: Layout
    rels: Sequence[str]  # the part files, relative to the output folder
    versions: dict[str, int]  # table -> the txn version its commit will carry
    intent: str
    committed: list[str] = field(default_factory=list)  # tables whose log has the part

    @classmethod
    def plan(
        cls, ledger: Ledger, layout: Layout, rels: Sequence[str],
        records: Sequence[FileRecord], holds: Mapping[str, Sequence[tuple[str, str]]],
    ) -> DeltaStep | None:
        """None with plain Parquet; else the txn versions, one above each log's."""
        if not layout.delta:
            return None
        from . import delta

        if ledger.pending_parts():
            raise Unsettled(
                "an earlier commit is half in a Delta log; the next start finishes or undoes it"
            )
        tables = dict.fromkeys(split(rel)[0] for rel in rels)
        versions = {table: delta.txn_version(layout, table) + 1 for table in tables}
        text = delta.intent(
            versions, [asdict(record) for record in records],
            {rel: list(inputs) for rel, inputs in holds.items()},
        )
        return cls(layout, rels, versions, text)

    def commit(self, crash: CrashPlan) -> None:
        """One Delta commit per table, each fsynced, before the ledger's commit."""
        from . import delta

        for table, version in self.versions.items():
            mine = [rel for rel in self.rels if split(rel)[0] == table]
            try:
                delta.commit(self.layout, delta.Change(table, add=mine), crash, version)
            except BaseException:
                if self._maybe_in_log(table, version):
                    self.committed.append(table)  # an fsync failed after the entry was written
                raise
            self.committed.append(table)

    def _maybe_in_log(self, table: str, version: int) -> bool:
        """After a failed commit: does the log hold it? True when that cannot be told."""
        from . import delta

        try:
            return delta.txn_version(self.layout, table) >= version
        except Exception:
            return True

    def revert(self) -> bool:
        """After the ledger failed to commit: take the part out of the logs again, so the
        batch can be retried. False if that failed too: the log keeps the part, and
        start-up repair finishes it in the ledger."""
        from . import delta

        try:
            for table in reversed(self.committed):
                mine = [rel for rel in self.rels if split(rel)[0] == table]
                delta.commit(self.layout, delta.Change(table, remove=mine), CrashPlan())
                self.committed.remove(table)
        except Exception:
            log.exception("could not take a failed commit out of the Delta log")
            return False
        return True
