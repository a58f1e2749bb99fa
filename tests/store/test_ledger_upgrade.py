"""A ledger written by an earlier release: opened, upgraded in place, its inputs still known."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
    assert {"files_key", "files_state", "part_inputs_source"} <= _indexes(ledger)
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


def _plan(ledger: Ledger, query: str) -> str:
    return " ".join(row[-1] for row in ledger._db.execute(f"EXPLAIN QUERY PLAN {query}"))


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
