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
from collections.abc import Iterator

from .. import errors

MESSAGE = "the file took longer than task_timeout_s"


def _on_alarm(signum: int, frame: object) -> None:
    raise errors.TaskTimeout(MESSAGE)


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
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
