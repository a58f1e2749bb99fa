"""The plain data that crosses the process boundary.

A `Task` carries a batch of files' bytes to a worker, so a worker needs no
shared filesystem; with `[pipeline] send = "paths"` (the default of local
workers) it carries their paths instead, and the worker reads them itself. A
`TaskResult` comes back with each file's `Outcome` and the batch's part files,
already encoded as Parquet: the encoding, the costliest step, runs where the
cores are. A worker that shares the service's disk (the local pool) writes them
under `_ingest/tmp` and returns their paths, so the bytes do not cross back; any
other worker returns the bytes. Everything here is a picklable dataclass of
builtins; no coroutine, lock or exception object ever crosses.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Features
from .dialect import CsvOptions, Dialect


@dataclass  # not frozen: made for every input (`files.DropFile`)
class Job:
    """One input file, read by the service (or, given its path, by the worker), to be
    decoded and featurised by a worker."""

    source_file: str  # path relative to the drop folder, with "/" separators
    sha256: str  # "" for the worker to compute from the bytes; the Outcome carries it back
    data: bytes
    shared: str | None = None  # a shared memory segment that holds the bytes instead of data
    table: str = "records"  # the records table the file is routed to
    # What the service measured the file to become in memory, its own bytes included
    # (a .gz: with its plain bytes); 0 if not measured. A worker decompresses no further.
    in_memory: int = 0
    # send = "paths": the file's absolute path, which the worker reads itself instead of
    # data, and the size the file settled at. The worker checks the size of what it read
    # (and its sha256, if one is given) before it decodes it (ingest/compute/inputs.py).
    path: str | None = None
    size: int = 0
    # send = "paths" to a local worker: the mtime the file settled at (`files.mtime_ns`).
    # A file written again before its worker read it is refused for itself, rather than
    # found changed at commit with every file of its task. None for another machine's
    # worker, whose mount may keep mtimes coarser.
    mtime_ns: int | None = None
    # Where in `shared` the bytes start (small files read together share one segment);
    # `size` bytes of it are the file's.
    offset: int = 0


# A worker that read a job's path and found the file other than the service saw it
# (another size; other bytes than a sha256 it was given), or gone, says so with one of
# these errors: not a verdict on the file, so it is never quarantined. The service
# resolves it as the event named, as it would had it found that itself, and looks at
# the file again.
NOT_AS_SEEN = {
    "InputChanged": "changed",
    "InputVanished": "vanished",
    "InputUnreadable": "unreadable",
}
# Resolutions after which a file is looked at again at once, as a new version: found
# changed, or to be read again as its table now reads it.
LOOKED_AT_AGAIN = frozenset({"changed", "reread"})


@dataclass(frozen=True)
class TableSpec:
    """A records table as a worker needs it: its column hints, and its schema as the
    service last knew it (Arrow IPC bytes; None for a table with no part yet)."""

    name: str
    hints: tuple[tuple[str, str], ...] = ()
    schema: bytes | None = None
    version: int = 0
    # The table's `[tables.NAME.csv]` pins, and the dialect its first file pinned (None:
    # detect each file). A CSV that disagrees is read in the table's dialect if it can be.
    csv: CsvOptions | None = None
    dialect: Dialect | None = None

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The columns hinted `string`: a CSV's are read as text from the start, so that
        `01234` keeps its leading zero."""
        return tuple(name for name, kind in self.hints if kind == "string")


@dataclass(frozen=True)
class Task:
    """Files that become one set of part files, and how to make them."""

    jobs: tuple[Job, ...]
    features: Features
    tables: tuple[str, ...] = ("records", "features")
    compression: str = "zstd"
    timeout_s: float = 0.0  # per file; 0 = no limit. The worker raises TaskTimeout past it.
    # Where the worker may write the parts itself: a path prefix under _ingest/tmp.
    # None: return them as bytes (a worker on another machine).
    stage: str | None = None
    specs: tuple[TableSpec, ...] = ()  # the tables the jobs are routed to
    # Where the worker reports its pid and its progress (see ingest/beacon.py); None: nowhere.
    beacon: str | None = None
    memory_mb: int = 0  # a file whose headers say it takes more is refused; 0 = no limit

    def spec(self, table: str) -> TableSpec:
        return next((s for s in self.specs if s.name == table), TableSpec(table))


@dataclass(frozen=True)
class Failure:
    """Why a file could not be decoded or featurised, as data."""

    error: str  # the exception's type name, or one of ours such as "WorkerCrashed"
    message: str
    line: int | None = None
    offset: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one Job: its row count, or a Failure."""

    source_file: str
    sha256: str
    rows: int = 0
    failure: Failure | None = None
    dialect: Dialect | None = None  # what a CSV was read with; None for other formats


@dataclass(frozen=True)
class EncodedPart:
    """A complete Parquet file, as bytes, holding rows of the named sources."""

    table: str  # a records table's name, or "features"
    data: bytes
    sources: tuple[str, ...]
    schema: bytes = b""  # its Arrow schema (IPC), so the committer need not read the file
    settled: bool = False  # its schema is one a table of it alone holds (`widen.settled_alone`)


@dataclass(frozen=True)
class WrittenPart:
    """A complete Parquet file that a worker wrote under `_ingest/tmp`, not yet fsynced."""

    table: str  # a records table's name, or "features"
    path: str
    sources: tuple[str, ...]
    schema: bytes = b""  # its Arrow schema (IPC)
    settled: bool = False  # as EncodedPart's


@dataclass(frozen=True)
class TaskResult:
    outcomes: tuple[Outcome, ...]
    parts: tuple[EncodedPart | WrittenPart, ...] = ()
