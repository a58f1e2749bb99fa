"""The plain data that crosses the process boundary.

A `Task` carries a batch of files' bytes to a worker, so a worker needs no
shared filesystem. A `TaskResult` comes back with each file's `Outcome` and
the batch's part files, already encoded as Parquet: the encoding, the costliest
step, runs where the cores are. A worker that shares the service's disk (the
local pool) writes them under `_ingest/tmp` and returns their paths, so the
bytes do not cross back; any other worker returns the bytes. Everything here is a picklable
dataclass of builtins; no coroutine, lock or exception object ever crosses.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Features


@dataclass(frozen=True)
class Job:
    """One input file, read by the service, to be decoded and featurised by a worker."""

    source_file: str  # path relative to the drop folder, with "/" separators
    sha256: str
    data: bytes
    shared: str | None = None  # a shared memory segment that holds the bytes instead of data


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
    # Where the worker reports its pid and its progress (see ingest/beacon.py); None: nowhere.
    beacon: str | None = None


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


@dataclass(frozen=True)
class EncodedPart:
    """A complete Parquet file, as bytes, holding rows of the named sources."""

    table: str  # "records" | "features"
    data: bytes
    sources: tuple[str, ...]


@dataclass(frozen=True)
class WrittenPart:
    """A complete Parquet file that a worker wrote under `_ingest/tmp`, not yet fsynced."""

    table: str  # "records" | "features"
    path: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class TaskResult:
    outcomes: tuple[Outcome, ...]
    parts: tuple[EncodedPart | WrittenPart, ...] = ()
