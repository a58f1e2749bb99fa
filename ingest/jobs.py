"""The plain data that crosses the process boundary.

A `Job` carries the file's bytes to a worker, so a worker needs no shared
filesystem. An `Outcome` comes back with Arrow IPC buffers or a `Failure`.
Everything here is a picklable dataclass of builtins; no coroutine, lock or
exception object ever crosses.
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
    features: Features
    tables: tuple[str, ...]
    timeout_s: float = 0.0  # 0 = no limit; the worker raises TaskTimeout past it


@dataclass(frozen=True)
class Failure:
    """Why a file could not be decoded or featurised, as data."""

    error: str  # the exception's type name, or one of ours such as "WorkerCrashed"
    message: str
    line: int | None = None
    offset: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What a worker returns for one Job: Arrow IPC stream buffers, or a Failure."""

    source_file: str
    sha256: str
    rows: int = 0
    records: bytes | None = None
    features: bytes | None = None
    failure: Failure | None = None
