"""An input file as the service sees it once it has settled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DropFile:
    """A settled file in the drop folder: its identity is (rel, size, mtime_ns)."""

    path: Path
    rel: str  # relative to the drop folder, "/"-separated: the `source_file` column
    size: int
    mtime_ns: int
    seen_at: float  # wall clock of first sight, for the ledger
    seen_mono: float  # monotonic clock of first sight, for latency

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.rel, self.size, self.mtime_ns)
