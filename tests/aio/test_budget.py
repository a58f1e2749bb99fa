"""The byte budget: requests wait until they fit, releases wake them, and a cancelled
request leaves the budget as it found it."""

from __future__ import annotations

import asyncio

from ingest.aio.budget import ByteBudget


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_request_waits_until_releases_make_room() -> None:
    async def body() -> None:
        budget = ByteBudget(100)
        await budget.acquire(60)
        waiter = asyncio.ensure_future(budget.acquire(50))
        await _settle()
        assert not waiter.done() and budget.waiting and budget.used == 60
        budget.release(5)
        await _settle()
        assert not waiter.done(), "55 + 50 is over the limit"
        budget.release(5)
        await _settle()
        assert waiter.done() and not budget.waiting and budget.used == 100

    asyncio.run(body())


def test_a_smaller_request_that_fits_is_not_held_behind_a_bigger_one() -> None:
    async def body() -> None:
        budget = ByteBudget(100)
        await budget.acquire(90)
        big = asyncio.ensure_future(budget.acquire(80))
        small = asyncio.ensure_future(budget.acquire(20))
        await _settle()
        budget.release(10)
        await _settle()
        assert small.done() and not big.done()
        assert budget.used == 100
        budget.release(100)
        await _settle()
        assert big.done() and budget.used == 80

    asyncio.run(body())


def test_a_cancelled_request_takes_nothing_and_unblocks_the_ones_behind() -> None:
    async def body() -> None:
        budget = ByteBudget(100)
        await budget.acquire(50)
        big = asyncio.ensure_future(budget.acquire(80))
        await _settle()
        big.cancel()
        await _settle()
        assert big.cancelled() and budget.used == 50 and not budget.waiting
        # Granted, then cancelled before it ran: the bytes go back.
        late = asyncio.ensure_future(budget.acquire(60))
        await _settle()
        budget.release(10)  # 40 + 60 fits: granted now, but the waiter has not run yet
        late.cancel()
        await _settle()
        assert late.cancelled() and budget.used == 40
        await budget.acquire(60)
        assert budget.used == 100

    asyncio.run(body())
