"""The time limit of a worker's step: in the main thread, as a process pool runs calls, and
in another, as a dask worker runs them (where the limit once did nothing, and a stuck
feature function held the cluster's worker for ever)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from ingest.compute.limit import time_limit
from ingest.errors import TaskTimeout


def _stuck() -> None:
    ends = time.monotonic() + 10  # stuck, for a test: a limit that fails lets it go
    while time.monotonic() < ends:
        time.sleep(0.01)


def _limited(seconds: float, body: object) -> float:
    started = time.monotonic()
    with time_limit(seconds):
        body()  # type: ignore[operator]
    return time.monotonic() - started


def test_python_code_stuck_in_the_main_thread_is_stopped() -> None:
    with pytest.raises(TaskTimeout):  # not stopped, it would return after its 10 s
        _limited(0.2, _stuck)


def test_python_code_stuck_in_another_thread_is_stopped_and_the_thread_serves_again() -> None:
    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(_limited, 0.2, _stuck)
        with pytest.raises(TaskTimeout):
            stuck.result(timeout=10)
        assert pool.submit(lambda: threading.current_thread().name).result(timeout=10)


def test_a_step_done_in_time_is_not_struck_later() -> None:
    def steps() -> int:
        done = 0
        for _ in range(20):
            _limited(0.3, lambda: time.sleep(0.05))
            done += 1
        time.sleep(0.6)  # past every limit set: none may land here
        return done

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(steps).result(timeout=30) == 20


class _OuterAlarm(Exception):
    pass


def _outer_alarm(signum: int, frame: object) -> None:
    raise _OuterAlarm


@contextmanager
def _outer_timer(seconds: float) -> Iterator[None]:
    """A timer of the process's own, as a test runner sets, around the block."""
    previous = signal.signal(signal.SIGALRM, _outer_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_timer_already_set_in_the_process_is_kept_after_a_step() -> None:
    # A test runner's own limit, when a worker's code runs in its process: once zeroed by
    # the step's limit, a test stuck after it ran for ever.
    with _outer_timer(30):
        _limited(5, lambda: time.sleep(0.05))
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 20 < left <= 30
        assert signal.getsignal(signal.SIGALRM) is _outer_alarm


def test_a_timer_already_set_and_due_first_still_fires_within_a_step() -> None:
    with _outer_timer(0.2), pytest.raises(_OuterAlarm):
        _limited(30, _stuck)


def test_a_step_whose_limit_is_due_first_is_stopped_under_a_later_timer() -> None:
    with _outer_timer(30):
        with pytest.raises(TaskTimeout):
            _limited(0.2, _stuck)
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 20
