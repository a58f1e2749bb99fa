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
    """Dump the stacks on SIGUSR1 from now on; returns the handler it replaces. A system
    call the signal lands in is restarted, as for the event loop's own signals."""
    previous = signal.signal(signal.SIGUSR1, _dump)
    signal.siginterrupt(signal.SIGUSR1, False)
    return previous


def _dump(signum: int, frame: FrameType | None) -> None:
    # The handler runs between any two bytecodes of the main thread: whatever fails here
    # must not be raised into them.
    with contextlib.suppress(Exception):
        text = describe()
        # Written from a thread: stderr may be a pipe nobody reads, which must not hold the
        # thread the handler interrupted (the event loop's, as a rule).
        data = text.encode("utf-8", "replace")
        threading.Thread(target=_write, args=(data,), daemon=True).start()


def describe() -> str:
    """The stacks, as text: each thread's, then each task's of the loop running here."""
    out = io.StringIO()
    out.write(f"ingest: stacks of pid {os.getpid()}, asked by SIGUSR1\n")
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, top in sys._current_frames().items():
        out.write(f"--- thread {names.get(ident, '?')} ({ident})\n")
        out.writelines(traceback.format_stack(top))
    # Not imported here: `status` and `explain` never load it, and the main thread may be
    # importing it as the signal comes (the module is then only partly there).
    asyncio = sys.modules.get("asyncio")
    # RuntimeError: no loop runs in this thread; AttributeError: asyncio partly imported.
    with contextlib.suppress(RuntimeError, AttributeError):
        for task in asyncio.all_tasks(asyncio.get_running_loop()):  # type: ignore[union-attr]
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
