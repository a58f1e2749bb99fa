"""The follower notices when it goes deaf: real folders, the real settler, real watchfiles,
and stand-ins (passed the way the service passes its own) for watchers that cannot be here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import watchfiles

from ingest.aio.canary import MISSES
from ingest.aio.canary import NAME as CANARY
from ingest.aio.follow import EventSource, Follower
from ingest.aio.settle import Settler
from ingest.aio.watch import Watcher
from ingest.config import Watch
from ingest.files import DropFile
from ingest.store.watch_mode import WatchMode

from .watchers import deaf, fails_while_watching, refused

T = TypeVar("T")
# [watch] canary_wait_s here: far above the milliseconds an event takes, and short, since a
# deaf watcher is found out only by waiting for it (the default, 5 s, is for busy loops).
WAIT_S = 1.0
# The longest a deaf watcher takes to be given up: the first canary touched within a tick,
# then missed by two watchers in a row, each found out at a tick.
DEAF_S = MISSES * (WAIT_S + 2)
GIVE_UP_S = DEAF_S + 5  # with a margin, as a timeout


@dataclass
class Run:
    drop: Path
    follower: Follower
    settler: Settler
    modes: list[WatchMode] = field(default_factory=list)

    async def settled(self, timeout: float) -> DropFile:
        return await asyncio.wait_for(self.settler.ready.get(), timeout)


def follow(
    tmp_path: Path,
    body: Callable[[Run], Awaitable[T]],
    events: EventSource | None = None,
    on_success: str = "archive",
) -> T:
    """Run `body` while a follower watches tmp_path/drop (no rescans: they are not what
    finds the files here)."""
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)

    async def main() -> T:
        watch = Watch(settle_ms=50, rescan_s=3600, on_success=on_success, canary_wait_s=WAIT_S)
        settler = Settler(watch.settle_ms, lambda p: Path(p).relative_to(drop).as_posix(),
                          lambda file: None)
        modes: list[WatchMode] = []

        async def report(mode: WatchMode) -> None:
            modes.append(mode)

        follower = Follower(Watcher(drop, watch, settler), report, events)
        run = Run(drop, follower, settler, modes)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(settler.run()), asyncio.create_task(follower.run(stop))]
        try:
            return await body(run)
        finally:
            stop.set()
            await asyncio.wait_for(tasks[1], 10)
            tasks[0].cancel()

    return asyncio.run(main(), debug=True)


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_a_watcher_that_hears_nothing_gives_way_to_polling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ingest.watch")

    async def body(run: Run) -> DropFile:
        await _until(lambda: (run.drop / CANARY).exists(), 5)
        await _until(lambda: bool(run.modes) and run.modes[-1].mode == "polling", GIVE_UP_S)
        (run.drop / "late.csv").write_text("a,b\n1,2\n")
        return await run.settled(10)

    found = follow(tmp_path, body, events=deaf)

    assert found.rel == "late.csv", "the canary is never offered as an input"
    assert "no event for the canary" in caplog.text
    assert f"arrived within {WAIT_S:g} s" in caplog.text, "[watch] canary_wait_s is the bound"
    assert "starting a new watcher" in caplog.text, "a new watcher is tried first"
    assert "fs.inotify.max_user_watches" in caplog.text
    assert not (tmp_path / "drop" / CANARY).exists(), "the canary is removed at the end"


def test_a_file_dropped_while_the_watcher_was_deaf_is_found_when_it_falls_back(
    tmp_path: Path,
) -> None:
    async def body(run: Run) -> DropFile:
        (run.drop / "unheard.csv").write_text("a,b\n1,2\n")
        return await run.settled(GIVE_UP_S)

    assert follow(tmp_path, body, events=deaf).rel == "unheard.csv"


def test_a_watcher_that_cannot_start_polls_and_says_how_to_raise_the_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(run: Run) -> DropFile:
        await _until(lambda: bool(run.modes), 5)
        (run.drop / "a.csv").write_text("a,b\n1,2\n")
        return await run.settled(5)

    found = follow(tmp_path, body, events=refused)

    assert found.rel == "a.csv"
    assert "the file watcher cannot start" in caplog.text
    assert "OS file watch limit reached" in caplog.text
    assert "fs.inotify.max_user_watches" in caplog.text
    assert "fs.inotify.max_user_instances" in caplog.text


def test_real_events_hear_the_canary_which_lives_only_until_heard(tmp_path: Path) -> None:
    heard: list[str] = []

    async def recorded(*paths: Path, **kwargs: Any) -> AsyncGenerator[set[tuple[Any, str]], None]:
        async for batch in watchfiles.awatch(*paths, **kwargs):
            heard.extend(name for _, name in batch if name.endswith(CANARY))
            yield batch

    async def body(run: Run) -> list[WatchMode]:
        await _until(lambda: bool(heard), 5)
        await _until(lambda: not (run.drop / CANARY).exists(), 1)
        await asyncio.sleep(WAIT_S + 1)  # long past the canary's bound
        (run.drop / "a.csv").write_text("a,b\n1,2\n")
        found = await run.settled(5)
        assert found.rel == "a.csv", "the canary is never offered as an input"
        return run.modes

    modes = follow(tmp_path, body, events=recorded)

    assert modes == [WatchMode("events")]
    assert not (tmp_path / "drop" / CANARY).exists()


def test_a_watcher_that_fails_while_watching_polls_and_says_it_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    modes: list[WatchMode] = []

    async def body(run: Run) -> DropFile:
        await _until(lambda: bool(run.modes) and run.modes[-1].mode == "polling", 5)
        modes.extend(run.modes)
        (run.drop / "a.csv").write_text("a,b\n1,2\n")
        return await run.settled(5)

    found = follow(tmp_path, body, events=fails_while_watching)

    assert found.rel == "a.csv"
    assert "the file watcher stopped (" in caplog.text
    assert (modes[-1].reason or "").startswith("the file watcher stopped:"), "as status says"
    assert "cannot start" not in caplog.text, "it did start"
    assert "fs.inotify.max_user_watches" in caplog.text


def test_a_canary_a_killed_service_left_is_removed(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / CANARY).write_text("12345\n")

    async def body(run: Run) -> None:
        # Before the first canary of this follower is made, a tick from now, and which a
        # deaf watcher would leave in place for seconds.
        await _until(lambda: not (run.drop / CANARY).exists(), 0.9)

    follow(tmp_path, body, events=deaf)


def test_keep_mode_writes_no_canary_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ingest.watch")

    async def body(run: Run) -> None:
        await asyncio.sleep(2.5)  # past the first moment a canary would be touched
        assert not (run.drop / CANARY).exists()
        (run.drop / "a.csv").write_text("a,b\n1,2\n")
        assert (await run.settled(5)).rel == "a.csv"

    follow(tmp_path, body, events=None, on_success="keep")

    assert caplog.text.count("no canary") == 1


def test_one_missed_canary_gets_a_new_watcher_and_events_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An inotify queue that overflowed loses an event once: that is no reason to poll."""
    armed: list[int] = []

    def deaf_once(*paths: Path, **kwargs: Any) -> AsyncGenerator[set[tuple[Any, str]], None]:
        armed.append(1)
        return deaf(*paths, **kwargs) if len(armed) == 1 else watchfiles.awatch(*paths, **kwargs)

    async def body(run: Run) -> list[WatchMode]:
        await _until(lambda: len(armed) == 2, WAIT_S + 5)
        (run.drop / "a.csv").write_text("a,b\n1,2\n")
        assert (await run.settled(5)).rel == "a.csv"
        await asyncio.sleep(WAIT_S + 1)  # the new watcher's canary is heard
        return run.modes

    modes = follow(tmp_path, body, events=deaf_once)

    assert modes == [WatchMode("events")]
    assert len(armed) == 2
    assert "starting a new watcher" in caplog.text


def test_a_watcher_that_hears_other_files_is_not_deaf_though_the_canary_is_lost(
    tmp_path: Path,
) -> None:
    """An inotify queue that overflows in a flood may lose the canary's event, not hearing."""

    async def loses_the_canary(
        *paths: Path, **kwargs: Any
    ) -> AsyncGenerator[set[tuple[Any, str]], None]:
        async for batch in watchfiles.awatch(*paths, **kwargs):
            yield {(change, name) for change, name in batch if not name.endswith(CANARY)}

    async def body(run: Run) -> list[WatchMode]:
        deadline = time.monotonic() + DEAF_S + 2  # past when a deaf watcher gives up
        for i in itertools.count():
            if time.monotonic() > deadline:
                break
            (run.drop / f"f{i}.csv").write_text("a,b\n1,2\n")
            await asyncio.sleep(0.5)
        return run.modes

    assert follow(tmp_path, body, events=loses_the_canary) == [WatchMode("events")]


def test_scans_asked_for_while_one_walks_the_folder_are_one_more_walk_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Watchers restarted in a row each ask for a scan: a large folder is walked once more
    after the walk under way, not once per restart side by side."""
    caplog.set_level(logging.INFO, "ingest.watch")
    (tmp_path / "drop").mkdir()
    for i in range(3000):
        (tmp_path / "drop" / f"f{i:04d}.csv").write_text("a,b\n1,2\n")

    async def body(run: Run) -> None:
        for _ in range(5):
            run.follower._spawn_scan()
        await _until(lambda: caplog.text.count("scanned ") == 2, 20)
        await asyncio.sleep(0.5)  # no third walk follows

    follow(tmp_path, body)

    assert caplog.text.count("scanned ") == 2
