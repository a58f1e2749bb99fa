"""DuckDB's `delta_scan` reads every Delta table of a realistic output with the columns,
rows and values of the plain glob reading: the samples under the repo's routing, a part
of two row groups, a column widened from int to float, `ingest compact`, an older
version, and filters that prune files by the log's statistics (bounds taken from one
row group only would lose the other's rows).

Slow, so it runs in `make test-slow`: a session fixture builds a virtualenv with duckdb
1.5.5 and its `delta` extension from PyPI (`duckdb_delta.py`), and the scans run there
(`duckdb_delta_scan.py`). The tests skip only when PyPI cannot be reached.

`delta_scan` types `ingest_date` VARCHAR, as the log declares the partition column a
string; DuckDB's `read_parquet(..., hive_partitioning = true)` casts it to DATE. The glob
reading here takes it as a string, so the two schemas must be identical.

DuckDB 1.5.5 prunes files by the statistics of numbers, strings and booleans, not of
timestamps (not even on a table deltalake writes itself): its timestamp filters read every
file, so they check the rows but not our timestamp statistics.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

deltalake = pytest.importorskip("deltalake")

from ingest.partfile import ROW_GROUP_ROWS  # noqa: E402

from ..conftest import ROOT, SAMPLE_DATA, Folder  # noqa: E402
from ..invariants import check_one_schema  # noqa: E402
from .duckdb_delta import PACKAGES, DuckDBDelta, Filter, Offline, build_venv, filters  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TABLES = {"records", "sensors", "events", "conveyor", "spectra", "bulk", "features"}
LATE = "late.csv"
# More rows than a part's row group holds, so the bulk part has two; the second holds a
# note too long for the footer's statistics.
BULK_ROWS = ROW_GROUP_ROWS + 3

Key = tuple[str, int | None]  # (table, version); None: the latest


@pytest.fixture(scope="session")
def duckdb_delta(tmp_path_factory: pytest.TempPathFactory) -> DuckDBDelta:
    try:
        return build_venv(tmp_path_factory.mktemp("duckdb-delta") / "venv")
    except Offline as exc:
        pytest.skip(f"PyPI is out of reach, so {' '.join(PACKAGES)} cannot be installed: {exc}")


def _write_bulk(path: Path) -> None:
    lines = ["reading,note", *(f"{i % 1000 / 10},n{i % 7}" for i in range(BULK_ROWS - 2)),
             "1000.5,zebra", "1000.25," + "z" * 5000]
    path.write_text("\n".join(lines) + "\n")


def _ingest_the_mix(folder: Folder) -> None:
    """The samples under the repo's config with `format = "delta"`, a part of two row
    groups in a table of its own, a column that widens from int to float, `ingest
    compact`, and a last file after the compaction."""
    config = (ROOT / "config.toml").read_text()
    assert "\n[output]\n" in config
    config = config.replace("\n[output]\n", '\n[output]\nformat = "delta"\n')
    folder.config.write_text(config + '\n[tables.bulk]\npatterns = ["bulk_*.csv"]\n')
    for sample in SAMPLE_DATA.iterdir():
        shutil.copy(sample, folder.drop / sample.name)
    _write_bulk(folder.drop / "bulk_1.csv")
    (folder.drop / "drift_int.csv").write_text(
        "timestamp,level,batch\n2026-11-05T00:00:00,1,a\n2026-11-05T00:00:01,2,b\n"
        "2026-11-05T00:00:02,3,c\n")
    first = folder.ingest("once")
    assert first.returncode == 3, first.stderr  # the malformed sample is quarantined
    (bulk,) = folder.parts("bulk")
    assert pq.read_metadata(bulk).num_row_groups == 2
    (folder.drop / "drift_float.csv").write_text(
        "timestamp,level,batch\n2026-11-06T00:00:00,2.5,d\n2026-11-06T00:00:01,,e\n"
        "2026-11-06T00:00:02,4.0,f\n")
    widened = folder.ingest("once")
    assert widened.returncode == 0, widened.stderr
    assert "'level' widened from int64 to double" in widened.stderr
    compacted = folder.ingest("compact")
    assert compacted.returncode == 0, compacted.stderr
    (folder.drop / LATE).write_text("timestamp,level,batch\n2026-11-07T00:00:00,7.25,g\n")
    late = folder.ingest("once")
    assert late.returncode == 0, late.stderr


def _log(folder: Folder, table: str) -> dict[int, list[dict[str, Any]]]:
    """The actions of each version of the table's log."""
    return {int(entry.stem): [json.loads(line) for line in entry.read_text().splitlines()]
            for entry in sorted((folder.output / table / "_delta_log").glob("*.json"))}


def _compactions(log: dict[int, list[dict[str, Any]]]) -> list[int]:
    """The versions that remove and add parts with no data change."""
    found = []
    for version, actions in log.items():
        changes = [a[k]["dataChange"] for a in actions for k in ("add", "remove") if k in a]
        if any("remove" in a for a in actions) and not any(changes):
            found.append(version)
    return found


def _readme_sql() -> list[str]:
    """The SELECTs of the README's `delta_scan` example (its INSTALL needs the network)."""
    section = (ROOT / "README.md").read_text().split("### Delta tables", 1)[1]
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    return [line.split(";", 1)[0] for line in block.splitlines() if line.startswith("SELECT")]


def _glob(folder: Folder, table: str) -> pa.Table:
    """The plain reading: pyarrow over `<table>/ingest_date=*/*.parquet`."""
    partitioning = ds.partitioning(pa.schema([("ingest_date", pa.string())]), flavor="hive")
    return ds.dataset([str(p) for p in folder.parts(table)], format="parquet",
                      partitioning=partitioning,
                      partition_base_dir=str(folder.output / table)).to_table()


@dataclass(frozen=True)
class Scanned:
    """The mixed output, its logs, and what `delta_scan` read of it."""

    folder: Folder
    schemas: dict[str, pa.Schema]
    logs: dict[str, dict[int, list[dict[str, Any]]]]
    scans: dict[Key, Path]
    errors: dict[Key, str | None]
    filters: list[Filter]
    counts: list[int]
    skipped: int
    readme: list[list[list[Any]]]  # the rows of each of _readme_sql()

    def read(self, table: str, version: int | None = None) -> pa.Table:
        error = self.errors[(table, version)]
        assert error is None, error
        return pq.read_table(self.scans[(table, version)])

    def compactions(self, table: str) -> list[int]:
        return _compactions(self.logs[table])


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, duckdb_delta: DuckDBDelta) -> Scanned:
    """Ingests the mix, then runs every scan and filter in the venv, in one process."""
    folder = Folder(tmp_path_factory.mktemp("mix"))
    folder.drop.mkdir()
    _ingest_the_mix(folder)
    schemas = check_one_schema(folder.output)
    assert set(schemas) == TABLES
    logs = {t: _log(folder, t) for t in TABLES}
    out = folder.root / "scans"
    out.mkdir()
    scans: dict[Key, Path] = {(t, None): out / f"{t}.parquet" for t in TABLES}
    # The version before the last file's commit, in the two tables it went to.
    scans |= {(t, max(logs[t]) - 1): out / f"{t}-before-late.parquet"
              for t in ("records", "features")}
    # The version before each table's last compaction.
    compacted = {t: found[-1] for t in TABLES if (found := _compactions(logs[t]))}
    scans |= {(t, v - 1): out / f"{t}-before-compaction.parquet" for t, v in compacted.items()}
    wanted = [f for t in sorted(TABLES) for f in filters(t, folder.parts(t))]
    said = duckdb_delta.run({
        "scans": [{"table": str(folder.output / t), "version": v, "dest": str(dest)}
                  for (t, v), dest in scans.items()],
        "filters": [f.job(folder.output) for f in wanted],
        "sql": _readme_sql(),
    }, folder.root)
    return Scanned(folder, schemas, logs, scans, dict(zip(scans, said["scans"], strict=True)),
                   wanted, said["filters"], said["skipped"], said["sql"])


def _assert_same_rows(got: pa.Table, want: pa.Table, what: str) -> None:
    """Same columns (names, order, types), and the same rows with the same values."""
    assert got.schema.equals(want.schema), f"{what}:\n{got.schema}\nvs the glob's\n{want.schema}"
    assert got.num_rows == want.num_rows, what
    order = [(name, "ascending") for name in want.column_names]
    got, want = got.sort_by(order), want.sort_by(order)
    for name in want.column_names:
        assert got[name].equals(want[name]), f"{what}: column {name} differs"


def test_the_logs_hold_a_widening_and_a_compaction(scanned: Scanned) -> None:
    records = scanned.logs["records"]
    widenings = [v for v, actions in records.items()
                 if v > 0 and any("metaData" in a for a in actions)]
    assert widenings, "no schema change in the records log"
    assert any("remove" in a for a in records[widenings[-1]])
    assert any(scanned.compactions(t) for t in TABLES), "ingest compact made no Delta commit"


def test_every_table_reads_with_the_columns_rows_and_values_of_the_glob(
    scanned: Scanned,
) -> None:
    for table, schema in scanned.schemas.items():
        glob = _glob(scanned.folder, table)
        assert glob.schema.equals(schema.append(pa.field("ingest_date", pa.string())))
        _assert_same_rows(scanned.read(table), glob, table)


def test_the_version_before_the_last_commit_lacks_just_its_rows(scanned: Scanned) -> None:
    for table in ("records", "features"):
        glob = _glob(scanned.folder, table)
        before = glob.filter(pc.field("source_file") != LATE)
        assert 0 < before.num_rows < glob.num_rows
        version = max(scanned.logs[table]) - 1
        _assert_same_rows(scanned.read(table, version), before, f"{table} as of {version}")


def test_a_version_before_a_compaction_fails_on_a_part_it_removed(scanned: Scanned) -> None:
    # The README: time travel reaches back to the last compaction of a partition.
    for table in TABLES:
        if found := scanned.compactions(table):
            error = scanned.errors[(table, found[-1] - 1)]
            assert error is not None and "No such file or directory" in error, error


def test_filters_pruned_by_the_log_statistics_match_the_rows_of_the_glob(
    scanned: Scanned,
) -> None:
    globs = {table: _glob(scanned.folder, table) for table in TABLES}
    wrong = [(f.table, f.column, f.op, str(f.value.as_py())[:40], got, f.rows(globs[f.table]))
             for f, got in zip(scanned.filters, scanned.counts, strict=True)
             if got != f.rows(globs[f.table])]
    assert not wrong, f"(table, column, op, value, delta_scan, glob): {wrong[:5]}"
    assert {f.table for f in scanned.filters} == TABLES
    assert scanned.skipped > 0, "no filter pruned a file: the statistics went unused"


def test_the_glob_reading_holds_every_row_the_ledger_ingested(scanned: Scanned) -> None:
    per_input: Counter[str] = Counter()
    for table in TABLES - {"features"}:
        per_input.update(_glob(scanned.folder, table)["source_file"].to_pylist())
    with sqlite3.connect(scanned.folder.output / "_ingest" / "ledger.sqlite") as db:
        assert per_input == dict(db.execute(
            "SELECT path, rows FROM files WHERE state = 'ingested' AND rows > 0"))


def test_the_readme_delta_scan_example_runs_against_the_output(scanned: Scanned) -> None:
    assert len(scanned.readme) == 2, "the latest snapshot and an older version"
    glob = _glob(scanned.folder, "records")
    assert scanned.readme[0] == [[glob.num_rows]]
    (((older,),),) = scanned.readme[1:]
    assert 0 < older <= glob.num_rows
