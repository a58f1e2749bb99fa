"""Named points in the commit path where a test can make the service die.

`INGEST_CRASH_AT=<point>` (or `<point>:<n>`, the n-th time it is reached) makes
the process SIGKILL itself there, the way a power cut or an OOM kill would.
The service reads it once at start-up; unset, each point costs one falsy check.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

COMMIT_POINTS = (
    "temp-written",  # a part's temp file is written, not yet fsynced
    "temp-fsynced",  # ... fsynced, not yet recorded as pending
    "part-pending",  # the ledger holds the part as pending, nothing renamed
    "part-renamed",  # the first part file of a batch is renamed into place
    "ledger-committed",  # the part and its inputs are committed in the ledger
    "input-disposed",  # the first input of a batch is archived or deleted
    "quarantine-recorded",  # a bad input is in the ledger, not yet moved
    "block-staged",  # a block of a streamed file is staged under _ingest/tmp
)
# The steps of a compaction or rewrite (`compact.py`).
COMPACT_POINTS = (
    "compact-staged",  # merged files staged and recorded as a staged swap, nothing visible
    "compact-swapped",  # the staged folder is exchanged with the live one, ledger not yet told
    "compact-committed",  # the ledger holds the new files, the old ones are still staged
    "compact-removed",  # the old files are removed, the swap record not yet forgotten
)
POINTS = COMMIT_POINTS + COMPACT_POINTS


@dataclass
class CrashPlan:
    point: str = ""
    countdown: int = 1

    @classmethod
    def from_env(cls) -> CrashPlan:
        name, _, nth = os.environ.get("INGEST_CRASH_AT", "").partition(":")
        if name and name not in POINTS:
            raise ValueError(f"INGEST_CRASH_AT={name!r} is not one of {', '.join(POINTS)}")
        return cls(name, int(nth or 1))

    def reached(self, point: str) -> None:
        """Die here if this is the planned point."""
        if self.point and point == self.point:
            self.countdown -= 1
            if self.countdown <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
