"""DuckDB: read_csv (or read_json) over the folder, COPY ... TO Parquet, GROUP BY for the features.

The CSVs are parsed once, straight into the records Parquet; the features are
then aggregated from that Parquet. Measured against parsing into a temporary
table that both read, this is as fast or faster and needs far less memory.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from .common import CHANNELS, cli, input_suffix, records_dir

COLUMNS = {"timestamp": "BIGINT", "device": "VARCHAR", **dict.fromkeys(CHANNELS, "DOUBLE")}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _aggregates(column: str) -> str:
    c = f'"{column}"'
    named = {
        "count": f"count({c})",
        "null_count": f"count(*) - count({c})",
        "mean": f"avg({c})",
        "std": f"stddev_samp({c})",
        "min": f"min({c})",
        "max": f"max({c})",
        # One quantile_cont over a list sorts once for all three quantiles.
        "q": f"quantile_cont({c}, [0.05, 0.5, 0.95])",
        "rms": f"sqrt(avg({c} * {c}))",
    }
    return ", ".join(f'{expr} AS "{column}/{name}"' for name, expr in named.items())


def _long(column: str) -> str:
    def c(name: str) -> str:
        return f'"{column}/{name}"'

    return f"""
        SELECT source_file, {_quote(column)} AS source_column,
               {c("count")} AS count, {c("null_count")} AS null_count,
               {c("mean")} AS mean, {c("std")} AS std, {c("min")} AS min, {c("max")} AS max,
               {c("q")}[1] AS p05, {c("q")}[2] AS p50, {c("q")}[3] AS p95, {c("rms")} AS rms
        FROM wide"""


def _scan(input_dir: Path) -> str:
    """The table function that reads every input of the folder, with its file name."""
    columns = "{" + ", ".join(f"{_quote(k)}: {_quote(v)}" for k, v in COLUMNS.items()) + "}"
    suffix = input_suffix(input_dir)
    pattern = _quote(str(input_dir / f"*{suffix}"))
    if suffix == ".jsonl":
        return (
            f"read_json({pattern}, format = 'newline_delimited', columns = {columns}, "
            "filename = true)"
        )
    return f"read_csv({pattern}, header = true, columns = {columns}, filename = true)"


def run(input_dir: Path, output_dir: Path) -> None:
    """DuckDB read_csv or read_json, COPY TO Parquet, GROUP BY."""
    records = records_dir(output_dir)
    features = output_dir / "features"
    features.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        f"""COPY (
                SELECT * EXCLUDE (filename), filename AS source_file
                FROM {_scan(input_dir)}
            ) TO {_quote(str(records))}
            (FORMAT parquet, COMPRESSION zstd, PER_THREAD_OUTPUT true, OVERWRITE_OR_IGNORE true)"""
    )
    con.execute(f"CREATE VIEW rows AS SELECT * FROM read_parquet({_quote(str(records / '*'))})")
    # All channels in one GROUP BY (one scan), reshaped to a row per channel after:
    # measured faster than one GROUP BY per channel.
    aggregates = ", ".join(_aggregates(c) for c in CHANNELS)
    con.execute(f"CREATE TEMP TABLE wide AS SELECT source_file, {aggregates} FROM rows GROUP BY 1")
    union = " UNION ALL ".join(_long(c) for c in CHANNELS)
    con.execute(
        f"COPY ({union}) TO {_quote(str(features / 'features.parquet'))} "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
    con.close()


if __name__ == "__main__":
    cli(run)
