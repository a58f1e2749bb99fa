"""One writer per output folder: an exclusive `fcntl.flock` on `<output>/_ingest/writer.lock`.

Called in the main process by the command line, before a writing command (`run`,
`once`, `compact`, `ledger rebuild`) touches the output, and held until it exits.
The kernel releases a flock when its last descriptor closes, so a holder killed
with SIGKILL leaves no stale lock. The file is never removed: a process that
removed it could let a second writer lock a new file while a waiter still holds
the old one. It holds the holder's pid, so a refusal can name it.

Worker processes never hold the descriptor: they are started by a forkserver,
which inherits no descriptors but the ones it is given.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import OutputLocked, OutputLost

LOCK_NAME = "writer.lock"
# The holder writes its pid just after it takes the lock; a refusal that reads the file
# in between retries for this long before it settles for "an unknown pid".
PID_GRACE_S = 0.5
# How often a waiter (--wait) tries again, and looks for a stop signal.
WAIT_POLL_S = 0.1


class WriterLock:
    """The lock of one output folder's state directory (`<output>/_ingest`)."""

    def __init__(self, state: Path):
        self.path = state / LOCK_NAME
        self._fd: int | None = None
        self.held = False

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True if this process now holds it."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.held = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return True

    def holder(self) -> int | None:
        """The pid the lock file names, or None if it names none (yet)."""
        deadline = time.monotonic() + PID_GRACE_S
        while True:
            text = os.pread(self._open(), 32, 0).decode(errors="replace").strip()
            if text.isdigit():
                return int(text)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

    def acquire(
        self,
        wait: bool = False,
        stopped: Callable[[], bool] = lambda: False,
        waiting: Callable[[int | None], None] = lambda pid: None,
    ) -> bool:
        """Take the lock. Without `wait`, a held lock raises `OutputLocked` naming the
        holder. With it, call `waiting(pid)` once and try again until the lock is free
        (True) or `stopped()` says to give up (False)."""
        if self.try_acquire():
            return True
        if not wait:
            raise OutputLocked(self.holder(), self.path)
        waiting(self.holder())
        while not stopped():
            time.sleep(WAIT_POLL_S)
            if self.try_acquire():
                return True
        return False

    def release(self) -> None:
        """Give the lock up (closing the descriptor would too, as a process exit does)."""
        if self._fd is None:
            return
        if self.held:
            # The pid is only a hint, which the next holder overwrites anyway.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None
        self.held = False

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


Identity = tuple[int, int]  # a file's device and inode


def identity(state: Path) -> Identity | None:
    """The lock file's identity, as this process takes it once it holds it; None if there
    is none (a rig with no lock)."""
    try:
        found = os.stat(state / LOCK_NAME)
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino)


def check_held(state: Path, held: Identity) -> None:
    """Raise OutputLost unless `state`'s lock file is still the one this process locked:
    an output folder removed (`rm -rf`) or moved away under a writer leaves its lock on a
    file no other process finds, and a second writer locks a new one and goes on."""
    if identity(state) != held:
        raise OutputLost(
            f"the output folder {state.parent} was removed or replaced while this process"
            f" wrote to it (its {LOCK_NAME} is not the one this process holds); nothing"
            " more is committed, and the files not committed stay in the drop folder"
        )
