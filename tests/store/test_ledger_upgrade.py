"""A ledger written by an earlier release: opened, upgraded in place, its inputs still known."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ingest.store import catalog
from ingest.store.ledger import (
    PAGE_CACHE_KB,
    PENDING_PARTS,
    WAL_CHECKPOINT_PAGES,
    WAL_LIMIT_BYTES,
    FileRecord,
    Ledger,
)

from ..conftest import Folder, write_csv


def _indexes(ledger: Path) -> set[str]:
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows}


def test_an_index_nothing_reads_is_dropped_and_the_inputs_stay_known(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 0, "on_success": "keep"}, pipeline={"workers": 1})
    for i in range(3):
        write_csv(folder.drop / f"a{i}.csv", rows=5, seed=i)
    assert folder.ingest("once").returncode == 0
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    assert "files_sha" not in _indexes(ledger)
    with sqlite3.connect(ledger) as db:  # as the release before this one left it
        db.execute("CREATE INDEX files_sha ON files (sha256)")

    (folder.drop / "copy.csv").write_bytes((folder.drop / "a0.csv").read_bytes())
    write_csv(folder.drop / "b.csv", rows=5, seed=9)
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr

    assert "files_sha" not in _indexes(ledger)
    assert {"files_key", "files_state", "part_holds_input"} <= _indexes(ledger)
    with sqlite3.connect(ledger) as db:
        states = dict(db.execute("SELECT path, state FROM files").fetchall())
    assert states == {"a0.csv": "ingested", "a1.csv": "ingested", "a2.csv": "ingested",
                      "copy.csv": "duplicate", "b.csv": "ingested"}
    assert folder.rows_per_file() == {"a0.csv": 5, "a1.csv": 5, "a2.csv": 5, "b.csv": 5}


def test_the_writer_keeps_a_larger_page_cache_and_checkpoints_less_often(folder: Folder) -> None:
    folder.output.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(folder.output / "ledger.sqlite")
    try:
        assert ledger._db.execute("PRAGMA cache_size").fetchone() == (-PAGE_CACHE_KB,)
        assert ledger._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (
            WAL_CHECKPOINT_PAGES,
        )
    finally:
        ledger.close()


def test_a_wal_grown_by_one_large_transaction_is_cut_back_by_the_next(tmp_path: Path) -> None:
    """A service runs for months on one connection: a WAL file that one transaction grew
    would otherwise stay that size on disk until it stops."""
    path = tmp_path / "ledger.sqlite"
    wal = tmp_path / "ledger.sqlite-wal"
    ledger = Ledger(path)
    try:
        ledger.set_meta("large", "x" * (2 * WAL_LIMIT_BYTES))
        assert wal.stat().st_size > 2 * WAL_LIMIT_BYTES
        ledger.set_meta("small", "y")
        assert wal.stat().st_size <= WAL_LIMIT_BYTES
        assert ledger.meta("small") == "y"
        assert ledger.meta("large") == "x" * (2 * WAL_LIMIT_BYTES)
    finally:
        ledger.close()


# The catalog as releases before `part_holds` wrote it: part files keyed by path, and a
# row (part path, input path, sha256) for each input a part file holds.
EARLIER_CATALOG = """
CREATE TABLE part_inputs (
    path TEXT NOT NULL, source_file TEXT NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (path, source_file, sha256)
) WITHOUT ROWID;
CREATE INDEX part_inputs_source ON part_inputs (source_file, sha256);
INSERT INTO part_inputs SELECT p.path, f.path, f.sha256 FROM part_holds h
    JOIN part_files p ON p.id = h.part JOIN files f ON f.id = h.input;
DROP TABLE part_holds;
CREATE TABLE part_files_by_path (
    path TEXT PRIMARY KEY, part_id TEXT NOT NULL, table_name TEXT NOT NULL,
    day TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
    bytes INTEGER NOT NULL DEFAULT 0
);
INSERT INTO part_files_by_path SELECT path, part_id, table_name, day, state, bytes
    FROM part_files;
DROP TABLE part_files;
ALTER TABLE part_files_by_path RENAME TO part_files;
CREATE INDEX part_files_partition ON part_files (table_name, day, state);
CREATE INDEX part_files_part ON part_files (part_id);
"""


def _parts_of_each(path: Path) -> dict[str, list[str]]:
    ledger = Ledger(path, read_only=True)
    try:
        inputs = ledger._db.execute(
            "SELECT path, sha256 FROM files WHERE state = 'ingested'"
        ).fetchall()
        return {name: ledger.parts_of(name, sha) for name, sha in inputs}
    finally:
        ledger.close()


def test_a_catalog_that_named_inputs_by_path_is_moved_to_ids_in_place(folder: Folder) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep"}, pipeline={"workers": 1},
        **{"tables.other": {"patterns": ["b*.csv"]}},
    )
    for seed, name in enumerate(("a0.csv", "a1.csv", "b0.csv")):
        write_csv(folder.drop / name, rows=5, seed=seed)
    assert folder.ingest("once").returncode == 0
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    placed = _parts_of_each(ledger)
    assert set(placed) == {"a0.csv", "a1.csv", "b0.csv"}
    assert all(len(parts) == 2 for parts in placed.values()), placed  # records and features
    with sqlite3.connect(ledger) as db:
        db.executescript(EARLIER_CATALOG)

    # Read only (`ingest explain` beside a service of the earlier release): the same answers.
    assert _parts_of_each(ledger) == placed
    with sqlite3.connect(ledger) as db:  # as this release's open leaves it before the move
        db.executescript(catalog.SCHEMA)
    assert _parts_of_each(ledger) == placed
    explained = json.loads(folder.ingest("explain", "b0.csv", "--json").stdout)
    assert explained["versions"][0]["parts"] == placed["b0.csv"]

    write_csv(folder.drop / "a2.csv", rows=5, seed=7)
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(ledger) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        columns = [row[1] for row in db.execute("PRAGMA table_info(part_files)")]
    assert "part_inputs" not in tables and "part_inputs_source" not in tables
    assert {"part_holds", "part_holds_input", "part_files_partition", "part_files_part"} <= tables
    assert columns[0] == "id"
    after = _parts_of_each(ledger)
    assert {name: after[name] for name in placed} == placed
    assert len(after["a2.csv"]) == 2
    assert folder.rows_per_file() == {"a0.csv": 5, "a1.csv": 5, "a2.csv": 5}
    assert folder.rows_per_file("other") == {"b0.csv": 5}


def _plan(ledger: Ledger, query: str, args: tuple[object, ...] = ()) -> str:
    plan = ledger._db.execute(f"EXPLAIN QUERY PLAN {query}", args)
    return " ".join(row[-1] for row in plan)


def test_pending_parts_are_found_without_reading_every_part_ever_committed(
    tmp_path: Path,
) -> None:
    """Every start, and with Delta every commit, asks for the pending parts; `parts` keeps
    a row for each commit ever made (2.6 million after a month of a commit a second), so
    the question is answered from an index of the pending ones, which a ledger made
    before it gains when opened."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    for n in range(3):
        part = f"p{n}"
        record = FileRecord(f"f{n}.csv", 1, 1, f"{n:064d}", "ingested", rows=1, part=part)
        ledger.begin_part(part, [f"records/ingest_date=2026-01-01/part-{n}.parquet"])
        if n < 2:
            ledger.finish_part(part, [record])
    assert [part for part, _ in ledger.pending_parts()] == ["p2"]
    query = PENDING_PARTS
    assert "USING INDEX parts_pending" in _plan(ledger, query), _plan(ledger, query)
    ledger.close()
    with sqlite3.connect(path) as db:  # as an earlier release left it
        db.execute("DROP INDEX parts_pending")
    assert "parts_pending" not in _indexes(path)
    reopened = Ledger(path)
    try:
        assert "parts_pending" in _indexes(path)
        assert "USING INDEX parts_pending" in _plan(reopened, query)
        assert [part for part, _ in reopened.pending_parts()] == ["p2"]
    finally:
        reopened.close()


def test_an_inputs_part_files_are_found_and_recorded_through_indexes(tmp_path: Path) -> None:
    """A commit records, and `ingest explain` asks, which part files hold an input: over a
    ledger of millions of inputs, neither may read every row of `files` or `part_holds`."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        record = FileRecord("a.csv", 1, 1, "a" * 64, "ingested", rows=1, part="p1")
        rel = "records/ingest_date=2026-01-01/part-1.parquet"
        ledger.begin_part("p1", [rel])
        ledger.finish_part("p1", [record], {rel: [("a.csv", "a" * 64)]})
        for query, args in (
            (catalog.HOLD, (rel, "a.csv", "a" * 64)),
            (catalog.HOLD_RECORDED, (rel, 0, "p1")),
            (catalog.PARTS_OF, ("a.csv", "a" * 64)),
            (catalog.LET_GO, (rel,)),
        ):
            for indexed in (False, True):  # files_sha is made once a ledger is large
                if indexed:
                    ledger.index_digests()
                plan = _plan(ledger, query, args)
                assert "SCAN" not in plan and "files_state" not in plan, (query, plan)
        assert ledger.parts_of("a.csv", "a" * 64) == [rel]
    finally:
        ledger.close()
