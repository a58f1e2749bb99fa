"""Compaction under `ingest run`: which partition is due, and one compaction per pass.

Runs in the committer's thread (`aio/commit.py` hands each pass to a thread between
commits), never on the event loop; a pass is short (`PASS_S`), so commits wait little.

A partition is due when it holds more files than its bytes need (one per
`target_file_mb`), plus a slack for today's partition, which is still growing: a
trickle of a file a second leaves a handful of parts in it, and a closed partition
(a past ingest_date) ends as one target-sized file, or a few. In today's partition a
merge takes files of about one size (`compact.smallest`), so that its biggest is not
rewritten for every few new parts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .crashpoints import CrashPlan
from .layout import Layout, today
from .ledger import Ledger

if TYPE_CHECKING:
    from .compact import Outcome

log = logging.getLogger("ingest.compact")

# Small files today's partition may gather beyond what its bytes need before it is
# compacted: more means fewer rewrites of the same rows, fewer means faster scans.
OPEN_SLACK = 8
# A pass goes on to the next due partition while it has taken less than this: commits
# wait at most about this long plus one partition's compaction.
PASS_S = 0.1


@dataclass
class Compactor:
    layout: Layout
    crash: CrashPlan
    target_bytes: int
    compression: str = "zstd"
    # Partitions found with nothing to merge, by their file count then: skipped until it changes.
    _settled: dict[tuple[str, str], int] = field(default_factory=dict)
    # Parts in the ledger found gone from disk (removed by hand): warned of once.
    _missing: set[Path] = field(default_factory=set)

    def due(self, ledger: Ledger) -> tuple[str, str, int] | None:
        """The partition most over its due, with its file count; None if none is due."""
        now = today()
        found: tuple[str, str, int] | None = None
        most = 0
        for table, day, count, size in ledger.partitions():
            if self._settled.get((table, day)) == count:
                continue
            least = max(1, -(-size // self.target_bytes))
            over = count - least - (OPEN_SLACK if day >= now else 0)
            if over > most:
                found, most = (table, day, count), over
        return found

    def step(self, ledger: Ledger) -> list[Outcome]:
        """Compact due partitions, the most overdue first, while the pass is shorter than
        `PASS_S` (at least one). Called in the committer's thread."""
        started = time.monotonic()
        done: list[Outcome] = []
        while time.monotonic() - started < PASS_S and (found := self.due(ledger)):
            from .compact import compact_partition  # pyarrow: loaded once one is due

            table, day, count = found
            outcome = compact_partition(
                ledger, self.layout, table, day, self.crash, self.target_bytes, self.compression,
                growing=day >= today(), missing=self._missing,
            )
            if outcome is None:
                self._settled[(table, day)] = count
            else:
                log.info(outcome.line())
                done.append(outcome)
        return done
