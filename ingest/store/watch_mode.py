"""How the running service hears the drop folder, kept where `ingest status` can read it.

`status` runs in another process than the service, so the service writes a small
JSON file, `<output>/_ingest/watch.json`, whenever its watcher changes mode, and
removes it when it stops. It names the service's pid: a file a killed service
left behind is ignored, since its pid is gone.

Synchronous: written from a thread of the service's main process, read by `status`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "watch.json"


@dataclass(frozen=True)
class WatchMode:
    """What the watcher is doing now."""

    mode: str  # "events" (inotify and the like) or "polling"
    deaf: str | None = None  # why nothing is heard now (the drop folder is missing), or None
    reason: str | None = None  # why it polls, when it fell back to polling


def write(state_dir: Path, mode: WatchMode, pid: int) -> None:
    """Replace the file atomically: `status` reads either the old mode or the new one."""
    record = {**asdict(mode), "pid": pid, "since": _now()}
    temp = state_dir / f".{FILE_NAME}.{pid}.tmp"
    try:
        temp.write_text(json.dumps(record) + "\n")
        os.replace(temp, state_dir / FILE_NAME)
    except OSError:
        temp.unlink(missing_ok=True)
        raise


def remove(state_dir: Path, pid: int) -> None:
    """Called as the service stops; leaves alone a file another service wrote."""
    path = state_dir / FILE_NAME
    try:
        record = json.loads(path.read_text())
        if record.get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def read(state_dir: Path) -> dict[str, Any] | None:
    """The running service's watch mode, or None when no live service wrote one."""
    try:
        record = json.loads((state_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not _alive(record.get("pid")):
        return None
    return record


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and another user's
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Killed, and not yet reaped by its parent: `kill(pid, 0)` still finds it (Linux's
    /proc says so; elsewhere, taken as alive)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]  # after "pid (name)"
    except (OSError, IndexError):
        return False
    return state == b"Z"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
