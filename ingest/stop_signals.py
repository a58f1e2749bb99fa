"""The signals that stop a command: SIGINT, SIGTERM, and SIGHUP.

SIGHUP comes when the terminal `ingest run` was started from closes, or its ssh session
is lost: it means what SIGTERM means (drain, commit, exit 0), not an end without a
drain. Unless the command was started with SIGHUP ignored (`nohup`, a supervisor that
ignores it): that choice is the caller's, and it is kept.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGINT and SIGTERM, and SIGHUP unless this process ignores it. Asked again once a
    handler of ours is set for SIGHUP, the answer stays the same."""
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return (signal.SIGINT, signal.SIGTERM)
    return (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# Sent to the whole process group, and the service's alone to act on: "write your stacks"
# (ingest/stacks.py), which `systemctl kill -s USR1` sends to every process of the unit,
# and a closed terminal's hangup, which the service drains its workers for.
SPARED_CHILDREN = frozenset({signal.SIGUSR1, signal.SIGHUP})


@contextmanager
def children_spared() -> Iterator[None]:
    """Block SIGUSR1 and SIGHUP in this thread for the block: the processes started from it
    meanwhile (the pool's forkserver and the workers it forks, a local dask cluster's
    nannies and workers, and the threads that start them) keep them blocked, a signal mask
    outliving fork, exec and the start of a thread. A dead forkserver or nanny breaks the
    pool, as a dead worker does."""
    masked = signal.pthread_sigmask(signal.SIG_BLOCK, SPARED_CHILDREN)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, masked)
