"""DuckDB's `delta_scan`, from the test process: the virtualenv it runs in, the filters
it is given, and the run of `duckdb_delta_scan.py` there.

The dev environment's DuckDB cannot install its `delta` extension (extensions.duckdb.org
is out of reach), but PyPI has duckdb 1.5.5 and `duckdb-extension-delta` 1.5.5, a wheel
that ships the extension, loadable by path. They conflict with the dev duckdb, so they
live in a virtualenv of their own, built by `build_venv`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# pytz lets a hand-run query fetch TIMESTAMPTZ values (features.ingested_at) into Python.
PACKAGES = ["duckdb==1.5.5", "duckdb-extension-delta==1.5.5", "pytz"]
EXTENSION = "duckdb_extension_delta/extensions/v1.5.5/delta.duckdb_extension"
SCRIPT = Path(__file__).with_name("duckdb_delta_scan.py")
# pip's words for a network it cannot reach.
OFFLINE = (
    "NewConnectionError", "Failed to establish a new connection",
    "Temporary failure in name resolution", "Name or service not known",
    "Network is unreachable", "ConnectTimeoutError", "ReadTimeoutError", "ProxyError",
)
# The DuckDB type of each Arrow type our tables hold (SPEC: int64, float64, string, bool,
# date, timestamp), for the filters' constants.
DUCKDB_TYPES = {
    pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN", pa.date32(): "DATE", pa.timestamp("us"): "TIMESTAMP",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}
COMPARE = {"=": pc.equal, "<=": pc.less_equal, ">=": pc.greater_equal}


class Offline(Exception):
    """Raised when pip cannot reach PyPI to build the virtualenv."""


@dataclass(frozen=True)
class DuckDBDelta:
    """A virtualenv's Python with duckdb 1.5.5, and the delta extension its wheel ships."""

    python: Path
    extension: Path

    def run(self, jobs: dict[str, Any], folder: Path) -> dict[str, Any]:
        """Runs the scans and filters of `jobs` (see `duckdb_delta_scan.py`) in the venv."""
        path = folder / "jobs.json"
        path.write_text(json.dumps(jobs))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        done = subprocess.run(
            [str(self.python), str(SCRIPT), str(self.extension), str(path)],
            capture_output=True, text=True, timeout=300, cwd=folder, env=env,
        )
        assert done.returncode == 0, done.stderr
        said: dict[str, Any] = json.loads(done.stdout)
        return said


def build_venv(venv: Path) -> DuckDBDelta:
    """A new virtualenv with PACKAGES from PyPI. Raises Offline when pip cannot reach
    it, AssertionError when the install fails for any other reason."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                   capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--retries", "1", "--timeout", "30",
         *PACKAGES],
        capture_output=True, text=True, timeout=540,
    )
    said = pip.stdout + pip.stderr
    if pip.returncode != 0:
        network = [line for line in said.splitlines() if any(w in line for w in OFFLINE)]
        if network:
            raise Offline(network[0].strip()[:300])
        raise AssertionError(f"installing {' '.join(PACKAGES)} failed:\n{said}")
    (extension,) = venv.glob(f"lib/python*/site-packages/{EXTENSION}")
    return DuckDBDelta(python, extension)


@dataclass(frozen=True)
class Filter:
    """`column op value` on a table, with `value` a part's own minimum or maximum."""

    table: str
    column: str
    op: str
    value: pa.Scalar

    def job(self, output: Path) -> dict[str, object]:
        value = self.value.as_py()
        if hasattr(value, "isoformat"):  # dates and timestamps travel as ISO 8601
            value = value.isoformat()
        return {"table": str(output / self.table), "column": self.column, "op": self.op,
                "value": value, "type": DUCKDB_TYPES[self.value.type]}

    def rows(self, glob: pa.Table) -> int:
        """The rows of the glob reading that match."""
        match = COMPARE[self.op](glob[self.column], self.value)
        return int(pc.sum(pc.fill_null(match, False)).as_py() or 0)


def filters(table: str, parts: list[Path]) -> list[Filter]:
    """For each part and column (`ingest_date` too): `= min`, `<= min`, `= max` and
    `>= max` of the part's own values, the bounds a wrong statistic would cut off."""
    found: dict[tuple[str, str, object], Filter] = {}
    for part in parts:
        rows = pq.read_table(part)
        date = part.parent.name.split("=", 1)[1]
        rows = rows.append_column("ingest_date", pa.array([date] * rows.num_rows, pa.string()))
        for column in rows.column_names:
            assert rows.schema.field(column).type in DUCKDB_TYPES, column
            bounds = pc.min_max(rows[column])
            if not bounds["min"].is_valid:
                continue  # all null
            for op, key in (("=", "min"), ("<=", "min"), ("=", "max"), (">=", "max")):
                value = bounds[key]
                found[(column, op, value.as_py())] = Filter(table, column, op, value)
    return list(found.values())
