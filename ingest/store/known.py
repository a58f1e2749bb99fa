"""What the service knows of the inputs recorded before: in memory, up to a bound.

The loop asks two things of every file: is this name, size and mtime recorded already
(`keys`), and were these bytes ingested already (`ingested`). Held whole, the answers
grow with every input ever recorded, about 600 bytes each: a service left for a year
would hold gigabytes of them. So memory holds the newest `capacity` of each, and says
whether that is all the ledger knows (`whole`):

    whole       every answer is a dict lookup, as fast as can be
    not whole   an answer memory lacks is asked of the ledger, in batches, from a thread
                (`aio/recall.py`); the sha256 index that makes it cheap is made then

Entries leave oldest first, a few after each batch of outcomes, never many at once:
letting 12,500 go at once from dicts of 100,000 held the loop for 60 ms. `evicted` counts the
sha256s let go of: as they leave in the order they came, a lookup in the ledger knows
whether one recorded while it ran has left memory since (`Recall.originals`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

Key = tuple[str, int, int]  # (path relative to the drop folder, size, mtime_ns)

# About 60 MB of answers held at most; a ledger of fewer inputs is held whole.
KNOWN_FILES = 100_000


@dataclass
class Known:
    """What the ledger knows, loaded at start-up for O(1) checks on the loop."""

    keys: OrderedDict[Key, str]  # (path, size, mtime_ns) -> state, oldest first
    ingested: OrderedDict[str, str]  # sha256 -> the path first ingested with it, oldest first
    schemas: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # `Ledger.schemas()`
    dialects: dict[str, str] = field(default_factory=dict)  # see `Ledger.dialects()`
    whole: bool = True  # memory holds every answer the ledger has
    indexed: bool = False  # the ledger has the sha256 index lookups past the bound read
    capacity: int = KNOWN_FILES
    evicted: int = 0  # sha256s let go of, oldest first

    def trim(self) -> None:
        """Let the oldest answers go, down to `capacity` of each: called after each batch
        of outcomes, so a few at a time."""
        keys, ingested = self.keys, self.ingested
        if len(keys) > self.capacity or len(ingested) > self.capacity:
            self.whole = False
            while len(keys) > self.capacity:
                keys.popitem(last=False)
            while len(ingested) > self.capacity:
                ingested.popitem(last=False)
                self.evicted += 1
