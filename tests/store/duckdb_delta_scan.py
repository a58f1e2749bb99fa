"""Read Delta tables with DuckDB's `delta_scan`: whole snapshots into Parquet files, and
row counts under filters that the scan prunes files with, by the log's statistics.

Runs as a script in a separate virtualenv (duckdb 1.5.5 and its `delta` extension from
PyPI), never in the test process, whose duckdb is another version. Usage:

    python duckdb_delta_scan.py EXTENSION JOBS

EXTENSION: the path of `delta.duckdb_extension`. JOBS: a JSON file, one object with
- "scans": [{"table": folder, "version": int or null (the latest), "dest": Parquet file}];
- "filters": [{"table", "column", "op" (=, <=, >=), "value", "type" (a DuckDB type)}];
- "sql": [statements], run as they are, in the JOBS file's folder.

Prints one JSON object: "scans", each scan's error (null when it read the table);
"filters", each filter's row count; "skipped", the files the filters' pushdown skipped;
"sql", each statement's rows.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import duckdb

OPS = {"=", "<=", ">="}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scan(con: duckdb.DuckDBPyConnection, job: dict[str, Any]) -> str | None:
    """Writes the table's snapshot to job["dest"]; returns the error, if any."""
    at = "" if job["version"] is None else f", version => {int(job['version'])}"
    try:
        # COPY keeps DuckDB's types in the Parquet file (TIMESTAMP, TIMESTAMPTZ, BIGINT,
        # DOUBLE, VARCHAR), so the test compares values exactly, not through JSON text.
        con.execute(
            f"COPY (SELECT * FROM delta_scan({_literal(job['table'])}{at}))"
            f" TO {_literal(job['dest'])} (FORMAT parquet)"
        )
    except duckdb.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def count(con: duckdb.DuckDBPyConnection, job: dict[str, Any]) -> int:
    """Rows where `column op value`: a constant the scan pushes down to the log's
    statistics, so a wrong minimum or maximum skips a file that holds matching rows."""
    if job["op"] not in OPS:
        raise ValueError(f"unknown op {job['op']!r}")
    found = con.execute(
        f"SELECT count(*) FROM delta_scan({_literal(job['table'])})"
        f" WHERE {_ident(job['column'])} {job['op']} CAST(? AS {job['type']})",
        [job["value"]],
    ).fetchone()
    assert found is not None
    return int(found[0])


def main(extension: str, jobs: str) -> None:
    with open(jobs) as f:
        todo = json.load(f)
    con = duckdb.connect()
    # The extension comes from the wheel, never from extensions.duckdb.org.
    con.execute("SET autoinstall_known_extensions = false")
    con.execute(f"LOAD {_literal(extension)}")
    scans = [scan(con, job) for job in todo["scans"]]
    # The extension logs each pushdown's files before and after pruning.
    con.execute("SET enable_logging = true")
    con.execute("SET logging_level = 'DEBUG'")
    filters = [count(con, job) for job in todo["filters"]]
    skipped = con.execute(
        "SELECT coalesce(sum(files_before - files_after), 0) FROM delta_filter_pushdown_log()"
    ).fetchone()
    assert skipped is not None
    sql = [[list(row) for row in con.execute(statement).fetchall()]
           for statement in todo.get("sql", [])]
    print(json.dumps({"scans": scans, "filters": filters, "skipped": int(skipped[0]),
                      "sql": sql}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
