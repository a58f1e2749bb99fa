"""The settler: when a file found in the drop folder is complete. Real files, a real loop
in debug mode."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from ingest.aio.settle import Settler
from ingest.files import DropFile

SETTLE_MS = 300


def _run(
    tmp_path: Path, body: Callable[[Settler, Path], Awaitable[None]], settle_ms: int = SETTLE_MS,
    remember: int = 0,
) -> list[DropFile]:
    drop = tmp_path / "drop"
    drop.mkdir()
    gone: list[DropFile] = []

    async def main() -> None:
        settler = Settler(
            settle_ms, lambda p: Path(p).relative_to(drop).as_posix(), gone.append, remember
        )
        watching = asyncio.create_task(settler.run())
        try:
            await body(settler, drop)
        finally:
            watching.cancel()

    asyncio.run(main(), debug=True)
    return gone


def _write(path: Path, data: bytes, age_s: float) -> os.stat_result:
    path.write_bytes(data)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return os.stat(path)


def test_a_file_last_written_settle_ms_ago_is_handed_out_as_that_one_look_saw_it(
    tmp_path: Path,
) -> None:
    async def body(settler: Settler, drop: Path) -> None:
        st = _write(drop / "old.csv", b"a\n1\n", age_s=3600)
        settler.offer(drop / "old.csv", st)
        (drop / "old.csv").write_bytes(b"a\n1\n2\n")  # written again after that look
        # Handed out at once: a wait of settle_ms (a minute here) would time this out.
        file = await asyncio.wait_for(settler.ready.get(), 5)
        # No second look: the read and the commit find the change (store.parts.unchanged).
        assert (file.rel, file.size, file.mtime_ns) == ("old.csv", st.st_size, st.st_mtime_ns)
        assert settler.busy == 1 and len(settler) == 0
        # Offered again while handed out: looked at once more when it is resolved.
        settler.offer(drop / "old.csv", os.stat(drop / "old.csv"))
        assert settler.ready.empty()
        assert settler.done("old.csv") is True

    assert _run(tmp_path, body, settle_ms=60_000) == []


def test_a_file_written_just_now_waits_settle_ms_and_a_second_look(tmp_path: Path) -> None:
    async def body(settler: Settler, drop: Path) -> None:
        path = drop / "new.csv"
        settler.offer(path, _write(path, b"a\n1\n", age_s=0))
        await asyncio.sleep(SETTLE_MS / 2000)
        assert settler.ready.empty() and len(settler) == 1
        path.write_bytes(b"a\n1\n2\n")  # still being written: the wait starts again
        os.utime(path)
        started = time.monotonic()
        file = await asyncio.wait_for(settler.ready.get(), 5)
        assert time.monotonic() - started >= SETTLE_MS / 2000
        assert file.size == len(b"a\n1\n2\n")

    assert _run(tmp_path, body) == []


def test_a_file_with_an_mtime_in_the_future_is_watched_not_trusted(tmp_path: Path) -> None:
    async def body(settler: Settler, drop: Path) -> None:
        path = drop / "skewed.csv"
        settler.offer(path, _write(path, b"a\n1\n", age_s=-3600))
        assert settler.ready.empty()
        started = time.monotonic()
        await asyncio.wait_for(settler.ready.get(), 5)
        assert time.monotonic() - started >= SETTLE_MS / 1000 * 0.9

    assert _run(tmp_path, body) == []


def test_a_file_gone_before_it_settled_is_reported_once(tmp_path: Path) -> None:
    async def body(settler: Settler, drop: Path) -> None:
        path = drop / "fleeting.csv"
        settler.offer(path, _write(path, b"a\n1\n", age_s=0))
        path.unlink()
        await asyncio.sleep(SETTLE_MS / 1000 * 2)
        assert settler.ready.empty() and len(settler) == 0

    assert [file.rel for file in _run(tmp_path, body)] == ["fleeting.csv"]


def test_files_due_at_once_are_looked_at_in_batches_with_the_loop_running_between(
    tmp_path: Path,
) -> None:
    """2,000 files copied in at once come due together; their second looks must not hold
    the event loop for one pass over all of them."""
    count = 2_000
    seen: list[int] = []

    async def body(settler: Settler, drop: Path) -> None:
        for i in range(count):
            path = drop / f"f{i:04d}.csv"
            settler.offer(path, _write(path, b"a\n1\n", age_s=0))
        time.sleep(0.2)  # the loop held past settle_ms: every file is due at its next pass

        async def probe() -> None:
            while settler.ready.qsize() < count:
                seen.append(settler.ready.qsize())
                await asyncio.sleep(0)

        await asyncio.wait_for(probe(), 30)
        assert len(settler) == 0

    assert _run(tmp_path, body, settle_ms=50) == []
    between = [n for n in seen if 0 < n < count]
    assert between, "every file was handed out in one pass of the loop"


def test_a_file_offered_twice_and_written_again_unseen_waits_settle_ms_after_that_write(
    tmp_path: Path,
) -> None:
    """Offered as it grew, a file is due twice; both come due in one pass. The first look
    finds it written again (no event said so): the second must not take that for a quiet
    look."""

    async def body(settler: Settler, drop: Path) -> None:
        path = drop / "grown.csv"
        settler.offer(path, _write(path, b"a\n1\n", age_s=0))
        time.sleep(0.05)
        settler.offer(path, _write(path, b"a\n1\n2\n", age_s=0))
        time.sleep(SETTLE_MS / 1000 + 0.1)  # the loop held: both looks are due at its next pass
        path.write_bytes(b"a\n1\n2\n3\n")
        written = time.monotonic()
        file = await asyncio.wait_for(settler.ready.get(), 5)
        # Not before settle_ms less the mtime's coarseness (the code before: at once).
        assert time.monotonic() - written >= SETTLE_MS / 1000 * 0.9, "handed out unsettled"
        assert file.size == len(b"a\n1\n2\n3\n")

    assert _run(tmp_path, body) == []


def test_a_file_in_flight_found_by_a_scan_as_it_was_gets_no_second_look(
    tmp_path: Path,
) -> None:
    async def body(settler: Settler, drop: Path) -> None:
        path = drop / "a.csv"
        st = _write(path, b"a\n1\n", age_s=3600)
        settler.offer(path, st)
        await asyncio.wait_for(settler.ready.get(), 5)
        settler.offer(path, os.stat(path), scanned=True)  # a rescan, nothing changed
        assert settler.done("a.csv") is False

        settler.offer(path, os.stat(path))
        await asyncio.wait_for(settler.ready.get(), 5)
        settler.offer(path, os.stat(path))  # an event: something touched it
        assert settler.done("a.csv") is True

        settler.offer(path, os.stat(path))
        await asyncio.wait_for(settler.ready.get(), 5)
        _write(path, b"a\n2\n", age_s=60)  # same size, another mtime
        settler.offer(path, os.stat(path), scanned=True)
        assert settler.done("a.csv") is True

    assert _run(tmp_path, body, settle_ms=60_000) == []


async def _resolve(settler: Settler, stays: bool = True) -> DropFile:
    """The next file handed out, resolved; `stays`: as one whose fate leaves it as it is."""
    file = await asyncio.wait_for(settler.ready.get(), 5)
    assert settler.done(file.rel, file if stays else None) is False
    return file


async def _nothing_handed_out(settler: Settler) -> None:
    await asyncio.sleep(0.1)  # time for the settler to hand out what it would
    assert settler.ready.empty()


def test_files_resolved_in_keep_mode_are_passed_over_until_they_change_or_go(
    tmp_path: Path,
) -> None:
    async def body(settler: Settler, drop: Path) -> None:
        paths = [drop / f"{name}.csv" for name in "abc"]
        for path in paths:
            settler.offer(path, _write(path, b"a\n1\n", age_s=3600))
        resolved = [await _resolve(settler) for _ in paths]
        # At most `remember` (2) files are remembered: the third is offered again.
        for path in paths:
            settler.offer(path, os.stat(path), scanned=True)
        assert (await _resolve(settler, stays=False)).rel == resolved[2].rel
        await _nothing_handed_out(settler)

        # Changed: offered again, and no longer remembered.
        settler.offer(paths[0], _write(paths[0], b"a\n2\n", age_s=60))
        assert (await _resolve(settler, stays=False)).rel == "a.csv"
        settler.offer(paths[0], os.stat(paths[0]), scanned=True)
        assert (await _resolve(settler, stays=False)).rel == "a.csv"

        # Gone: a scan cut short forgets nothing; a whole scan that does not find it does.
        st = os.stat(paths[1])
        paths[1].unlink()
        settler.scan_began()
        settler.scan_ended(whole=False)
        settler.offer(paths[1], st, scanned=True)
        await _nothing_handed_out(settler)
        settler.scan_began()
        settler.scan_ended(whole=True)
        settler.offer(paths[1], st, scanned=True)
        assert (await asyncio.wait_for(settler.ready.get(), 5)).rel == "b.csv"

    assert _run(tmp_path, body, settle_ms=60_000, remember=2) == []


def test_a_file_that_never_settles_holds_a_few_heap_entries_not_one_a_change(
    tmp_path: Path,
) -> None:
    """Each change of a file offers it anew. The entries of its older versions are dropped
    as they come due, not put back: a file written every second for a day held 86,400,
    all popped and pushed again every settle_ms. (settle_ms is fifty changes long: a
    loaded machine's pause between two does not settle the file.)"""
    changes = 200

    async def body(settler: Settler, drop: Path) -> None:
        path = drop / "growing.csv"
        for i in range(changes):
            settler.offer(path, _write(path, b"a\n" + b"1\n" * i, age_s=0))
            await asyncio.sleep(0.01)
        assert settler.ready.empty(), "changed faster than settle_ms: not settled"
        # Left: those offered within the last settle_ms, not yet due (about fifty).
        assert len(settler._heap) < changes // 2, len(settler._heap)
        file = await asyncio.wait_for(settler.ready.get(), 5)  # it stopped changing
        assert file.size == len(b"a\n" + b"1\n" * (changes - 1))
        assert not settler._heap

    assert _run(tmp_path, body, settle_ms=500) == []


def test_a_file_seen_to_change_is_not_counted_as_settling_soon(tmp_path: Path) -> None:
    """A task waits for files that may settle soon, and `once` holds a failing commit for
    them, not for one still changing (`InFlight.backlog`, `more_coming`); `once` leaves
    those at its end."""

    async def body(settler: Settler, drop: Path) -> None:
        fresh = drop / "fresh.csv"
        settler.offer(fresh, _write(fresh, b"a\n1\n", age_s=0))
        assert (len(settler), settler.settling()) == (1, 1), "found just now: may settle"
        settler.offer(fresh, _write(fresh, b"a\n1\n2\n", age_s=0))  # an event: it grew
        assert (len(settler), settler.settling()) == (1, 0)
        looked = drop / "looked.csv"
        settler.offer(looked, _write(looked, b"a\n1\n", age_s=0))
        assert settler.settling() == 1
        for rows in range(2, 14):  # unseen, for twice settle_ms: the second looks find it
            for path in (fresh, looked):
                path.write_bytes(b"a\n" + b"1\n" * rows)
            await asyncio.sleep(SETTLE_MS / 1000 / 6)
        assert (len(settler), settler.settling()) == (2, 0)
        assert sorted(f.rel for f in settler.leave_unsettled()) == ["fresh.csv", "looked.csv"]
        assert (len(settler), settler.settling()) == (0, 0)
        assert settler.ready.empty()

    _run(tmp_path, body)
