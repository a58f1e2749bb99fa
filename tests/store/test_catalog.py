"""The ledger's catalog: which part files hold each input, against the parts' own footers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq

from ingest.store.ledger import FileRecord, Ledger

from ..conftest import Folder, write_csv

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
