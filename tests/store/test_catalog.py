"""The ledger's catalog: which part files hold each input, against the parts' own footers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq

from ingest.store.catalog import Swap
from ingest.store.compact import compact_partition
from ingest.store.crashpoints import CrashPlan
from ingest.store.layout import today
from ingest.store.ledger import FileRecord, Ledger

from ..conftest import Folder, write_csv
from .seed import layout_of

DAY = "ingest_date=2026-12-02"


def _footer_sources(path: Path) -> set[str]:
    meta = pq.read_schema(path).metadata or {}
    return {f for f, _, _ in json.loads(meta[b"ingest.sources"])}


def test_each_input_is_placed_in_the_parts_whose_footers_name_it(folder: Folder) -> None:
    """One task's files go to two tables: its features file holds them all, each records
    file only its table's, and the catalog says so for every input."""
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep"},
        pipeline={"workers": 1},
        output={"flush_s": 1},
        **{"tables.sensors": {"patterns": ["sensor_*.csv"]}},
    )
    for i in range(6):
        write_csv(folder.drop / f"sensor_{i}.csv", rows=5, seed=i)
        write_csv(folder.drop / f"other_{i}.csv", rows=5, seed=10 + i)
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr

    parts = {p.relative_to(folder.output).as_posix(): _footer_sources(p)
             for t in ("records", "sensors", "features") for p in folder.parts(t)}
    assert {rel.split("/")[0] for rel in parts} == {"records", "sensors", "features"}
    ledger = Ledger(folder.output / "_ingest" / "ledger.sqlite", read_only=True)
    try:
        inputs = ledger._db.execute("SELECT path, sha256 FROM files").fetchall()
        assert len(inputs) == 12
        for name, sha in inputs:
            expected = sorted(rel for rel, sources in parts.items() if name in sources)
            assert [rel.split("/")[0] for rel in expected] == [
                "features", "sensors" if name.startswith("sensor_") else "records"
            ]
            assert ledger.parts_of(name, sha) == expected
    finally:
        ledger.close()


def test_a_part_file_not_named_in_holds_holds_every_input_of_its_part(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        ledger.record([FileRecord("old.csv", 1, 1, "0" * 64, "ingested", part="p0", done_at=1.0)])
        rels = [f"features/{DAY}/part-p1-2.parquet", f"records/{DAY}/part-p1-0.parquet",
                f"sensors/{DAY}/part-p1-1.parquet"]
        ledger.begin_part("p1", rels, [1, 1, 1])
        files = [
            FileRecord("a.csv", 1, 2, "a" * 64, "ingested", rows=1, part="p1", done_at=2.0),
            FileRecord("s.csv", 1, 2, "b" * 64, "ingested", rows=1, part="p1", done_at=2.0),
            FileRecord("dup.csv", 1, 2, "a" * 64, "duplicate", done_at=2.0),
        ]
        ledger.finish_part("p1", files, {rels[1]: [("a.csv", "a" * 64)],
                                         rels[2]: [("s.csv", "b" * 64)]})
        assert ledger.parts_of("a.csv", "a" * 64) == rels[:2]
        assert ledger.parts_of("s.csv", "b" * 64) == [rels[0], rels[2]]
        # Neither an input recorded before nor one recorded here without the part.
        assert ledger.parts_of("old.csv", "0" * 64) == []
        assert ledger.parts_of("dup.csv", "a" * 64) == []

        ledger.begin_part("p2", [f"features/{DAY}/part-p2-0.parquet"], [1])
        ledger.finish_part("p2", [
            FileRecord("c.csv", 1, 2, "c" * 64, "ingested", rows=1, part="p2", done_at=3.0)
        ])
        assert ledger.parts_of("c.csv", "c" * 64) == [f"features/{DAY}/part-p2-0.parquet"]
        with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
            (held,) = db.execute("SELECT count(*) FROM part_holds").fetchone()
        assert held == 5
    finally:
        ledger.close()


def _steps(ledger: Ledger, call: Callable[[], None]) -> int:
    """SQLite's virtual-machine steps (in thousands) that `call` takes: the rows it reads,
    counted without a clock."""
    count = 0

    def step() -> int:
        nonlocal count
        count += 1
        return 0

    ledger._db.set_progress_handler(step, 1000)
    try:
        call()
    finally:
        ledger._db.set_progress_handler(None, 0)
    return count


def _named_again(ledger: Ledger, name: str, versions: int) -> None:
    """`versions` earlier inputs under one name (a device's file, dropped each minute)."""
    ledger.record([
        FileRecord(name, 10, n, f"{n:064x}", "ingested", rows=1, part=f"old-{n}", done_at=1.0)
        for n in range(versions)
    ])


def test_recording_which_files_hold_an_input_reads_none_of_its_names_other_versions(
    tmp_path: Path,
) -> None:
    """A commit whose files each hold some of its inputs (two tables, or Delta), and a
    compaction, name the inputs by path and sha256: finding them by path would read every
    version of the name ever recorded, inside the commit's transaction."""
    steps = {}
    for versions in (1, 3000):
        ledger = Ledger(tmp_path / f"ledger-{versions}.sqlite")
        try:
            _named_again(ledger, "readings.csv", versions)
            new = FileRecord("readings.csv", 10, -1, "f" * 64, "ingested", rows=1, part="p")
            rels = [f"features/{DAY}/part-p-1.parquet", f"records/{DAY}/part-p-0.parquet"]
            holds = {rel: [("readings.csv", "f" * 64)] for rel in rels}
            ledger.begin_part("p", rels)
            commit = _steps(ledger, partial(ledger.finish_part, "p", [new], holds))
            swap = Swap("s", "records", "2026-12-02", "_ingest/swap-s", [rels[1]],
                        [f"records/{DAY}/part-s-0.parquet"], "staged")
            ledger.begin_swap(swap, {})
            compacted = {swap.new[0]: [("readings.csv", "f" * 64)]}
            compaction = _steps(ledger, partial(ledger.finish_swap, "s", compacted))
            assert ledger.parts_of("readings.csv", "f" * 64) == [rels[0], swap.new[0]]
            steps[versions] = (commit, compaction)
        finally:
            ledger.close()
    assert steps[3000][0] <= steps[1][0] + 2, steps
    assert steps[3000][1] <= steps[1][1] + 2, steps


def test_a_rebuilt_ledger_places_each_input_in_every_part_whose_footer_names_it(
    folder: Folder,
) -> None:
    """Two commits over two tables, then one table compacted: its new file comes before
    the features files of the commits in a rebuild's order, and holds inputs recorded
    from a later part (the features file). A rebuild places them all."""
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep"}, pipeline={"workers": 1},
        output={"flush_s": 0}, **{"tables.other": {"patterns": ["b*.csv"]}},
    )
    for batch in range(2):
        write_csv(folder.drop / f"a{batch}.csv", rows=5, seed=batch)
        write_csv(folder.drop / f"b{batch}.csv", rows=5, seed=10 + batch)
        assert folder.ingest("once").returncode == 0
    layout = layout_of(folder)
    ledger = Ledger(layout.ledger)
    try:
        compact_partition(ledger, layout, "other", today(), CrashPlan(), 1 << 20)
    finally:
        ledger.close()
    assert len(folder.parts("other")) == 1
    layout.ledger.unlink()
    rebuilt = folder.ingest("ledger", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr

    parts = {p.relative_to(folder.output).as_posix(): _footer_sources(p)
             for t in ("records", "other", "features") for p in folder.parts(t)}
    ledger = Ledger(layout.ledger, read_only=True)
    try:
        inputs = ledger._db.execute("SELECT path, sha256 FROM files").fetchall()
        assert sorted(name for name, _ in inputs) == ["a0.csv", "a1.csv", "b0.csv", "b1.csv"]
        for name, sha in inputs:
            expected = sorted(rel for rel, sources in parts.items() if name in sources)
            assert len(expected) == 2
            assert ledger.parts_of(name, sha) == expected, name
    finally:
        ledger.close()
