"""A time limit on the Python code of one step of a worker's call.

A process pool runs its calls in each worker's main thread, where SIGALRM interrupts
them. A dask worker runs them in threads of its own, which no signal reaches: there
the limit raises its exception in the call's thread, as an asynchronous exception
(`PyThreadState_SetAsyncExc`), at the thread's next Python instruction. Either way,
code stuck in C is not interrupted: the service's backstop is for that.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
import time
from collections.abc import Iterator

from .. import errors

MESSAGE = "the file took longer than task_timeout_s"


class TaskTimeout(errors.TaskTimeout):
    """Raised in a thread, where an asynchronous exception is made from its class alone;
    of the same name, for the file's error report."""

    def __init__(self) -> None:
        super().__init__(MESSAGE)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt Python code that runs longer than `seconds` (0: no limit)."""
    if seconds <= 0:
        yield
    elif threading.current_thread() is threading.main_thread():
        with _alarm(seconds):
            yield
    else:
        with _in_thread(seconds):
            yield


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    # A timer already set (a test runner's own limit, when a worker's code is called in
    # its process) is kept: the one due first fires, and the other is armed again after.
    started = time.monotonic()
    outer_handler = signal.getsignal(signal.SIGALRM)
    outer_left, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    outer_due = [0 < outer_left < seconds]

    def on_alarm(signum: int, frame: object) -> None:
        if outer_due[0]:
            outer_due[0] = False
            signal.setitimer(signal.ITIMER_REAL, max(seconds - _since(started), 1e-3))
            if callable(outer_handler):
                outer_handler(signum, frame)  # type: ignore[arg-type]
            return
        raise errors.TaskTimeout(MESSAGE)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, outer_left if outer_due[0] else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_left > 0 and (outer_due[0] or outer_left >= seconds):
            left = max(outer_left - _since(started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


def _since(started: float) -> float:
    return time.monotonic() - started


@contextlib.contextmanager
def _in_thread(seconds: float) -> Iterator[None]:
    target = ctypes.c_ulong(threading.get_ident())
    guard = threading.Lock()
    running = [True]

    def expire() -> None:
        with guard:  # never once the block is left: the exception would land after it
            if running[0]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(target, ctypes.py_object(TaskTimeout))

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with guard:
            running[0] = False
            # Set, and not yet raised (the block ended first): cleared, not left to strike
            # whatever this thread runs next.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(target, None)
