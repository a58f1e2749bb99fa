"""Segments kept for reuse: charged to the byte budget, handed back whole, and given up
to any request the budget cannot otherwise meet."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ingest import shared
from ingest.aio.budget import ByteBudget
from ingest.aio.segments import IdleSegments

MB = 1 << 20


class Rig:
    def __init__(self, tmp_path: Path, limit: int):
        self.budget = ByteBudget(limit)
        self.spawned: list[asyncio.Task[None]] = []
        self.draining = False
        self.idle = IdleSegments(self.budget, self.spawn, lambda: self.draining)
        self.prefix = shared.prefix_for(tmp_path)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.spawned.append(asyncio.ensure_future(coroutine))

    def new(self, size: int) -> Any:
        segment = shared.create(self.prefix, size)
        assert segment is not None
        return segment

    async def settled(self) -> None:
        await asyncio.gather(*self.spawned)

    def on_disk(self) -> set[str]:
        return {p.name for p in shared.SHM_DIR.glob(self.prefix + "*")}


def test_a_kept_segment_is_charged_to_the_budget_and_handed_back_for_a_fitting_size(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        rig = Rig(tmp_path, 40 * MB)
        segment = rig.new(2 * MB)
        rig.idle.keep(segment)
        assert rig.budget.used == 2 * MB and rig.idle.bytes == 2 * MB
        assert rig.idle.take(5 * MB) is None, "too small"
        assert rig.idle.take(MB // 2) is None, "more than twice the size: left for another"
        again = rig.idle.take(MB + 1)
        assert again is segment and rig.budget.used == 0 and rig.idle.bytes == 0
        shared.view(again)[:3] = b"abc"  # still mapped, still writable
        rig.idle.keep(again)
        assert [s.name for s in rig.idle.clear()] == [segment.name]
        assert rig.budget.used == 0
        shared.remove(segment)
        assert rig.on_disk() == set()

    asyncio.run(body())


def test_what_is_kept_stays_under_a_quarter_of_the_budget(tmp_path: Path) -> None:
    async def body() -> None:
        rig = Rig(tmp_path, 16 * MB)
        first, second = rig.new(3 * MB), rig.new(2 * MB)
        rig.idle.keep(first)
        rig.idle.keep(second)  # 3 + 2 MB is over 16 / 4: removed
        await rig.settled()
        assert rig.on_disk() == {first.name}
        assert rig.budget.used == 3 * MB
        for segment in rig.idle.clear():
            shared.remove(segment)

    asyncio.run(body())


def test_a_request_that_does_not_fit_takes_the_kept_bytes_back_and_does_not_wait(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        rig = Rig(tmp_path, 16 * MB)
        kept = rig.new(4 * MB)
        rig.idle.keep(kept)
        await rig.budget.acquire(10 * MB)
        await asyncio.wait_for(rig.budget.acquire(5 * MB), 1.0)  # 4 + 10 + 5 > 16
        await rig.settled()
        assert rig.budget.used == 15 * MB and rig.idle.bytes == 0
        assert rig.on_disk() == set(), "the kept segment was removed"

    asyncio.run(body())


def test_nothing_is_kept_while_a_request_waits(tmp_path: Path) -> None:
    async def body() -> None:
        rig = Rig(tmp_path, 16 * MB)
        await rig.budget.acquire(15 * MB)
        waiter = asyncio.ensure_future(rig.budget.acquire(2 * MB))
        await asyncio.sleep(0)
        segment = rig.new(MB)
        rig.idle.keep(segment)
        await rig.settled()
        assert rig.idle.bytes == 0 and rig.on_disk() == set()
        rig.budget.release(15 * MB)
        await asyncio.wait_for(waiter, 1.0)

    asyncio.run(body())


def test_nothing_is_kept_once_the_service_drains(tmp_path: Path) -> None:
    async def body() -> None:
        rig = Rig(tmp_path, 40 * MB)
        rig.draining = True
        segment = rig.new(2 * MB)
        rig.idle.keep(segment)
        await rig.settled()
        assert rig.idle.bytes == 0 and rig.budget.used == 0
        assert rig.on_disk() == set(), "removed, not kept"

    asyncio.run(body())
