"""A commit that keeps failing for its own batch of files, not for the machine.

A commit fails for one of two kinds of reason. The machine's (a full disk, an I/O
error, a ledger it cannot lock) would fail any batch alike: the batch is retried
until they pass, however long that takes, and its files wait in the drop folder.
A batch's own (a bug that one file's values bring out) never passes: retried as it
stands, the batch would hold up every file behind it for ever. Such a batch is
tried `LASTING_AFTER` times, then committed in halves, each tried once more before
it is halved again. A file that still fails alone is quarantined with the error,
once some other batch has committed since the first failure (so the machine can
commit): a fault that fails every commit quarantines nothing.

Runs in the committer's thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..errors import LedgerError
from ..jobs import EncodedPart
from .delta_step import Unsettled
from .parts import Accepted, StagedPart

LASTING_AFTER = 3
MAX_BACKOFF_S = 30.0
# How a Rust io::Error ends its text, as deltalake raises a full disk: "(os error 28)".
RUST_OS_ERROR = "(os error "


def backoff_after(previous: float) -> float:
    """The pause before the next try of what the machine keeps failing (a commit, a read
    of the ledger): half a second, doubled each time, up to MAX_BACKOFF_S."""
    return min(MAX_BACKOFF_S, max(0.5, previous * 2))


def the_machines(exc: BaseException) -> bool:
    """True if the error, or one it came from, is the machine's or the service's state's
    (a full disk, a damaged ledger, a Delta log left half committed), which any batch
    would meet alike, rather than the batch's own."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if _the_machines(error):
            return True
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return False


def _the_machines(error: BaseException) -> bool:
    if isinstance(error, OSError | MemoryError | LedgerError | Unsettled):
        return True
    if isinstance(error, sqlite3.OperationalError | sqlite3.InternalError):
        # A full disk, a locked database; but SQLITE_ERROR is an SQL statement's own ("no
        # such column"), which no retry mends: told as the machine's, every commit would
        # wait on it for ever.
        return getattr(error, "sqlite_errorcode", None) != sqlite3.SQLITE_ERROR
    if type(error) is sqlite3.DatabaseError:
        return True  # "database disk image is malformed"; an IntegrityError is a bug's
    if type(error).__name__ == "CommitFailedError":
        # deltalake's: another writer (a VACUUM, say) committed to the log first, and a
        # commit of ours is never rebased past it (`delta.commit`): the next try reads
        # the log again.
        return True
    return RUST_OS_ERROR in str(error)


Part = EncodedPart | StagedPart
Batch = tuple[list[Accepted], list[Part]]


def halves(accepted: Sequence[Accepted], parts: Sequence[Part], compression: str) -> list[Batch]:
    """The batch as two, each with its inputs' rows only (the parts written again)."""
    from .strip import split  # pyarrow: loaded only when a batch is split

    middle = len(accepted) // 2
    first, second = list(accepted[:middle]), list(accepted[middle:])
    ones, others = split(parts, {entry.file.rel for entry in first}, compression)
    return [(first, ones), (second, others)]
