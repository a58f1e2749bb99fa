"""Named points in the commit path where a test can make the service die.

`INGEST_CRASH_AT=<point>` (or `<point>:<n>`, the n-th time it is reached) makes
the process SIGKILL itself there, the way a power cut or an OOM kill would.
The service reads it once at start-up; unset, each point costs one falsy check.

`INGEST_FAIL_AT=<point>` instead makes the service's own code raise there, once, for
tests of what a bug or a passing fault does: in an internal task (`intake`) it must
stop the service with exit 1; at the ledger's commit of a part (`ledger-commit`) the
commit is undone, its Delta log entry included, and retried; in a worker
(`worker:<file>`, checked in ingest/compute/task.py) the task's files are retried
alone and the named one quarantined. `ledger-commit:<file>` raises at every commit
that holds the named file, as a bug brought out by that file's values would: the
commit is undone each time, and the committer must find the file and set it aside.
`aside-recorded:<file>` raises at every record of files set aside that holds the named
file: the others are recorded, and that one is left in the drop folder, unrecorded.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
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
# With `format = "delta"` (`delta.py`), in a commit and in a compaction or rewrite.
DELTA_POINTS = (
    "delta-committed",  # the Delta log holds the commit (fsynced), the ledger not yet
    "part-undone",  # a failed commit taken out of the log, its files removed, not forgotten
)
POINTS = COMMIT_POINTS + COMPACT_POINTS + DELTA_POINTS


# Where INGEST_FAIL_AT can make the service's own code raise.
FAIL_POINTS = (
    "intake",  # the intake task, as it takes a settled file
    "ledger-commit",  # the ledger's commit of a part, after its Delta commit if any
    "aside-recorded",  # the ledger's record of files set aside (duplicates, quarantined)
    "worker",  # a worker, as it starts a task holding the named file
)

# ... and those that take `:<file>`: raise for that file's task or commit.
FILE_POINTS = ("ledger-commit", "aside-recorded", "worker")


class InjectedFailure(RuntimeError):
    """Raised at an INGEST_FAIL_AT point: a stand-in for a bug in the service."""


@dataclass
class CrashPlan:
    point: str = ""
    countdown: int = 1
    fail: str = ""
    fail_file: str = ""  # raise at `fail` whenever a commit holds this file, not just once

    @classmethod
    def from_env(cls) -> CrashPlan:
        name, _, nth = os.environ.get("INGEST_CRASH_AT", "").partition(":")
        if name and name not in POINTS:
            raise ValueError(f"INGEST_CRASH_AT={name!r} is not one of {', '.join(POINTS)}")
        fail, _, fail_file = os.environ.get("INGEST_FAIL_AT", "").partition(":")
        if fail and fail not in FAIL_POINTS:
            raise ValueError(f"INGEST_FAIL_AT={fail!r} is not one of {', '.join(FAIL_POINTS)}")
        if fail_file and fail not in FILE_POINTS:
            raise ValueError(f"INGEST_FAIL_AT={fail}: names no file; only"
                             f" {' and '.join(FILE_POINTS)} do")
        return cls(name, int(nth or 1), fail, fail_file)

    def reached(self, point: str) -> None:
        """Die here if this is the planned point."""
        if self.point and point == self.point:
            self.countdown -= 1
            if self.countdown <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    def fail_here(self, point: str, holding: Iterable[str] = ()) -> None:
        """Raise here the first time the planned point is reached; with a file named, every
        time it is reached `holding` that file."""
        if not self.fail or point != self.fail:
            return
        if self.fail_file:
            if self.fail_file in holding:
                raise InjectedFailure(f"INGEST_FAIL_AT={point}:{self.fail_file}")
            return
        self.fail = ""
        raise InjectedFailure(f"INGEST_FAIL_AT={point}")
