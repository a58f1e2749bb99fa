"""The exactly-once invariants, checked on a real output folder after any ordeal."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.shared import SHM_DIR, prefix_for

from .conftest import Folder
from .delta_read import read_delta


def check_exactly_once(
    folder: Folder, expected: dict[str, int], bad: set[str], duplicates: set[str] | None = None
) -> None:
    """`expected`: rows per good input; `bad`: inputs that must be quarantined;
    `duplicates`: inputs with the same bytes as a good one, recorded as duplicates."""
    # Every row of every good input, exactly once.
    counts = dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1"))
    assert counts == expected, _diff(counts, expected)
    per_version = folder.query(
        "SELECT source_file, count(DISTINCT source_sha256) AS n FROM records"
        " GROUP BY 1 HAVING n > 1"
    )
    assert not per_version, f"inputs committed twice: {per_version[:5]}"

    # Every (source_file, source_column, window) exactly once.
    twice = folder.query(
        'SELECT source_file, source_column, "window", count(*) FROM features'
        ' GROUP BY ALL HAVING count(*) > 1'
    )
    assert not twice, f"duplicate feature rows: {twice[:5]}"
    featured = {f for (f,) in folder.query("SELECT DISTINCT source_file FROM features")}
    assert featured == set(expected)

    # Every input in exactly one state.
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        rows = db.execute("SELECT path, state FROM files").fetchall()
        pending = db.execute("SELECT count(*) FROM parts WHERE state = 'pending'").fetchone()[0]
    states: dict[str, list[str]] = {}
    for path, state in rows:
        states.setdefault(path, []).append(state)
    assert {p for p, s in states.items() if s == ["ingested"]} == set(expected)
    assert {p for p, s in states.items() if s == ["quarantined"]} == bad
    duplicates = duplicates or set()
    assert {p for p, s in states.items() if s == ["duplicate"]} == duplicates
    assert len(states) == len(expected) + len(bad) + len(duplicates), (
        "an input has more than one state"
    )
    assert pending == 0

    check_one_schema(folder.output)

    # No temp or footer-less Parquet where readers look.
    for table in ("records", "features"):
        for path in (folder.output / table).rglob("*"):
            if path.is_file() and "_delta_log" not in path.parts:
                assert path.suffix == ".parquet", f"stray file {path}"
                pq.read_metadata(path)
    assert not list((folder.output / "_ingest" / "tmp").iterdir())
    assert not list((folder.output / "_ingest").glob("swap-*")), "a compaction left its stage"

    # The ledger's catalog holds exactly the part files on disk, and each input's parts.
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        catalog = {p for (p,) in db.execute(
            "SELECT path FROM part_files WHERE state = 'committed'"
            " AND table_name IN ('records', 'features')")}
        unplaced = db.execute(
            "SELECT f.path FROM files f WHERE f.state = 'ingested' AND f.rows > 0 AND NOT EXISTS"
            " (SELECT 1 FROM part_holds h JOIN part_files p ON p.id = h.part"
            "  WHERE h.input = f.id AND p.state = 'committed' AND p.table_name = 'records')"
        ).fetchall()
    on_disk = {p.relative_to(folder.output).as_posix()
               for t in ("records", "features") for p in folder.parts(t)}
    assert catalog == on_disk, (sorted(catalog - on_disk)[:3], sorted(on_disk - catalog)[:3])
    assert not unplaced, f"inputs the ledger cannot place in a records part: {unplaced[:5]}"
    assert not list(SHM_DIR.glob(prefix_for(folder.output) + "*")), "shared memory left behind"

    # `ingest status` agrees with the data.
    status = folder.ingest("status", "--json")
    assert status.returncode == 0, status.stderr
    reported = json.loads(status.stdout)
    assert reported["counts"]["ingested"] == len(expected)
    assert reported["counts"]["quarantined"] == len(bad)
    assert reported["backlog"] == 0


def check_one_schema(output: Path) -> dict[str, pa.Schema]:
    """Every part of every table has the identical Arrow schema; returns each table's."""
    found: dict[str, pa.Schema] = {}
    for table in sorted(output.iterdir()) if output.is_dir() else []:
        if not table.is_dir() or table.name.startswith(("_", ".")):
            continue
        for part in sorted(table.glob("ingest_date=*/*.parquet")):
            schema = pq.read_schema(part).remove_metadata()
            first = found.setdefault(table.name, schema)
            assert schema.equals(first), (
                f"{part.relative_to(output)} has another schema than the rest of"
                f" {table.name}:\n{schema}\nvs\n{first}"
            )
    return found


def _diff(got: dict[str, int], want: dict[str, int]) -> str:
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    wrong = sorted((k, got[k], want[k]) for k in set(got) & set(want) if got[k] != want[k])[:5]
    return f"missing {missing}, unexpected {extra}, wrong counts (file, got, want) {wrong}"


def check_delta(folder: Folder) -> dict[str, int]:
    """With `format = "delta"`: each table's Delta snapshot holds exactly the ledger's
    committed part files, and its rows are the glob reading's; returns each txn version."""
    from deltalake import DeltaTable

    versions = {}
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        ingested = dict(db.execute("SELECT path, rows FROM files WHERE state = 'ingested'"))
    for table in ("records", "features"):
        log = DeltaTable(str(folder.output / table))
        files = {f"{table}/{p}" for p in
                 pa.table(log.get_add_actions(flatten=True)).column("path").to_pylist()}
        on_disk = {p.relative_to(folder.output).as_posix() for p in folder.parts(table)}
        assert files == on_disk, (sorted(files - on_disk)[:3], sorted(on_disk - files)[:3])
        snapshot = read_delta(folder.output / table, columns=["source_file"])
        rows = snapshot.column("source_file").to_pylist()
        counts: dict[str, int] = {}
        for name in rows:
            counts[name] = counts.get(name, 0) + 1
        glob = dict(folder.query(f"SELECT source_file, count(*) FROM {table} GROUP BY 1"))
        assert counts == glob, _diff(counts, glob)
        if table == "records":
            assert counts == {p: n for p, n in ingested.items() if n}, _diff(counts, ingested)
        versions[table] = log.transaction_version("ingest") or 0
    return versions
