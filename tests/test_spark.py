"""Spark reads every table with no options, as it is: `spark.read.parquet(folder)`.

Slow (a JVM starts), so it runs in `make test-slow`, which installs the `spark` extra.
"""

from __future__ import annotations

import os
import shutil

import pyarrow.dataset as ds
import pytest

from .conftest import ROOT, SAMPLE_DATA, Folder
from .invariants import check_one_schema

pytestmark = pytest.mark.slow


def test_spark_reads_every_table_of_the_samples_as_pyarrow_does(folder: Folder) -> None:
    os.environ.setdefault("TZ", "UTC")
    from pyspark.sql import SparkSession

    shutil.copy(ROOT / "config.toml", folder.config)
    for sample in SAMPLE_DATA.iterdir():
        shutil.copy(sample, folder.drop / sample.name)
    assert folder.ingest("once").returncode == 3  # the malformed sample is quarantined
    tables = check_one_schema(folder.output)

    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
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
