"""`ingest compact`: every partition of every table, one after another.

Runs in the command's main thread: it is the output folder's only writer while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..config import Config
from ..errors import LedgerError
from ..progress import command_bar
from .compact import Outcome, compact_partition
from .crashpoints import CrashPlan
from .layout import Layout
from .ledger import Ledger
from .parts import reconcile

log = logging.getLogger("ingest.compact")


def compact_all(config: Config, stop: Callable[[], bool] = lambda: False) -> list[Outcome]:
    """Repair what a crash left, then compact each partition; log each one compacted.
    `stop`: asked before each partition; once true, the rest are left for the next run."""
    layout = Layout.of(config)
    if not layout.ledger.exists():
        if any(p.is_dir() for t in layout.tables() for p in (layout.output / t).iterdir()):
            raise LedgerError(
                f"{layout.ledger} is missing; run `ingest ledger rebuild` before compacting"
            )
        return []
    layout.make_dirs()
    crash = CrashPlan.from_env()
    ledger = Ledger(layout.ledger)
    try:
        reconcile(ledger, layout)
        partitions = [(table, day) for table, day, _, _ in ledger.partitions()]
        target = config.output.target_file_mb * 1024 * 1024
        outcomes: list[Outcome] = []
        with command_bar("compact") as bar:
            task = bar.add_task("", total=len(partitions))
            for done, (table, day) in enumerate(partitions):
                if stop():
                    log.warning(
                        "stopped by a signal after %d of %d partitions; the other %d wait for"
                        " the next `ingest compact`", done, len(partitions), len(partitions) - done,
                    )
                    break
                bar.update(task, description=f"{table}/ingest_date={day}")
                outcome = compact_partition(
                    ledger, layout, table, day, crash, target, config.output.compression
                )
                if outcome is not None:
                    log.info(outcome.line())
                    outcomes.append(outcome)
                bar.advance(task)
        return outcomes
    finally:
        ledger.close()
