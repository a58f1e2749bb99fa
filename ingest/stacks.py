"""SIGUSR1: every thread's stack, and every task's of the event loop, to stderr.

What a service that seems stuck is doing, asked of it without stopping it: `kill -USR1
<pid>`. A thread's stack alone shows the event loop waiting in `select`; the tasks' show
what each one awaits.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

END = "ingest: end of stacks"


def install() -> object:
    """Dump the stacks on SIGUSR1 from now on; returns the handler it replaces."""
    return signal.signal(signal.SIGUSR1, _dump)


def _dump(signum: int, frame: FrameType | None) -> None:
    text = describe()
    # Written from a thread: stderr may be a pipe nobody reads, which must not hold the
    # thread the handler interrupted (the event loop's, as a rule).
    threading.Thread(target=_write, args=(text.encode("utf-8", "replace"),), daemon=True).start()


def describe() -> str:
    """The stacks, as text: each thread's, then each task's of the loop running here."""
    import asyncio  # not at import: `status` and `explain` never load it

    out = io.StringIO()
    out.write(f"ingest: stacks of pid {os.getpid()}, asked by SIGUSR1\n")
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, top in sys._current_frames().items():
        out.write(f"--- thread {names.get(ident, '?')} ({ident})\n")
        out.writelines(traceback.format_stack(top))
    with contextlib.suppress(RuntimeError):  # no loop runs in this thread
        for task in asyncio.all_tasks(asyncio.get_running_loop()):
            out.write(f"--- task {task.get_name()}\n")
            out.writelines(traceback.format_list(_awaiting(task.get_coro())))
    out.write(END + "\n")
    return out.getvalue()


def _awaiting(coro: object) -> traceback.StackSummary:
    """Where a suspended coroutine waits: down the chain of what each one awaits (a task's
    own stack holds its outermost coroutine's frame only)."""
    frames: list[tuple[FrameType, int]] = []
    while (frame := _first(coro, ("cr_frame", "gi_frame", "ag_frame"))) is not None:
        frames.append((frame, frame.f_lineno))
        coro = _first(coro, ("cr_await", "gi_yieldfrom", "ag_await"))
    return traceback.StackSummary.extract(frames)


def _first(obj: object, names: tuple[str, ...]) -> Any:
    """The first of these attributes `obj` has (a coroutine's, a generator's or an async
    generator's), or None."""
    return next((getattr(obj, name) for name in names if hasattr(obj, name)), None)


def _write(data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(2, data):]
