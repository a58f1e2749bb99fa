"""Stand-in watchers with the shape of watchfiles.awatch, for what cannot happen here.

A network filesystem cannot exist on this machine, nor can an inotify limit be
reached without harm to everything else on it.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any


async def deaf(
    *paths: Path, stop_event: asyncio.Event, rust_timeout: int, **_: Any
) -> AsyncGenerator[set[tuple[Any, str]], None]:
    """A watcher on a filesystem that sends no events: it starts, and only ever times out."""
    while not stop_event.is_set():
        await asyncio.sleep(rust_timeout / 1000)
        yield set()


async def refused(*paths: Path, **_: Any) -> AsyncGenerator[set[tuple[Any, str]], None]:
    """A watcher that cannot start: inotify's watch limit, as watchfiles reports it."""
    raise OSError(errno.ENOSPC, "OS file watch limit reached")
    yield set()  # an async generator, like watchfiles.awatch


async def fails_while_watching(
    *paths: Path, stop_event: asyncio.Event, rust_timeout: int, **_: Any
) -> AsyncGenerator[set[tuple[Any, str]], None]:
    """A watcher that starts, then fails: inotify's watch limit met on a new subfolder."""
    await asyncio.sleep(rust_timeout / 1000)
    yield set()
    raise OSError(errno.ENOSPC, "OS file watch limit reached")
