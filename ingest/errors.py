"""The error types of ingest, grouped in one place.

Errors that cross the process boundary travel as data (`jobs.Failure`), not as
exceptions, so that nothing unpicklable ever has to be sent back from a worker.
"""

from __future__ import annotations

import json
import re
from pathlib import Path


class IngestError(Exception):
    """Raised for any failure that ingest itself recognises."""


class ConfigError(IngestError):
    """Raised when config.toml or a command-line flag is invalid; the message names the key."""


def config_value(value: object) -> str:
    """A config value as a ConfigError's message shows it: a string as TOML writes one,
    so that a line break in it stays in the message's one line."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


# A terminal's colour, as deltalake's errors carry it.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(error: BaseException) -> str:
    """An error's text on one line, as a log line holds it: deltalake's run over several,
    each cause indented under the last, in a terminal's colours."""
    text = _ANSI.sub("", str(error))
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


class LedgerError(IngestError):
    """Raised when the ledger is missing, corrupt or disagrees with the output folder."""


class WorkerCrashed(IngestError):
    """Raised when a worker process died while it held a file (segfault, OOM kill, SIGKILL)."""


class TaskTimeout(IngestError):
    """Raised when a file took longer than `task_timeout_s` in a worker."""


class OutputLocked(IngestError):
    """Raised when another process holds the output folder's writer lock."""

    def __init__(self, pid: int | None, lock: Path):
        self.pid = pid
        self.lock = lock
        holder = f"pid {pid}" if pid is not None else "a process whose pid is not yet written"
        super().__init__(
            f"another ingest process ({holder}) is writing to {lock.parent.parent};"
            f" it holds {lock}. Run again when it is done, or pass --wait to wait for it"
        )


class OutputLost(IngestError):
    """Raised when the output folder whose writer lock this process holds was removed or
    replaced: a new writer may hold the new folder's lock, and a commit would go there
    beside its own, or nowhere."""


class PoolStopped(IngestError):
    """Raised when a call was lost because the pool was stopped to end another, hung call:
    not this call's fault, so it is run again, uncharged."""


class ClusterLost(IngestError):
    """Raised when the dask scheduler does not answer, at start or since: not any file's
    fault, so none is quarantined; the service stops, and its files stay for the next run
    (a supervisor restarts it, exit 1, as for any failure that may pass)."""
