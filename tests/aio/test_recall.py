"""Asking the ledger what memory let go of (`Recall`), on a real ledger: an answer is
never lost to a trim that lands while a lookup waits or runs, and a ledger that cannot
be read for a while is asked again, not taken for one that knows nothing."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.aio.recall import Recall
from ingest.store.known import Known
from ingest.store.ledger import FileRecord, Ledger


def _ingested(path: str, sha256: str) -> FileRecord:
    return FileRecord(path, 10, 1, sha256, "ingested", done_at=1.0)


def _past_its_bound(ledger: Ledger) -> Known:
    known = ledger.known(capacity=1)
    assert not known.whole and known.indexed
    return known


def _remember(known: Known, path: str, sha256: str) -> None:
    """What `Outcomes` does once a file is committed: remember it, trim if need be."""
    known.keys[(path, 10, 1)] = "ingested"
    known.ingested.setdefault(sha256, path)
    known.trim()


async def _no_index() -> None:
    raise AssertionError("the index was made at start-up")


def test_an_answer_held_in_memory_when_asked_survives_a_trim_while_the_lookup_waits(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record([_ingested("old.csv", "old"), _ingested("held.csv", "held")])
    known = _past_its_bound(ledger)
    assert known.ingested == {"held": "held.csv"}

    async def main() -> dict[str, str]:
        recall = Recall(known, ledger.path, _no_index)
        async with recall._lock:  # another lookup is running
            asking = asyncio.create_task(recall.originals(["held", "old", "new"]))
            await asyncio.sleep(0.05)
            ledger.record([_ingested("later.csv", "later")])
            _remember(known, "later.csv", "later")  # lets "held" go
            assert "held" not in known.ingested
        found = await asking
        await recall.close()
        return found

    assert asyncio.run(main()) == {"held": "held.csv", "old": "old.csv"}
    ledger.close()


def test_bytes_recorded_and_let_go_of_while_the_query_runs_are_asked_again(
    tmp_path: Path,
) -> None:
    """The query misses a commit made after it began; the file is remembered, then a
    trim lets it go before the lookup resumes. Seen by the trim count: asked again."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record([_ingested("a.csv", "a"), _ingested("b.csv", "b")])
    known = _past_its_bound(ledger)
    queries: list[list[str]] = []

    class Racing(Recall):
        def _query(self, query: Callable[..., dict[str, str]], items: list[str]) -> dict[str, str]:
            found = super()._query(query, items)
            queries.append(sorted(found))
            if len(queries) == 1:  # committed and remembered just after the query ran
                ledger.record([_ingested("d.csv", "d"), _ingested("e.csv", "e")])
                loop.call_soon_threadsafe(_remember, known, "d.csv", "d")
                loop.call_soon_threadsafe(_remember, known, "e.csv", "e")
            return found

    async def main() -> dict[str, str]:
        recall = Racing(known, ledger.path, _no_index)
        found = await recall.originals(["a", "d"])
        await recall.close()
        return found

    loop = asyncio.new_event_loop()
    try:
        found = loop.run_until_complete(main())
    finally:
        loop.close()
    assert "d" not in known.ingested, "let go of before the lookup resumed"
    assert queries == [["a"], ["a", "d"]]
    assert found == {"a": "a.csv", "d": "d.csv"}
    ledger.close()


def test_a_ledger_that_cannot_be_read_for_a_while_is_asked_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.record([_ingested("a.csv", "a"), _ingested("b.csv", "b")])
    known = _past_its_bound(ledger)
    ledger.close()
    aside = tmp_path / "moved.sqlite"
    os.replace(path, aside)  # unreadable: no ledger where the service has it

    async def main() -> dict[str, str]:
        recall = Recall(known, path, _no_index)
        asking = asyncio.create_task(recall.originals(["a", "x"]))
        await asyncio.sleep(0.3)
        assert not asking.done(), "a ledger it cannot read is not one that knows nothing"
        os.replace(aside, path)
        found = await asyncio.wait_for(asking, 10)
        await recall.close()
        return found

    with caplog.at_level(logging.WARNING, logger="ingest.service"):
        assert asyncio.run(main()) == {"a": "a.csv"}
    assert "the ledger could not be read" in caplog.text
