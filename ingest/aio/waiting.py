"""Waits with a timeout that a cancellation always ends.

Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives as the
awaited event is set or the item arrives (CPython gh-86296, fixed in 3.12 by building
it on `asyncio.timeout`). A task of the service cancelled at shutdown then ran on, and
the shutdown waited for it for ever: a settler woken by a file still being written as
SIGTERM came never ended. `asyncio.timeout` ends the wait with the cancellation.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def wait_set(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set, at most `timeout` seconds (None: no limit); True if set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def wait_either(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    """Wait until either event is set, at most `timeout` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in (first, second)]
    try:
        async with asyncio.timeout(timeout):
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        pass
    finally:
        for wait in waits:
            wait.cancel()


async def get_within(queue: asyncio.Queue[T], timeout: float) -> T | None:
    """The queue's next item, if one comes within `timeout` seconds; else None. An item
    that arrives as the time runs out stays in the queue."""
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            return await queue.get()
    except TimeoutError:
        return None
