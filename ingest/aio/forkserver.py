"""The local pool's forkserver, the process its workers are forked from.

forkserver, not fork: the service runs threads (aiofiles, watchfiles, commits), and
forking a threaded process can copy a held lock into the child. The forkserver loads
the workers' modules once (its preload), so a worker starts with them loaded.

Called in the main process. This module imports nothing else of the service's, so
that the command line can start the forkserver before the service's own imports.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import signal

PRELOAD = ["ingest.compute.task"]


def context() -> multiprocessing.context.ForkServerContext:
    found = multiprocessing.get_context("forkserver")
    found.set_forkserver_preload(PRELOAD)
    return found


def start() -> None:
    """Start the forkserver now, without waiting for it: it loads the workers' modules on
    another core while this process loads its own (some 0.15 s of a core each), and the
    pool forks its workers from it once the service has started. Called again before each
    pool is made: one that has died is started again here. Any thread may call it."""
    context()
    # Blocked in the thread that starts it, SIGUSR1 stays blocked in the forkserver, in
    # the resource tracker it starts and in every worker it forks (a signal mask outlives
    # fork and exec): the service's "write your stacks" (ingest/stacks.py), sent to the
    # whole group (`systemctl kill -s USR1`), must not kill them. A dead forkserver breaks
    # the pool, as a dead worker does.
    masked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, masked)
