"""What the service keeps in memory of past inputs: the newest, up to a bound; the rest
asked of the ledger, which must answer as memory would have."""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.store.known import Key, Known
from ingest.store.ledger import LOOKUP_BATCH, FileRecord, Ledger


def _record(path: str, sha256: str, state: str = "ingested", size: int = 10) -> FileRecord:
    return FileRecord(path, size, 1_000, sha256, state, done_at=1.0)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "ledger.sqlite")
    yield opened
    opened.close()


def _indexes(ledger: Ledger) -> set[str]:
    with sqlite3.connect(ledger.path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows}


def test_memory_keeps_the_newest_answers_and_says_it_no_longer_holds_them_all() -> None:
    known = Known(OrderedDict(), OrderedDict(), capacity=8)
    for i in range(8):
        known.keys[(f"f{i}", 1, 1)] = "ingested"
        known.ingested[f"sha{i}"] = f"f{i}"
        known.trim()
    assert known.whole and known.evicted == 0

    known.keys[("f8", 1, 1)] = "ingested"
    known.trim()
    assert not known.whole
    assert list(known.keys) == [(f"f{i}", 1, 1) for i in range(1, 9)], "the newest eight"
    assert known.evicted == 0 and len(known.ingested) == 8, "each map is bounded on its own"

    for i in range(10_000):  # never more than capacity after a batch, however many come
        known.keys[(f"g{i}", 1, 1)] = "duplicate"
        known.ingested[f"g{i}"] = f"g{i}"
        known.trim()
        assert len(known.keys) == len(known.ingested) == 8
    assert list(known.ingested)[-1] == "g9999"
    assert known.evicted == 10_000, "each sha256 let go of is counted, oldest first"


def test_a_ledger_within_the_bound_is_held_whole_and_has_no_sha_index(ledger: Ledger) -> None:
    ledger.record([_record(f"a{i}.csv", f"s{i}") for i in range(5)])
    ledger.index_digests()  # as a run past the bound left it
    known = ledger.known(capacity=5)
    assert known.whole and len(known.keys) == 5 and len(known.ingested) == 5
    assert "files_sha" not in _indexes(ledger), "every commit would pay for it, for nothing"


def test_a_ledger_past_the_bound_loads_its_newest_inputs_and_is_indexed(ledger: Ledger) -> None:
    ledger.record([_record(f"a{i}.csv", f"s{i}") for i in range(5)])
    ledger.record([_record("b.csv", "s0", state="duplicate")])
    known = ledger.known(capacity=3)
    assert not known.whole
    assert list(known.keys) == [("a3.csv", 10, 1_000), ("a4.csv", 10, 1_000),
                                ("b.csv", 10, 1_000)]
    assert known.ingested == {"s3": "a3.csv", "s4": "a4.csv"}
    assert "files_sha" in _indexes(ledger)


def test_the_ledger_answers_as_memory_would_have(ledger: Ledger) -> None:
    ledger.record([_record("a.csv", "s1"), _record("b.csv", "s2", state="quarantined")])
    ledger.record([_record("copy.csv", "s1", state="duplicate")])
    ledger.record([_record("a.csv", "s3", state="quarantined")])  # the same key, later
    ledger.record([_record("c.csv", "s1", size=11)])  # the same bytes ingested again
    whole = ledger.known()
    asked = [("a.csv", 10, 1_000), ("b.csv", 10, 1_000), ("a.csv", 11, 1_000),
             ("copy.csv", 10, 1_000), ("new.csv", 10, 1_000)]

    assert ledger.states(asked) == {k: v for k, v in whole.keys.items() if k in asked}
    assert ledger.states(asked) == {("a.csv", 10, 1_000): "quarantined",
                                    ("b.csv", 10, 1_000): "quarantined",
                                    ("copy.csv", 10, 1_000): "duplicate"}
    assert ledger.originals(["s1", "s2", "s3", "nope"]) == {"s1": "a.csv"}
    assert ledger.originals(["s1"]) == {"s1": whole.ingested["s1"]}


def test_lookups_of_more_than_one_batch_find_every_input(ledger: Ledger) -> None:
    count = LOOKUP_BATCH * 2 + 7
    ledger.record([_record(f"f{i:05}.csv", f"s{i}") for i in range(count)])
    keys = [(f"f{i:05}.csv", 10, 1_000) for i in range(count)]
    assert len(ledger.states([*keys, ("missing", 1, 1)])) == count
    found = ledger.originals([f"s{i}" for i in range(count)])
    assert found == {f"s{i}": f"f{i:05}.csv" for i in range(count)}


def _work(ledger: Ledger, keys: list[Key]) -> tuple[dict[Key, str], int]:
    """What `states` answers, and the work SQLite did for it: its virtual machine's steps,
    in hundreds (a count no machine's speed changes)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    ledger._db.set_progress_handler(count, 100)
    try:
        return ledger.states(keys), steps
    finally:
        ledger._db.set_progress_handler(None, 0)


def test_a_name_dropped_again_and_again_is_looked_up_by_its_whole_key(ledger: Ledger) -> None:
    """A device's `readings.csv`, rewritten every minute for weeks: a lookup of its newest
    version must not read every one before it."""
    versions = 20_000
    ledger.record([
        FileRecord("dev/readings.csv", 10, mtime, f"s{mtime}", "ingested", done_at=1.0)
        for mtime in range(versions)
    ])
    ledger.record([_record("once.csv", "t")])

    newest, work = _work(ledger, [("dev/readings.csv", 10, versions - 1)])
    alone, work_alone = _work(ledger, [("once.csv", 10, 1_000)])

    assert newest == {("dev/readings.csv", 10, versions - 1): "ingested"}
    assert alone == {("once.csv", 10, 1_000): "ingested"}
    assert work <= 2 * work_alone + 10, f"{work} against {work_alone} for a name seen once"
