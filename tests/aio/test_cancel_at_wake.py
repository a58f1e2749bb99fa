"""A task of the service cancelled at the moment it is woken ends: the shutdown cancels every
task and waits for each. `asyncio.wait_for` on Python 3.11 swallowed such a cancellation
(CPython gh-86296), and a service asked to stop while a file was still being written to
never exited. Real files, a real ledger, a real loop in debug mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from ingest.aio.commit import Committer
from ingest.aio.settle import Settler
from ingest.aio.waiting import get_within, wait_set
from ingest.config import Config, Paths
from ingest.files import DropFile, mtime_ns
from ingest.store.crashpoints import CrashPlan
from ingest.store.layout import Layout
from ingest.store.ledger import Ledger


async def _cancelled_as_woken(
    task: asyncio.Task[Any], wake: Callable[[], None]
) -> None:
    """Let `task` come to its wait, then wake it and cancel it in one step: it must end,
    cancelled."""
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()
    wake()
    task.cancel()
    await asyncio.wait([task], timeout=2)
    assert task.done(), "the cancellation was swallowed: the task runs on"
    assert task.cancelled()


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main(), debug=True)


def test_the_settler_cancelled_as_a_file_is_offered_ends(tmp_path: Path) -> None:
    path = tmp_path / "growing.csv"
    path.write_text("a\n1\n")

    def grown() -> None:
        with path.open("a") as out:
            out.write("2\n")
        settler.offer(path, path.stat())

    async def main() -> None:
        # Waiting for the file's second look, a minute away, when it grows again.
        settler.offer(path, path.stat())
        task = asyncio.create_task(settler.run())
        await _cancelled_as_woken(task, grown)

    settler = Settler(60_000, lambda p: p.name, lambda file: None)

    _run(main)


def test_the_committer_cancelled_as_a_record_comes_ends(tmp_path: Path) -> None:
    config = Config(paths=Paths(tmp_path / "drop", tmp_path / "out", tmp_path / "q",
                                tmp_path / "a"))
    layout = Layout.of(config)
    layout.drop.mkdir()
    layout.make_dirs()
    path = layout.drop / "gone.csv"
    path.write_text("a\n1\n")
    st = path.stat()
    file = DropFile(path, "gone.csv", st.st_size, mtime_ns(st), time.time(), time.monotonic())
    ledger = Ledger(layout.ledger)

    async def main() -> None:
        committer = Committer(ledger, layout, config, lambda *args: None, lambda: True,
                              CrashPlan())
        task = asyncio.create_task(committer.run())
        await _cancelled_as_woken(task, lambda: committer.vanished(file))

    try:
        _run(main)
    finally:
        ledger.close()


def test_a_wait_for_an_event_cancelled_as_it_is_set_ends() -> None:
    async def main() -> None:
        event = asyncio.Event()
        task = asyncio.create_task(wait_set(event, 10))
        await _cancelled_as_woken(task, event.set)

    _run(main)


def test_a_wait_for_an_item_cancelled_as_it_comes_ends_and_leaves_the_item() -> None:
    async def main() -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        task = asyncio.create_task(get_within(queue, 10))
        await _cancelled_as_woken(task, lambda: queue.put_nowait("item"))
        assert queue.get_nowait() == "item"

    _run(main)


@pytest.mark.parametrize("timeout", [0.0, 0.05])
def test_the_waits_time_out(timeout: float) -> None:
    async def main() -> None:
        assert await wait_set(asyncio.Event(), timeout) is False
        queue: asyncio.Queue[int] = asyncio.Queue()
        assert await get_within(queue, timeout) is None
        queue.put_nowait(1)
        assert await get_within(queue, timeout) == 1
        event = asyncio.Event()
        event.set()
        assert await wait_set(event, timeout) is True

    _run(main)
