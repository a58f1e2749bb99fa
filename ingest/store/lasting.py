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

from ..jobs import EncodedPart
from .parts import Accepted, StagedPart

LASTING_AFTER = 3
# How a Rust io::Error ends its text, as deltalake raises a full disk: "(os error 28)".
RUST_OS_ERROR = "(os error "


def the_machines(exc: BaseException) -> bool:
    """True if the error, or one it came from, is the machine's rather than the batch's."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError | sqlite3.OperationalError) or RUST_OS_ERROR in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


Part = EncodedPart | StagedPart
Batch = tuple[list[Accepted], list[Part]]


def halves(accepted: Sequence[Accepted], parts: Sequence[Part], compression: str) -> list[Batch]:
    """The batch as two, each with its inputs' rows only (the parts written again)."""
    from .strip import split  # pyarrow: loaded only when a batch is split

    middle = len(accepted) // 2
    first, second = list(accepted[:middle]), list(accepted[middle:])
    ones, others = split(parts, {entry.file.rel for entry in first}, compression)
    return [(first, ones), (second, others)]


def remove(parts: Sequence[Part]) -> None:
    """Let go of a batch's parts: those staged under `_ingest/tmp` are deleted."""
    for part in parts:
        if isinstance(part, StagedPart):
            part.temp.unlink(missing_ok=True)
