"""Every way out of flight lets go of all a file held: real files, the real settler,
the real byte budget, real shared memory, on a loop in debug mode."""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ingest import shared
from ingest.aio.budget import ByteBudget
from ingest.aio.commit import Aside
from ingest.aio.dispatch import Queued
from ingest.aio.inflight import InFlight
from ingest.aio.outcomes import Outcomes, Summary
from ingest.aio.recall import Recall
from ingest.aio.settle import Settler
from ingest.files import DropFile
from ingest.jobs import Job
from ingest.metrics import Metrics
from ingest.store.known import Known

SETTLED_S = 5.0


async def no_index() -> None:
    """Memory holds every answer here: the ledger is never asked, nor indexed."""
    raise AssertionError("the ledger was asked")


@dataclass
class Rig:
    drop: Path
    settler: Settler
    budget: ByteBudget
    summary: Summary
    known: Known
    in_flight: InFlight
    draining: list[bool] = field(default_factory=lambda: [False])
    spawned: list[asyncio.Task[None]] = field(default_factory=list)
    set_aside: list[Aside] = field(default_factory=list)  # what went to the committer
    vanished: list[str] = field(default_factory=list)  # what the settler reported gone

    async def settled(self, name: str, content: bytes = b"a\n1\n") -> DropFile:
        path = self.drop / name
        path.write_bytes(content)
        self.settler.offer(path, os.stat(path))
        return await asyncio.wait_for(self.settler.ready.get(), SETTLED_S)

    async def admitted(self, name: str, size: int, digest: str) -> DropFile:
        """A file as the intake leaves it once read: bytes charged, claim taken."""
        file = await self.settled(name)
        self.in_flight.admit(file)
        await self.in_flight.charge(file.rel, size)
        assert self.in_flight.claim(file.rel, digest, {})
        return file

    async def offered_again(self) -> str | None:
        """The name the settler hands out next, or None if nothing comes."""
        try:
            return (await asyncio.wait_for(self.settler.ready.get(), 1.0)).rel
        except TimeoutError:
            return None

    def assert_holds_nothing(self) -> None:
        assert self.budget.used == 0
        assert self.in_flight.holding == 0
        upstream = self.in_flight.backlog() - self.settler.settling() - self.settler.ready.qsize()
        assert upstream == 0, "no place upstream left behind"
        # Handed out and not yet taken from the ready queue: the only files still busy.
        assert self.settler.busy == self.settler.ready.qsize()


def run(tmp_path: Path, body: Callable[[Rig], Awaitable[None]], once: bool = False) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()

    async def main() -> None:
        vanished: list[str] = []
        settler = Settler(
            0, lambda p: os.path.relpath(p, drop), lambda file: vanished.append(file.rel)
        )
        budget = ByteBudget(1 << 20)
        summary = Summary()
        known = Known(OrderedDict(), OrderedDict())
        metrics = Metrics()
        draining = [False]
        spawned: list[asyncio.Task[None]] = []
        set_aside: list[Aside] = []

        def spawn(coroutine: Coroutine[Any, Any, None]) -> None:
            spawned.append(asyncio.create_task(coroutine))

        in_flight = InFlight(
            budget, settler, Outcomes(summary, metrics, known, None), metrics, drop, once,
            lambda: draining[0], spawn, known, Recall(known, tmp_path / "ledger", no_index),
            set_aside.append,
        )
        rig = Rig(
            drop, settler, budget, summary, known, in_flight, draining, spawned, set_aside,
            vanished,
        )
        settling = asyncio.create_task(settler.run())
        try:
            await body(rig)
        finally:
            settling.cancel()
            await asyncio.gather(settling, *spawned, return_exceptions=True)

    asyncio.run(main(), debug=True)


def test_a_resolved_file_lets_go_of_its_bytes_segment_place_and_claim(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        file = await rig.admitted("a.csv", 1000, "d1")
        segment = shared.create(shared.prefix_for(tmp_path), 4096)
        assert segment is not None
        rig.in_flight.keep_segment(file.rel, segment)
        assert (rig.budget.used, rig.in_flight.holding, rig.in_flight.backlog()) == (1000, 1, 1)
        assert rig.settler.busy == 1

        rig.in_flight.resolved(file, "ingested", {"sha256": "d1", "rows": 3})
        await asyncio.gather(*rig.spawned)

        # No file holds the segment now: it is kept to be filled again, its bytes charged.
        assert rig.in_flight.idle.bytes == rig.budget.used == 4096
        assert rig.in_flight.segments() == [segment]  # kept ones are removed at shutdown
        shared.remove(segment)
        rig.assert_holds_nothing()
        assert not (shared.SHM_DIR / segment.name).exists()
        assert rig.in_flight.segments() == []
        assert (rig.summary.outcomes["ingested"], rig.summary.rows) == (1, 3)
        assert rig.known.ingested == {"d1": "a.csv"}
        other = await rig.settled("b.csv")
        rig.in_flight.admit(other)
        assert not rig.in_flight.claim(other.rel, "d1", {}), "its bytes are committed"
        assert [(a.file.rel, a.state, a.duplicate_of) for a in rig.set_aside] == [
            ("b.csv", "duplicate", "a.csv")
        ]
        assert await rig.offered_again() is None

    run(tmp_path, body)


@pytest.mark.parametrize("draining", [False, True])
def test_same_bytes_in_flight_wait_and_go_again_once_the_first_is_finished(
    tmp_path: Path, draining: bool
) -> None:
    async def body(rig: Rig) -> None:
        first = await rig.admitted("a.csv", 1000, "same")
        second = await rig.settled("b.csv")
        rig.in_flight.admit(second)
        await rig.in_flight.charge(second.rel, 2000)

        assert not rig.in_flight.claim(second.rel, "same", {})
        assert (rig.budget.used, rig.in_flight.holding, rig.in_flight.backlog()) == (1000, 1, 1)
        assert rig.settler.busy == 2, "the waiting file is not handed out again meanwhile"

        rig.draining[0] = draining
        rig.in_flight.resolved(first, "quarantined", {"sha256": "same"})
        rig.assert_holds_nothing()
        # In a drain, nothing is offered again: it is read on the next run.
        assert await rig.offered_again() == (None if draining else "b.csv")

    run(tmp_path, body)


@pytest.mark.parametrize(
    ("way_out", "changed_in_flight", "offered_again"),
    [
        ("ingested", False, False),
        ("ingested", True, True),
        ("changed", False, True),
        ("deferred", True, False),  # it stays in the drop folder for the next run
    ],
)
def test_a_file_is_offered_again_only_if_it_changed_and_was_not_deferred(
    tmp_path: Path, way_out: str, changed_in_flight: bool, offered_again: bool
) -> None:
    async def body(rig: Rig) -> None:
        file = await rig.admitted("a.csv", 1000, "d1")
        if changed_in_flight:
            (rig.drop / "a.csv").write_bytes(b"a\n1\n2\n")
            rig.settler.offer(file.path, os.stat(file.path))
        if way_out == "deferred":
            rig.in_flight.defer(file)
        else:
            rig.in_flight.resolved(file, way_out, {"sha256": "d1"})
        rig.assert_holds_nothing()
        assert rig.summary.outcomes[way_out] == 1
        assert await rig.offered_again() == ("a.csv" if offered_again else None)

    run(tmp_path, body)


def test_a_file_found_changed_in_a_row_waits_twice_as_long_each_time_then_starts_over(
    tmp_path: Path,
) -> None:
    """Settle_ms is 0 here: the pauses are 0.1, 0.2, 0.4 s, and once the file is resolved
    otherwise its next change pauses 0.1 s again. A file seen again meanwhile (an event,
    a scan) is not handed out before its pause is over."""

    async def body(rig: Rig) -> None:
        digest = "d1"
        file = await rig.admitted("a.csv", 1000, digest)
        waited: list[float] = []
        for way_out in ("changed", "changed", "changed", "ingested", "changed"):
            resolved = time.monotonic()
            rig.in_flight.resolved(file, way_out, {"sha256": digest})
            if way_out != "changed":
                digest = "d2"
                file = await rig.admitted("a.csv", 1000, digest)  # a new version, at once
                continue
            rig.settler.offer(file.path, os.stat(file.path))  # an event during the pause
            file = await asyncio.wait_for(rig.settler.ready.get(), 5)
            waited.append(time.monotonic() - resolved)
            rig.in_flight.admit(file)
            await rig.in_flight.charge(file.rel, 1000)
            assert rig.in_flight.claim(file.rel, digest, {})
        assert all(w >= pause for w, pause in zip(waited, (0.1, 0.2, 0.4, 0.1), strict=True)), (
            waited
        )
        assert waited[3] < 0.4, f"the run of changes started over after `ingested`: {waited}"

    run(tmp_path, body)


def test_a_file_read_again_for_another_file_of_its_parts_is_not_paused(tmp_path: Path) -> None:
    """A task's parts are committed whole: when one of its files changed, every file of it
    is read again, and only the one that changed waits its pause (and counts as changing
    for `once`); the others are handed out again at once."""

    async def body(rig: Rig) -> None:
        moved = await rig.admitted("moved.csv", 1000, "d1")
        beside = await rig.admitted("beside.csv", 1000, "d2")
        resolved = time.monotonic()
        rig.in_flight.resolved_all(
            "changed", [(moved, {"sha256": "d1"}), (beside, {"sha256": "d2"})],
            unpaused={"beside.csv"},
        )
        # moved.csv is held, changing; beside.csv is handed out on this look.
        assert (len(rig.settler), rig.settler.settling(), rig.settler.ready.qsize()) == (1, 0, 1)
        assert rig.in_flight.backlog() == 1, "a task waits for beside.csv, not for moved.csv"
        first = await asyncio.wait_for(rig.settler.ready.get(), 5)
        assert first.rel == "beside.csv", "handed out before moved.csv's pause is over"
        assert rig.settler.busy_settled(), "beside.csv is at work, not changing"
        rig.in_flight.admit(first)
        await rig.in_flight.charge(first.rel, 1000)
        assert rig.in_flight.claim(first.rel, "d2", {})
        rig.in_flight.resolved(first, "ingested", {"sha256": "d2"})
        second = await asyncio.wait_for(rig.settler.ready.get(), 5)
        assert second.rel == "moved.csv" and time.monotonic() - resolved >= 0.1
        assert not rig.settler.busy_settled(), "only moved.csv is busy: looked at again"
        assert rig.summary.outcomes["changed"] == 2

    run(tmp_path, body)


def test_a_file_read_again_keeps_the_time_it_was_first_seen_and_a_drain_defers_it(
    tmp_path: Path,
) -> None:
    """A file resolved as `reread` (its table made a column text since its task left) is
    the same version: handed out again at once, its latency counted from its first sight.
    In a drain it is not: it is left for the next run, and counted so."""

    async def body(rig: Rig) -> None:
        first = await rig.admitted("a.csv", 1000, "d1")
        rig.in_flight.resolved_all("reread", [(first, {"sha256": "d1"})], unpaused={"a.csv"})
        again = await asyncio.wait_for(rig.settler.ready.get(), 5)
        assert again.rel == "a.csv"
        assert (again.seen_at, again.seen_mono) == (first.seen_at, first.seen_mono)
        assert rig.summary.outcomes["deferred"] == 0
        rig.in_flight.admit(again)
        await rig.in_flight.charge(again.rel, 1000)
        assert rig.in_flight.claim(again.rel, "d1", {})
        rig.draining[0] = True
        rig.in_flight.resolved_all("reread", [(again, {"sha256": "d1"})], unpaused={"a.csv"})
        assert await rig.offered_again() is None
        assert rig.summary.outcomes["deferred"] == 1, "left in the drop folder: said so"
        rig.assert_holds_nothing()

    run(tmp_path, body)


def test_a_file_gone_before_it_is_looked_at_again_is_told_as_vanished(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        first = await rig.admitted("a.csv", 1000, "d1")
        beside = await rig.admitted("b.csv", 1000, "d2")
        first.path.unlink()
        rig.in_flight.resolved_all(
            "reread", [(first, {"sha256": "d1"}), (beside, {"sha256": "d2"})],
            unpaused={"a.csv", "b.csv"},
        )
        assert rig.vanished == ["a.csv"]
        assert await rig.offered_again() == "b.csv"
        assert await rig.offered_again() is None

    run(tmp_path, body)


def test_a_file_taken_off_the_queue_in_a_drain_is_deferred_and_frees_its_claim(
    tmp_path: Path,
) -> None:
    async def body(rig: Rig) -> None:
        kept = await rig.admitted("a.csv", 1000, "d1")
        assert rig.in_flight.taken(Queued(kept, Job(kept.rel, "d1", b""), 1000))
        assert rig.in_flight.backlog() == 0, "a task holds it now"
        assert rig.budget.used == 1000, "its bytes are held until it is resolved"

        let_go = await rig.admitted("b.csv", 500, "d2")
        rig.draining[0] = True
        assert not rig.in_flight.taken(Queued(let_go, Job(let_go.rel, "d2", b""), 500))
        assert rig.summary.outcomes["deferred"] == 1
        assert rig.budget.used == 1000
        assert rig.settler.busy == 1
        third = await rig.settled("c.csv")
        rig.in_flight.admit(third)
        assert rig.in_flight.claim(third.rel, "d2", {}), "the claim was given back"

    run(tmp_path, body)


def test_once_expects_more_files_only_while_some_are_upstream(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        assert not rig.in_flight.more_coming()
        assert rig.in_flight.nothing_coming()
        file = await rig.admitted("a.csv", 10, "d1")
        assert rig.in_flight.more_coming(), "a.csv is on its way to the queue"
        rig.in_flight.let_go(file.rel)  # a duplicate set aside: nothing more to read
        assert not rig.in_flight.more_coming()
        assert rig.settler.busy == 1, "it stays in flight until it is resolved"

    run(tmp_path, body, once=True)
