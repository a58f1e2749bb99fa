"""Compaction: fewer parts, every row exactly once, provenance in footers and the ledger."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq

from ingest.store.ledger import Ledger
from ingest.store.merge import FOOTER_SCHEMA_VERSION

from ..conftest import Folder, write_csv
from ..invariants import check_exactly_once
from .seed import layout_of, seed_parts


def _footer_sources(path: Path) -> set[str]:
    meta = pq.read_schema(path).metadata or {}
    return {f for f, _, _ in json.loads(meta[b"ingest.sources"])}


def _drop_in_batches(folder: Folder, batches: int, per: int) -> dict[str, int]:
    """`ingest once` per batch: each run commits its own parts."""
    expected: dict[str, int] = {}
    for b in range(batches):
        for i in range(per):
            name = f"b{b:02d}_{i:03d}.csv"
            expected[name] = len(write_csv(folder.drop / name, rows=20 + i, seed=b * 100 + i))
        assert folder.ingest("once").returncode == 0
    return expected


def test_compact_merges_parts_keeps_every_row_once_and_says_where_each_input_is(
    folder: Folder,
) -> None:
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 2}, output={"flush_s": 0})
    expected = _drop_in_batches(folder, batches=4, per=10)
    assert len(folder.parts("records")) >= 4

    result = folder.ingest("compact")
    assert result.returncode == 0, result.stderr
    assert "compacted records/ingest_date=" in result.stderr
    assert "parts " in result.stderr and " MB -> " in result.stderr

    check_exactly_once(folder, expected, set())
    for table in ("records", "features"):
        (part,) = folder.parts(table)  # small parts of one partition make one file
        assert _footer_sources(part) == set(expected)
        assert pq.read_metadata(part).metadata[b"ingest.version"]
    ledger = Ledger(folder.output / "_ingest" / "ledger.sqlite")
    try:
        for name, sha in ledger._db.execute("SELECT path, sha256 FROM files"):
            assert ledger.parts_of(name, sha) == sorted(
                p.relative_to(folder.output).as_posix()
                for t in ("features", "records") for p in folder.parts(t)
            )
        assert not ledger.swaps()
    finally:
        ledger.close()
    assert not list((folder.output / "_ingest").glob("swap-*"))

    again = folder.ingest("compact")  # nothing left to merge
    assert again.returncode == 0 and "compacted 0 partitions" in again.stderr


def test_a_ledger_rebuilt_after_compaction_knows_every_input_and_where_it_is(
    folder: Folder,
) -> None:
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 2}, output={"flush_s": 0})
    expected = _drop_in_batches(folder, batches=3, per=5)
    assert folder.ingest("compact").returncode == 0
    (folder.output / "_ingest" / "ledger.sqlite").unlink()
    rebuilt = folder.ingest("ledger", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "more than one commit" not in rebuilt.stderr
    ledger = Ledger(folder.output / "_ingest" / "ledger.sqlite")
    try:
        parts = sorted(p.relative_to(folder.output).as_posix()
                       for t in ("features", "records") for p in folder.parts(t))
        for name, sha in ledger._db.execute("SELECT path, sha256 FROM files"):
            assert ledger.parts_of(name, sha) == parts
    finally:
        ledger.close()
    assert folder.ingest("once").returncode == 0
    check_exactly_once(folder, expected, set())


def test_a_ledger_without_the_catalog_is_migrated_and_old_outputs_still_compact(
    folder: Folder,
) -> None:
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 2}, output={"flush_s": 0})
    expected = _drop_in_batches(folder, batches=2, per=5)
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        for table in ("part_files", "part_holds", "swaps"):
            db.execute(f"DROP TABLE {table}")
        db.execute("DELETE FROM meta WHERE key = 'catalog'")

    ledger = Ledger(folder.output / "_ingest" / "ledger.sqlite")
    try:
        on_disk = {p.relative_to(folder.output).as_posix()
                   for t in ("records", "features") for p in folder.parts(t)}
        assert ledger.committed_paths() == on_disk
        assert ledger.tables() == ["features", "records"]
        query = "SELECT sha256 FROM files WHERE path = 'b00_000.csv'"
        (sha,) = ledger._db.execute(query).fetchone()
        held = ledger.parts_of("b00_000.csv", sha)
        assert held and all(_footer_sources(folder.output / p) >= {"b00_000.csv"}
                            for p in held if p.startswith("records/"))
    finally:
        ledger.close()
    assert folder.ingest("compact").returncode == 0
    check_exactly_once(folder, expected, set())
    assert len(folder.parts("records")) == 1


def test_parts_at_least_half_the_target_are_left_as_they_are(folder: Folder) -> None:
    folder.write_config(output={"target_file_mb": 1})
    seed_parts(folder, parts=3, rows=1_000_000)  # ~0.7 MB each: big enough alone
    small = seed_parts(folder, parts=5, rows=10, start=3)
    before = set(folder.parts("records"))
    assert folder.ingest("compact").returncode == 0
    after = set(folder.parts("records"))
    assert len(before & after) == 3 and len(after - before) == 1
    (merged,) = after - before
    assert _footer_sources(merged) == set(small)


def test_rewrite_keeps_footers_and_stamps_the_schema_version(folder: Folder) -> None:
    import pyarrow as pa

    from ingest.store.compact import rewrite_table
    from ingest.store.crashpoints import CrashPlan

    expected = seed_parts(folder, parts=6, rows=50)
    layout = layout_of(folder)
    ledger = Ledger(layout.ledger)
    wider = pa.schema([("v", pa.float64()), ("source_file", pa.string()),
                       ("source_sha256", pa.string()), ("extra", pa.string())])
    try:
        outcome = rewrite_table(ledger, layout, "records", wider, CrashPlan(), schema_version=2)
        assert outcome is not None and outcome.before == 6 and outcome.after == 1
        (part,) = folder.parts("records")
        assert ledger.parts_of("s00003.csv", _sha("s00003.csv")) == [
            part.relative_to(folder.output).as_posix()]
    finally:
        ledger.close()
    assert pq.read_schema(part).remove_metadata() == wider
    meta = pq.read_schema(part).metadata
    assert meta[FOOTER_SCHEMA_VERSION] == b"2" and _footer_sources(part) == set(expected)
    data = pq.read_table(part)
    assert sorted(data["v"].to_pylist()) == [float(i) for i in range(300)]
    assert data["extra"].null_count == 300


def _sha(name: str) -> str:
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()


def test_a_part_removed_by_hand_is_left_out_and_the_rest_is_compacted(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 2}, output={"flush_s": 0})
    expected = _drop_in_batches(folder, batches=3, per=4)
    parts = folder.parts("records")
    assert len(parts) >= 3
    gone = parts[0]
    lost = _footer_sources(gone)
    gone.unlink()

    result = folder.ingest("compact")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{gone} is in the ledger but not on disk" in result.stderr
    (merged,) = folder.parts("records")
    assert _footer_sources(merged) == set(expected) - lost
    assert folder.rows_per_file() == {k: v for k, v in expected.items() if k not in lost}
