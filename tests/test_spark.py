"""Spark reads every table with no options, as it is: `spark.read.parquet(folder)`.

Slow (a JVM starts), so it runs in `make test-slow`, which installs the `spark` extra.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import shutil
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from .conftest import ROOT, SAMPLE_DATA, Folder
from .invariants import check_one_schema

pytestmark = pytest.mark.slow


def _session() -> Any:
    """A local Spark on one core, in UTC (a JVM starts: seconds)."""
    os.environ.setdefault("TZ", "UTC")
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[1]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def test_spark_reads_every_table_of_the_samples_as_pyarrow_does(folder: Folder) -> None:
    shutil.copy(ROOT / "config.toml", folder.config)
    for sample in SAMPLE_DATA.iterdir():
        shutil.copy(sample, folder.drop / sample.name)
    assert folder.ingest("once").returncode == 3  # the malformed sample is quarantined
    tables = check_one_schema(folder.output)

    spark = _session()
    try:
        for name, schema in tables.items():
            frame = spark.read.parquet(str(folder.output / name)).drop("ingest_date")
            assert sorted(frame.columns) == sorted(schema.names), name
            arrow = ds.dataset(folder.output / name).to_table()
            assert frame.count() == arrow.num_rows, name
            for column in schema.names:
                non_null = frame.where(frame[column].isNotNull()).count()
                assert non_null == len(arrow[column]) - arrow[column].null_count, (name, column)
        sensors = spark.read.parquet(str(folder.output / "sensors"))
        got = sorted(r[0] for r in sensors.select("temperature").collect() if r[0] is not None)
        want = sorted(v for v in ds.dataset(folder.output / "sensors").to_table()[
            "temperature"
        ].to_pylist() if v is not None)
        assert got == want
    finally:
        spark.stop()


def _plain(value: object) -> object:
    """A value as both Spark and pyarrow give it: UTC timestamps without their zone, a
    map as a dict."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_spark_reads_every_type_a_file_can_bring_with_the_values_pyarrow_reads(
    folder: Folder,
) -> None:
    """Times of day, nanoseconds, durations, unsigned and small ints, decimals, nested
    columns, names that differ only in case, a widening: Spark opens the table with no
    options and reads every value pyarrow does."""
    (folder.drop / "a.csv").write_bytes(b"id,Temp,temp,clock\n1,10,11,12:30:00\n")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    pq.write_table(pa.table({
        "ID": pa.array([2], pa.uint32()),
        "TEMP": pa.array([20.5], pa.float16()),
        "clock": pa.array([1], pa.time64("ns")),
        "ts": pa.array([1_001], pa.timestamp("ns", tz="Europe/Paris")),
        "took": pa.array([1_500], pa.duration("ns")),
        "price": pa.array([decimal.Decimal("1.10")], pa.decimal128(10, 2)),
        "tags": pa.array([["x", "y"]], pa.list_(pa.string())),
        "where": pa.array([{"lat": 1.5, "lon": 2.5}]),
        "extra": pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())),
        "small": pa.array([-3], pa.int8()),
    }), folder.drop / "b.parquet")
    done = folder.ingest("once")  # widens the table: new columns, int to float
    assert done.returncode == 0, done.stderr
    schema = check_one_schema(folder.output)["records"]

    spark = _session()
    try:
        frame = spark.read.parquet(str(folder.output / "records")).drop("ingest_date")
        assert frame.columns == schema.names
        got = sorted(
            (tuple(_plain(v) for v in row.asDict(recursive=True).values())
             for row in frame.collect()), key=lambda r: r[0],
        )
    finally:
        spark.stop()
    arrow = ds.dataset(folder.output / "records").to_table().to_pylist()
    want = sorted((tuple(_plain(v) for v in r.values()) for r in arrow), key=lambda r: r[0])
    assert got == want
    assert [r[:4] for r in want] == [(1, 10.0, 11, "12:30:00"), (2, 20.5, None,
                                                                  "00:00:00.000000001")]


def test_spark_reads_nested_columns_widened_from_empty_ones(folder: Folder) -> None:
    (folder.drop / "a.jsonl").write_bytes(b'{"id": 1, "tags": [], "m": {"x": null}, "e": {}}\n')
    assert folder.ingest("once").returncode == 0
    (folder.drop / "b.jsonl").write_bytes(
        b'{"id": 2, "tags": [1.5], "m": {"y": "b", "x": 3}, "e": {"a": 1}}\n'
    )
    assert folder.ingest("once").returncode == 0
    spark = _session()
    try:
        rows = spark.read.parquet(str(folder.output / "records")).select(
            "id", "tags", "m", "e").orderBy("id").collect()
        got = [tuple(_plain(v) for v in r.asDict(recursive=True).values()) for r in rows]
    finally:
        spark.stop()
    assert got == [
        (1, [], {"x": None, "y": None}, None), (2, [1.5], {"x": 3, "y": "b"}, {"a": 1}),
    ]
