"""What the service knows of the inputs recorded before: in memory, up to a bound.

The loop asks two things of every file: is this name, size and mtime recorded already
(`keys`), and were these bytes ingested already (`ingested`). Held whole, the answers
grow with every input ever recorded, about 500 bytes each: a service left for a year
would hold gigabytes of them. So memory holds the newest `capacity` of each, and says
whether that is all the ledger knows (`whole`):

    whole       every answer is a dict lookup, as fast as can be
    not whole   an answer memory lacks is asked of the ledger, in batches, from a thread
                (`aio/recall.py`); the sha256 index that makes it cheap is made then

Entries are trimmed oldest first, a batch at a time. `trimmed` counts the trims: a
lookup in the ledger that overlapped one may have missed an answer that was recorded,
held and let go while it ran, and asks again.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")
Key = tuple[str, int, int]  # (path relative to the drop folder, size, mtime_ns)

# About 50 MB of answers held at most; a ledger of fewer inputs is held whole.
KNOWN_FILES = 100_000


@dataclass
class Known:
    """What the ledger knows, loaded at start-up for O(1) checks on the loop."""

    keys: dict[Key, str]  # (path, size, mtime_ns) -> state, oldest first
    ingested: dict[str, str]  # sha256 -> the path first ingested with it, oldest first
    schemas: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # `Ledger.schemas()`
    dialects: dict[str, str] = field(default_factory=dict)  # see `Ledger.dialects()`
    whole: bool = True  # memory holds every answer the ledger has
    indexed: bool = False  # the ledger has the sha256 index lookups past the bound read
    capacity: int = KNOWN_FILES
    trimmed: int = 0

    def trim(self) -> None:
        """Let the oldest answers go once either map is an eighth over `capacity`.
        Called after each batch of outcomes: the slack makes a trim rare, and each
        costs about one dict insertion per entry kept."""
        limit = self.capacity + self.capacity // 8
        if len(self.keys) > limit:
            self.keys = _newest(self.keys, self.capacity)
            self._trimmed()
        if len(self.ingested) > limit:
            self.ingested = _newest(self.ingested, self.capacity)
            self._trimmed()

    def _trimmed(self) -> None:
        self.whole = False
        self.trimmed += 1


def _newest(entries: dict[K, V], keep: int) -> dict[K, V]:
    return dict(itertools.islice(entries.items(), max(0, len(entries) - keep), None))
