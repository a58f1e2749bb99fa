"""The committer's record of files set aside, when it fails: one file's own fault leaves that
file out and no other; the machine's fault leaves every file not yet recorded pending, and
none is recorded twice. A real ledger and real files, with faults put into the ledger's
record, as a bug or a full disk would raise them."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
import time
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from ingest.aio.commit import Aside, Committer
from ingest.config import Config, Paths
from ingest.files import DropFile, mtime_ns
from ingest.jobs import Failure
from ingest.store.crashpoints import CrashPlan
from ingest.store.layout import Layout
from ingest.store.ledger import FileRecord, Ledger


class FaultyLedger(Ledger):
    """Raises a bug's error for any record holding `own`, and a full disk's for any holding
    `machine` while `full` is set."""

    own = "x.csv"
    machine = "y.csv"
    full = True

    def record(self, files: Iterable[FileRecord]) -> None:
        records = list(files)
        paths = {record.path for record in records}
        if self.own in paths:
            raise RuntimeError(f"a bug that {self.own} brings out")
        if self.full and self.machine in paths:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().record(records)


def _setup(tmp_path: Path, names: Sequence[str]) -> tuple[Committer, list[Aside], Layout]:
    root = tmp_path
    config = Config(paths=Paths(root / "drop", root / "output", root / "q", root / "a"))
    layout = Layout.of(config)
    layout.drop.mkdir()
    layout.make_dirs()
    ledger = FaultyLedger(layout.ledger)
    told: list[tuple[str, str]] = []

    def resolved(
        event: str, files: Sequence[tuple[DropFile, dict[str, object]]],
        unpaused: Collection[str] = (),
    ) -> None:
        told.extend((event, file.rel) for file, _ in files)

    committer = Committer(ledger, layout, config, resolved, lambda: True, CrashPlan(),
                          only_these_left=lambda waiting: False)
    committer.told = told  # type: ignore[attr-defined]
    aside = []
    for name in names:
        path = layout.drop / name
        path.write_text(f"a,b\n1,{name}\n2,3,4\n")
        st = path.stat()
        file = DropFile(path, name, st.st_size, mtime_ns(st), time.time(), time.monotonic())
        aside.append(Aside(file, name * 4, "quarantined", failure=Failure("ParseError", "bad")))
    return committer, aside, layout


def _rows(layout: Layout) -> list[tuple[str, str]]:
    with sqlite3.connect(layout.ledger) as db:
        return sorted(db.execute("SELECT path, state FROM files"))


def test_a_full_disk_midway_through_records_made_apart_records_nothing_twice(
    tmp_path: Path,
) -> None:
    committer, aside, layout = _setup(tmp_path, ["a.csv", "x.csv", "y.csv", "b.csv"])
    for item in aside:
        committer.set_aside(item)

    # The batch fails for x.csv's own fault; in halves, [a, x] fails again and is split:
    # a.csv is recorded, x.csv fails alone, and the disk is full at [y, b]: the flush
    # fails there.
    assert not asyncio.run(committer.flush())

    assert _rows(layout) == [("a.csv", "quarantined")]
    told = committer.told  # type: ignore[attr-defined]
    assert told == [("quarantined", "a.csv"), ("uncommitted", "x.csv")], "a record went through"
    assert [a.file.rel for a in committer._pending.aside] == ["y.csv", "b.csv"]
    assert (layout.quarantine / "a.csv").exists() and (layout.drop / "x.csv").exists()

    FaultyLedger.full = False
    try:
        assert asyncio.run(committer.flush())
    finally:
        FaultyLedger.full = True

    assert _rows(layout) == [("a.csv", "quarantined"), ("b.csv", "quarantined"),
                             ("y.csv", "quarantined")], "each once, x.csv never"
    assert told[2:] == [("quarantined", "y.csv"), ("quarantined", "b.csv")]
    assert not committer._pending
    assert [p.name for p in layout.drop.iterdir()] == ["x.csv"], "left for a later look"


def test_a_record_failing_alone_with_nothing_to_show_the_fault_is_its_own_is_retried(
    tmp_path: Path,
) -> None:
    committer, aside, layout = _setup(tmp_path, ["x.csv"])
    committer.set_aside(aside[0])

    assert not asyncio.run(committer.flush()), "retried, with backoff, as a failing commit"

    assert committer.told == []  # type: ignore[attr-defined]
    assert [a.file.rel for a in committer._pending.aside] == ["x.csv"]
    assert _rows(layout) == []


def test_a_full_disk_midway_through_vanished_records_made_alone_records_none_twice(
    tmp_path: Path,
) -> None:
    committer, aside, layout = _setup(tmp_path, ["x.csv"])
    committer.set_aside(aside[0])
    for name in ("gone1.csv", "y.csv", "gone2.csv"):  # y.csv: the disk fills at its record
        committer.vanished(DropFile(layout.drop / name, name, 5, 1, time.time(), 0.0))

    assert not asyncio.run(committer.flush())

    assert _vanished(layout) == ["gone1.csv"]
    assert [r.path for r in committer._pending.vanished] == ["y.csv", "gone2.csv"]
    assert [a.file.rel for a in committer._pending.aside] == ["x.csv"], "not yet tried alone"

    FaultyLedger.full = False
    try:
        asyncio.run(committer.flush())
    finally:
        FaultyLedger.full = True

    assert _vanished(layout) == ["gone1.csv", "gone2.csv", "y.csv"], "each once"
    assert committer.told == [("uncommitted", "x.csv")]  # type: ignore[attr-defined]


def _vanished(layout: Layout) -> list[str]:
    with sqlite3.connect(layout.ledger) as db:
        return sorted(path for (path,) in db.execute("SELECT path FROM vanished"))


class CountingLedger(FaultyLedger):
    def __init__(self, path: Path):
        super().__init__(path)
        self.calls = 0

    def record(self, files: Iterable[FileRecord]) -> None:
        self.calls += 1
        super().record(files)


def test_one_bad_record_among_many_is_found_in_halves_not_one_by_one(tmp_path: Path) -> None:
    names = [f"f{i:04}.csv" for i in range(1000)]
    names[617] = "x.csv"  # its record fails for a reason of its own
    committer, aside, layout = _setup(tmp_path, names)
    committer.ledger.close()
    committer.ledger = counting = CountingLedger(layout.ledger)
    for item in aside:
        committer.set_aside(item)

    asyncio.run(committer.flush())

    assert _rows(layout) == sorted((n, "quarantined") for n in names if n != "x.csv")
    assert committer.told[-1] == ("uncommitted", "x.csv")  # type: ignore[attr-defined]
    assert counting.calls <= 2 * 10 + 1, "the batch, then two halves a level"
