"""Files larger than memory_mb: read in blocks, committed as one, with exact features.

With memory_mb = 1 a file over 256 KB is streamed in 64 KB blocks, so files of a
few MB exercise dozens of blocks, quoted newlines across block edges, and several
quantile passes, in well under a second each.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.json as pa_json
import pytest

from ingest.compute.features import summary

from .conftest import Folder, Service, wait_for
from .faults.test_crash_points import _run
from .invariants import check_exactly_once

STREAMING = {"pipeline": {"workers": 2, "memory_mb": 1}, "watch": {"settle_ms": 0}}


def big_csv(path: Path, rows: int, seed: int = 0, bad_line: int | None = None) -> None:
    """Sensor rows with a quoted multi-line note now and then, empty cells, negative
    integers with many ties, and, if asked, one unparseable value at `bad_line`."""
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(100.0, 5.0, rows), 4)
    b = rng.integers(-5, 5, rows)
    c = np.round(rng.normal(0.0, 1.0, rows), 6)
    lines = ["timestamp,device,note,ch0,ch1,ch2\n"]
    line = 2
    for i in range(rows):
        note = '"two\nlines, ""quoted"""' if i % 997 == 0 else "plain"
        ch0 = "oops" if line == bad_line else repr(float(a[i]))
        ch2 = "" if i % 50 == 0 else repr(float(c[i]))
        lines.append(f"{1_700_000_000_000 + 10 * i},dev-{seed},{note},{ch0},{b[i]},{ch2}\n")
        line += 2 if i % 997 == 0 else 1
    path.write_text("".join(lines))


def records_of(folder: Folder) -> pa.Table:
    return ds.dataset(folder.output / "records", format="parquet").to_table()


def features_of(folder: Folder) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = (
        ds.dataset(folder.output / "features", format="parquet").to_table().to_pylist()
    )
    return rows


def assert_features_exact(features: list[dict[str, object]], whole: pa.Table) -> None:
    """Each column's features equal `summary` of the whole column read at once."""
    assert {f["source_column"] for f in features} == {"ch0", "ch1", "ch2"}
    for row in features:
        values = whole[str(row["source_column"])].to_numpy(zero_copy_only=False).astype(float)
        for name, want in summary(values).items():
            got = row[name]
            if name in ("count", "null_count", "min", "max", "p05", "p50", "p95"):
                assert got == want, (row["source_column"], name, got, want)
            else:
                assert got == pytest.approx(want, rel=1e-12), (row["source_column"], name)


def test_a_csv_larger_than_memory_mb_is_ingested_in_blocks_exactly(folder: Folder) -> None:
    folder.write_config(**STREAMING)
    path = folder.drop / "big.csv"
    big_csv(path, rows=60_000)
    assert path.stat().st_size > 2 << 20
    whole = pa_csv.read_csv(path)

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "ingested big.csv" in result.stderr and "rows=60000" in result.stderr
    records = records_of(folder)
    parts = folder.parts("records")
    assert len(parts) >= 10, "the file should have been read in many blocks"
    assert len({p.name.rsplit("-", 1)[0] for p in parts}) == 1, "one commit for the whole file"
    got = records.sort_by("timestamp")
    for name in whole.column_names:
        assert got[name].combine_chunks().equals(whole[name].combine_chunks()), name
    assert set(records["source_file"].to_pylist()) == {"big.csv"}
    assert_features_exact(features_of(folder), whole)
    assert not list((folder.output / "_ingest" / "tmp").iterdir()), "staged temps left behind"
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        assert db.execute("SELECT path, rows, state FROM files").fetchall() == [
            ("big.csv", 60_000, "ingested")
        ]


def _readings(path: Path, rows: int, seed: int) -> np.ndarray:
    """A CSV of `rows` readings around 100 (and a timestamp); returns the readings."""
    values = np.round(np.random.default_rng(seed).normal(100.0, 5.0, rows), 3)
    text = "timestamp,v\n" + "".join(
        f"{1_700_000_000_000 + i},{v!r}\n" for i, v in enumerate(values.tolist())
    )
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), compresslevel=1))
    else:
        path.write_text(text)
    return values


def _assert_quantiles_exact(folder: Folder, values: np.ndarray) -> None:
    (row,) = features_of(folder)
    for name, want in summary(values).items():
        if name in ("count", "min", "max", "p05", "p50", "p95"):
            assert row[name] == want, (name, row[name], want)


# 400,000 readings around 100: the bucket of a first digit holds far more of them than a
# pass may collect (65,536 values at memory_mb = 16), so the digits alone take two passes
# over the staged blocks.
READINGS = {"pipeline": {"workers": 2, "memory_mb": 16}, "watch": {"settle_ms": 0}}


def test_readings_too_many_to_collect_find_their_quantiles_as_the_blocks_are_read(
    folder: Folder,
) -> None:
    """Lines read from all over the file, before its first block, place a window around
    each quantile; every block counts its values there: no pass over the staged blocks."""
    folder.write_config(**READINGS)
    values = _readings(folder.drop / "readings.csv", 400_000, seed=11)

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "quantiles exact as they were read" in result.stderr, result.stderr
    _assert_quantiles_exact(folder, values)


def test_gzipd_readings_too_many_to_collect_find_their_quantiles_in_one_pass(
    folder: Folder,
) -> None:
    """A gzip'd file cannot be read at places spread over it: the blocks' own samples place
    the windows that the first pass over the staged blocks collects."""
    folder.write_config(**READINGS)
    values = _readings(folder.drop / "readings.csv.gz", 400_000, seed=12)

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "reading it in blocks" in result.stderr
    assert "quantiles exact after 1 pass over them" in result.stderr, result.stderr
    _assert_quantiles_exact(folder, values)


def test_a_streamed_file_is_known_after_a_ledger_rebuild(folder: Folder) -> None:
    folder.write_config(**STREAMING)
    big_csv(folder.drop / "big.csv", rows=20_000)
    assert folder.ingest("once").returncode == 0
    (folder.output / "_ingest" / "ledger.sqlite").unlink()

    assert folder.ingest("ledger", "rebuild").returncode == 0

    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        assert db.execute("SELECT path, rows FROM files").fetchall() == [("big.csv", 20_000)]


def test_a_streamed_file_has_features_for_its_own_columns_only(folder: Folder) -> None:
    """The table already has a column the file lacks: the file's records read it null in
    every block, and its features have no row for it."""
    folder.write_config(**STREAMING)
    (folder.drop / "a.csv").write_bytes(b"timestamp,ch0,extra\n1,1.5,7\n")
    assert folder.ingest("once").returncode == 0
    big_csv(folder.drop / "big.csv", rows=20_000)
    whole = pa_csv.read_csv(folder.drop / "big.csv")

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert len(folder.parts("records")) >= 3, "read in blocks"
    assert_features_exact([f for f in features_of(folder) if f["source_file"] == "big.csv"],
                          whole)
    assert folder.query(
        "SELECT count(*), count(extra) FROM records WHERE source_file = 'big.csv'"
    ) == [(20_000, 0)]


@pytest.mark.parametrize("name", ["big.csv", "sensor_big.csv"])
def test_a_streamed_files_features_name_the_table_its_rows_went_to(
    folder: Folder, name: str
) -> None:
    folder.write_config(**STREAMING, **{"tables.sensors": {"patterns": ["sensor_*.csv"]}})
    big_csv(folder.drop / name, rows=20_000)
    (folder.drop / "small.csv").write_bytes(b"timestamp,ch0\n1,1.5\n")

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "blocks; quantiles exact" in result.stderr, "read in blocks"
    table = "sensors" if name.startswith("sensor_") else "records"
    assert folder.rows_per_file(table)[name] == 20_000
    assert sorted(folder.query("SELECT DISTINCT source_file, source_table FROM features")) == \
        sorted([(name, table), ("small.csv", "records")])


def test_json_lines_larger_than_memory_mb_are_ingested_in_blocks(folder: Folder) -> None:
    folder.write_config(**STREAMING)
    rng = np.random.default_rng(7)
    path = folder.drop / "big.jsonl"
    with path.open("w") as fh:
        for i in range(30_000):
            row = {"timestamp": i, "ch0": float(rng.normal()), "ch1": int(rng.integers(0, 9)),
                   "ch2": None if i % 7 == 0 else float(rng.normal(5, 2))}
            fh.write(json.dumps(row) + "\n")
    assert path.stat().st_size > 1 << 20
    whole = pa_json.read_json(path)

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert len(folder.parts("records")) >= 5
    assert records_of(folder).num_rows == 30_000
    assert_features_exact(features_of(folder), whole)


@pytest.mark.parametrize("text_at", [1, 59_000])
def test_json_lines_text_among_numbers_in_any_block_is_rescued_as_in_a_whole_file(
    folder: Folder, text_at: int
) -> None:
    """A whole file mixing `1` and `"x"` in a column reads it as numbers, `"x"` rescued.
    Read in blocks, a later block's numbers met a first block's column of text, and a
    later block's text a column of numbers: each was quarantined, its rows lost."""
    folder.write_config(**STREAMING)
    path = folder.drop / "mixed.jsonl"
    with path.open("w") as fh:
        for i in range(60_000):
            fh.write(json.dumps({"i": i, "v": "x" if i == text_at else i % 10}) + "\n")
    assert path.stat().st_size > 1 << 20

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert len(folder.parts("records")) >= 3, "read in blocks"
    assert folder.query(
        "SELECT count(*), count(DISTINCT i), count(v), sum(v) FROM records"
    ) == [(60_000, 60_000, 59_999, sum(i % 10 for i in range(60_000)) - text_at % 10)]
    assert folder.query(
        "SELECT i, _rescued_data FROM records WHERE _rescued_data IS NOT NULL"
    ) == [(text_at, '{"v": "x"}')]


def test_json_lines_a_float_in_a_later_block_widens_a_column_of_integers(
    folder: Folder,
) -> None:
    """It quarantined the file ("Failed to convert JSON to int64"), with no line."""
    folder.write_config(**STREAMING)
    path = folder.drop / "late_float.jsonl"
    with path.open("w") as fh:
        for i in range(60_000):
            fh.write(json.dumps({"i": i, "v": 2.5 if i == 59_000 else i % 10}) + "\n")

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert len(folder.parts("records")) >= 3, "read in blocks"
    assert folder.query("SELECT v FROM records WHERE i = 59000") == [(2.5,)]
    assert folder.query("SELECT count(*), sum(v), count(_rescued_data) FROM records") == [
        (60_000, sum(i % 10 for i in range(60_000)) - 59_000 % 10 + 2.5, 0)
    ]


def test_json_lines_whose_first_block_holds_only_empty_lists_type_them_later(
    folder: Folder,
) -> None:
    """Block 0 reads `[]` as a list of nulls; a later block's `[3]` gives the list its type
    (not "Failed to convert JSON to null")."""
    folder.write_config(**STREAMING)
    path = folder.drop / "tags.jsonl"
    rows = 40_000
    with path.open("w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"timestamp": i, "tags": [] if i < rows // 2 else [i]}) + "\n")
    assert path.stat().st_size > 256 << 10  # streamed

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert len(folder.parts("records")) >= 2
    tags = records_of(folder).sort_by("timestamp")["tags"].to_pylist()
    assert tags == [[] if i < rows // 2 else [i] for i in range(rows)]


def test_features_only_output_streams_without_publishing_the_staged_records(
    folder: Folder,
) -> None:
    folder.write_config(**STREAMING, output={"tables": ["features"]})
    path = folder.drop / "big.csv"
    big_csv(path, rows=30_000)
    whole = pa_csv.read_csv(path)

    assert folder.ingest("once").returncode == 0

    assert not folder.parts("records")
    assert_features_exact(features_of(folder), whole)
    assert not list((folder.output / "_ingest" / "tmp").iterdir())


def test_a_column_empty_throughout_the_first_block_takes_its_type_from_later_blocks(
    folder: Folder,
) -> None:
    folder.write_config(**STREAMING)
    path = folder.drop / "late.csv"
    rows = 40_000
    with path.open("w") as fh:
        fh.write("timestamp,ch0,late\n")
        for i in range(rows):
            fh.write(f"{i},{i % 17},{'' if i < 20_000 else i * 0.25}\n")

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert records_of(folder).num_rows == rows
    (late,) = [f for f in features_of(folder) if f["source_column"] == "late"]
    later = np.arange(20_000, rows) * 0.25
    assert (late["count"], late["null_count"]) == (20_000, 20_000)
    assert late["p50"] == np.percentile(later, 50) and late["max"] == later.max()
    ((total,),) = folder.query("SELECT sum(late) FROM records")
    assert total == later.sum()


def test_a_column_of_ids_beyond_2_53_reads_its_null_markers_as_nulls_in_every_block(
    folder: Folder,
) -> None:
    """Block 0 holds a 20-digit ID, so the column is read as text: every later block reads
    it as text too, and its "NA", "nan" and empty cells stay nulls, as in block 0."""
    folder.write_config(**STREAMING)
    rows = 60_000
    with (folder.drop / "ids.csv").open("w") as fh:
        fh.write("timestamp,v\n0,12345678901234567890\n")
        for i in range(1, rows):
            fh.write(f"{i},{('NA', 'nan', '', ' 2.5')[i % 4]}\n")
    assert (folder.drop / "ids.csv").stat().st_size > 256 << 10  # streamed: over 256 KB

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    counts = folder.query(
        "SELECT count(*), count(v), count(_rescued_data), min(v), max(v) FROM records"
    )
    assert counts == [(rows, rows // 4, 1, 2.5, 2.5)]
    ((rescued,),) = folder.query("SELECT _rescued_data FROM records WHERE timestamp = 0")
    assert rescued == '{"v": "12345678901234567890"}'


def test_a_column_of_numbers_with_leading_zeros_stays_text_in_every_block(
    folder: Folder,
) -> None:
    """Block 0 holds `07919`, so the column is text, as DuckDB reads it: later blocks keep
    every value's spelling too, rather than reading the column as numbers as its values
    mostly are, with those that have a leading zero rescued; "NA" is null in each."""
    folder.write_config(**STREAMING)
    rows = 60_000
    with (folder.drop / "zips.csv").open("w") as fh:
        fh.write("timestamp,zip\n")
        for i in range(rows):
            zip_code = "NA" if i % 1000 == 999 else f"{i * 7919 % 100000:05d}"
            fh.write(f"{i},{zip_code}\n")  # one in ten with a leading zero
    assert (folder.drop / "zips.csv").stat().st_size > 256 << 10  # streamed: over 256 KB

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert len(folder.parts("records")) >= 3, "read in blocks"
    assert folder.query(
        "SELECT count(*), count(zip), count(_rescued_data), count(DISTINCT length(zip))"
        " FROM records"
    ) == [(rows, rows - rows // 1000, 0, 1)]
    assert folder.query("SELECT timestamp, zip FROM records ORDER BY 1") == [
        (i, None if i % 1000 == 999 else f"{i * 7919 % 100000:05d}") for i in range(rows)
    ]
    assert folder.query(
        "SELECT count(*) FROM features WHERE source_column = 'zip'"
    ) == [(0,)], "text has no numeric features"


def test_a_bad_value_deep_in_a_streamed_file_quarantines_it_with_its_line(
    folder: Folder,
) -> None:
    folder.write_config(**STREAMING)
    big_csv(folder.drop / "big.csv", rows=40_000, bad_line=35_000)

    result = folder.ingest("once")

    assert result.returncode == 3, result.stderr
    report = json.loads((folder.quarantine / "big.csv.error.json").read_text())
    assert report["error"] == "DecodeError"
    assert report["line"] == 35_000
    assert "oops" in report["message"] and "first block" in report["message"]
    assert not folder.parts("records") and not folder.parts("features")
    assert not list((folder.output / "_ingest" / "tmp").iterdir())


def test_json_lines_not_utf8_deep_in_a_streamed_file_are_quarantined_at_their_line(
    folder: Folder,
) -> None:
    folder.write_config(**STREAMING)
    rows = [json.dumps({"timestamp": i, "name": f"dev-{i % 9}"}).encode() for i in range(40_000)]
    rows[35_000 - 1] = b'{"timestamp": 1, "name": "x\xff"}'
    (folder.drop / "big.jsonl").write_bytes(b"\n".join(rows) + b"\n")

    result = folder.ingest("once")

    assert result.returncode == 3, result.stderr
    report = json.loads((folder.quarantine / "big.jsonl.error.json").read_text())
    assert report["error"] == "DecodeError" and "UTF-8" in report["message"]
    assert report["line"] == 35_000
    assert not folder.parts("records") and not folder.parts("features")


def test_a_quote_that_never_closes_stops_the_stream_without_holding_the_file(
    folder: Folder,
) -> None:
    folder.write_config(**STREAMING)
    body = "".join(f"{i},{i * 0.5}\n" for i in range(1_000_000))  # about 17 MB
    (folder.drop / "open.csv").write_text('timestamp,x\n1,"never closed\n' + body)

    result = folder.ingest("once")

    assert result.returncode == 3, result.stderr
    report = json.loads((folder.quarantine / "open.csv.error.json").read_text())
    assert report["error"] == "DecodeError"
    assert report["line"] == 2
    assert "quote" in report["message"]


def test_a_quote_inside_an_unquoted_field_of_a_streamed_file_is_a_character(
    folder: Folder,
) -> None:
    """`12" pipe` leaves every later newline with an odd count of quotes before it: cut by
    that count, no record would end within 16 MiB, and the file was quarantined. Its quotes
    are then read as the reader reads them, and quoted fields of many lines after that are
    cut around."""
    folder.write_config(pipeline={"workers": 2, "memory_mb": 64}, watch={"settle_ms": 0})
    rows = 1_100_000
    with (folder.drop / "pipes.csv").open("w") as fh:
        fh.write('id,desc,amount\n1,12" pipe,2\n')
        for i in range(2, rows):
            # Fields of two lines past the first 16 MiB, where quotes are read field by field.
            late = i > 1_050_000 and i % 10_000 == 0
            desc = f'"note {i}\nof two lines"' if late else f'"a, {i % 7}"'
            fh.write(f"{i},{desc},{i % 100}\n")
    assert (folder.drop / "pipes.csv").stat().st_size > 17 << 20  # past the 16 MiB record bound
    whole = pa_csv.read_csv(  # as the reader reads the file whole
        folder.drop / "pipes.csv", parse_options=pa_csv.ParseOptions(newlines_in_values=True)
    )

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "blocks" in result.stderr
    assert folder.query("SELECT count(*), sum(amount) FROM records") == [
        (whole.num_rows, pc.sum(whole.column("amount")).as_py())
    ]
    assert folder.query('SELECT "desc" FROM records WHERE id IN (1, 2, 1060000) ORDER BY id') == [
        ('12" pipe',), ("a, 2",), ("note 1060000\nof two lines",),
    ]


@pytest.mark.parametrize(("at", "last", "delimiter"), [
    (15_000, False, ","), (100, False, ","), (100, True, ","), (100, False, ";"),
    (100, True, "\t"),
])
def test_a_literal_quote_then_a_field_of_two_lines_keeps_every_row(
    folder: Folder, at: int, last: bool, delimiter: str
) -> None:
    """`12" pipe`, then quoted fields of two lines, one row in five: the count of quotes,
    inverted from the literal quote, finds the newline inside such a field a record's
    end, and a block was cut inside it.

    - Past block 0 (`at` 15,000, 227 KB in): the literal quote is found where it stands,
      and the cut goes field by field from there.
    - In block 0 of a table's first file, cut before its delimiter is known: in the middle
      column, block 0 failed to parse; in the last (`last`), its last row was misread
      without an error (pyarrow reads a quoted field left open at the end), and block 1
      failed; a `;` or tab file's block 0 was even taken for one column, with no error.
      Once block 0 is read, or has failed, it is looked at for such a quote with the
      likeliest delimiter of its header (`;` here, though its quoted names hold more
      commas), and the file read again, its quotes field by field, its dialect sniffed
      anew."""
    folder.write_config(**STREAMING)  # blocks of 64 KiB
    rows = 60_000
    names = ['"id, n"', '"desc, text"', '"amount, EUR"'] if delimiter == ";" else [
        "id", "desc", "amount"]
    order = [0, 2, 1] if last else [0, 1, 2]
    with (folder.drop / "pipes.csv").open("w") as fh:
        fh.write(delimiter.join(names[c] for c in order) + "\n")
        for i in range(1, rows):
            desc = (
                '12" pipe' if i % 20_000 == at
                else f'"note {i}\nof two lines"' if i % 20_000 > at and i % 5 == 3
                else f'"a, {i % 7}"'
            )
            fields = [str(i), desc, str(i % 100)]
            fh.write(delimiter.join(fields[c] for c in order) + "\n")
    whole = pa_csv.read_csv(
        folder.drop / "pipes.csv", parse_options=pa_csv.ParseOptions(
            delimiter=delimiter, newlines_in_values=True,
        ),
    )
    assert whole.num_rows == rows - 1
    id_, desc_, amount = (name.strip('"') for name in names)

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "blocks" in result.stderr
    assert ("reading it again" in result.stderr) == (at == 100)
    assert folder.query(
        f'SELECT count(*), sum("{amount}"), count(DISTINCT "{id_}") FROM records'
    ) == [(rows - 1, pc.sum(whole.column(amount)).as_py(), rows - 1)]
    assert folder.query(
        f'SELECT "{desc_}" FROM records WHERE "{id_}" IN ({at}, {at + 3}, {at + 4})'
        f' ORDER BY "{id_}"'
    ) == [('12" pipe',), (f"note {at + 3}\nof two lines",), (f"a, {(at + 4) % 7}",)]


def test_a_streamed_file_whose_header_holds_a_literal_quote_keeps_every_row(
    folder: Folder,
) -> None:
    """`note 12"` in the header: its record ends at its line, where a count of quotes
    never found its end (the file was quarantined, or its first rows taken for header)."""
    folder.write_config(pipeline={"workers": 2, "memory_mb": 64}, watch={"settle_ms": 0})
    rows = 1_100_000
    with (folder.drop / "notes.csv").open("w") as fh:
        fh.write('id;amount;note 12"\n')  # `;`: the delimiter is guessed from this line
        for i in range(1, rows):
            fh.write(f'{i};{i % 100};"a, {i % 7}"\n')
    assert (folder.drop / "notes.csv").stat().st_size > 17 << 20  # past the 16 MiB record bound

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert folder.query("SELECT count(*), min(id), max(id), count(DISTINCT id) FROM records") \
        == [(rows - 1, 1, rows - 1, rows - 1)]
    assert folder.query('SELECT "note 12""" FROM records WHERE id = 8') == [("a, 1",)]


def test_a_streamed_file_whose_lines_end_in_a_lone_cr_reads_every_row(folder: Folder) -> None:
    """Classic Mac OS line ends: cut at LFs, such a file had no record end within 16 MiB
    and was quarantined; it is read as a file read whole is, CR as LF."""
    folder.write_config(**STREAMING)
    rows = 40_000
    body = "".join(f'{i},"x{i % 9}",{i * 0.5}\r' for i in range(rows))
    (folder.drop / "mac.csv").write_bytes(("timestamp,name,v\r" + body).encode())
    assert (folder.drop / "mac.csv").stat().st_size > 256 << 10  # streamed: over 256 KB
    digest = hashlib.sha256((folder.drop / "mac.csv").read_bytes()).hexdigest()

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "blocks" in result.stderr
    assert len(folder.parts("records")) >= 3, "read in blocks"
    assert folder.query("SELECT count(*), count(DISTINCT timestamp), sum(v) FROM records") == [
        (rows, rows, sum(i * 0.5 for i in range(rows)))
    ]
    assert folder.query("SELECT name FROM records WHERE timestamp = 10") == [("x1",)]
    ledger = sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite")
    assert ledger.execute("SELECT sha256 FROM files WHERE path = 'mac.csv'").fetchall() == [
        (digest,)
    ]


def test_a_streamed_file_whose_rows_end_with_a_delimiter_reads_its_columns_and_empty_cells(
    folder: Folder,
) -> None:
    # Tab-separated rows, not the header, end with a tab; every tenth name is empty,
    # quoted or not. DuckDB's sniffer finds no dialect in more than ~2,000 such rows
    # (read_csv fails on the file), and reads a shorter head of it.
    folder.write_config(**STREAMING)
    rows = 200_000
    lines = [f'{i}\t{"" if i % 20 == 0 else chr(34) * 2 if i % 10 == 0 else f"n{i}"}\t\n'
             for i in range(rows)]
    path = folder.drop / "trailing.csv"
    path.write_text("id\tname\n" + "".join(lines))  # about 2.4 MB: many blocks
    with pytest.raises(duckdb.InvalidInputException):
        duckdb.sql(f"SELECT * FROM read_csv('{path.as_posix()}')").fetchall()

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "blocks" in result.stderr
    (count, names, empty, nulls), = folder.query(
        "SELECT count(*), count(DISTINCT name), count(*) FILTER (name = ''),"
        " count(*) FILTER (name IS NULL) FROM records"
    )
    assert (count, names, empty, nulls) == (rows, rows - rows // 10, 0, rows // 10)
    assert [row[:2] for row in folder.query("DESCRIBE records")[:3]] == [
        ("id", "BIGINT"), ("name", "VARCHAR"), ("source_file", "VARCHAR"),
    ]


def test_a_file_too_big_for_memory_that_cannot_be_streamed_says_why(folder: Folder) -> None:
    folder.write_config(**STREAMING)
    np.save(folder.drop / "big.npy", np.zeros((200_000, 2)))

    result = folder.ingest("once")

    assert result.returncode == 3, result.stderr
    report = json.loads((folder.quarantine / "big.npy.error.json").read_text())
    assert report["error"] == "TooLarge"
    assert "memory_mb" in report["message"] and "read in blocks" in report["message"]


def test_kill_9_while_blocks_are_staged_then_restart_is_exactly_once(folder: Folder) -> None:
    folder.write_config(**STREAMING, output={"flush_s": 0.05})
    big_csv(folder.drop / "big.csv", rows=40_000)
    proc = _run(folder, {"INGEST_CRASH_AT": "block-staged:6"})
    assert proc.wait(60) == -signal.SIGKILL
    assert list((folder.output / "_ingest" / "tmp").iterdir()), "the kill should leave temps"
    assert not folder.parts("records")

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    check_exactly_once(folder, {"big.csv": 40_000}, set())
    assert not list((folder.output / "_ingest" / "tmp").iterdir())


def test_sigterm_during_a_stream_defers_it_and_a_restart_ingests_it_once(
    folder: Folder, service: Callable[..., Service]
) -> None:
    folder.write_config(
        pipeline={"workers": 1, "memory_mb": 1}, watch={"settle_ms": 0, "rescan_s": 1},
        output={"flush_s": 0.05},
    )
    svc = service()
    svc.wait_ready()
    big_csv(folder.root / "big.csv", rows=200_000)  # about 7 MB: over a hundred blocks
    os.replace(folder.root / "big.csv", folder.drop / "big.csv")
    tmp = folder.output / "_ingest" / "tmp"
    wait_for(lambda: any(tmp.iterdir()), 60, "the first staged block")

    assert svc.stop(signal.SIGTERM, timeout=30) == 0
    assert "1 left for the next run" in svc.text()
    assert not folder.parts("records")

    result = folder.ingest("once", timeout=300)
    assert result.returncode == 0, result.stderr
    check_exactly_once(folder, {"big.csv": 200_000}, set())


def test_a_file_of_whole_blocks_without_a_final_newline_keeps_its_last_record(
    folder: Folder,
) -> None:
    folder.write_config(**STREAMING)
    block = 64 << 10  # memory_mb = 1: blocks of 64 KB
    body = "x,note\n" + "".join(f"{i},row\n" for i in range(60_000))
    size = -(-len(body) // block) * block + block
    last = "999999," + "z" * (size - len(body) - len("999999,"))
    path = folder.drop / "exact.csv"
    path.write_text(body + last)  # no newline at the end
    assert path.stat().st_size % block == 0

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert records_of(folder).num_rows == 60_001
    ((note,),) = folder.query("SELECT note FROM records WHERE x = 999999")
    assert note == last.split(",")[1]


def test_a_ragged_row_that_starts_a_later_block_is_reported_at_its_line(folder: Folder) -> None:
    # Rows of 21 bytes after a 6-byte header; blocks are read 64 KB at a time and cut at the
    # last newline, so the row holding byte 5 x 64 KB is the first row of a block.
    folder.write_config(**STREAMING)
    rows = [f"{i:06d},{i:06d},{i:06d}\n" for i in range(50_000)]
    first_of_block = (5 * (64 << 10) - 6) // 21
    i = first_of_block
    rows[i] = f"{i:06d},{i % 1000:03d},{i % 100:02d},{i:06d}\n"  # four fields, same length
    assert len(rows[i]) == 21
    (folder.drop / "ragged.csv").write_text("a,b,c\n" + "".join(rows))

    assert folder.ingest("once").returncode == 3

    report = json.loads((folder.quarantine / "ragged.csv.error.json").read_text())
    assert report["line"] == first_of_block + 2  # the header is line 1


def test_json_keys_first_seen_late_give_every_part_the_same_columns(folder: Folder) -> None:
    folder.write_config(**STREAMING)
    with (folder.drop / "late.jsonl").open("w") as fh:
        for i in range(30_000):
            row: dict[str, object] = {"t": i, "a": i * 0.5}
            if i >= 20_000:
                row["late"] = i % 7
            fh.write(json.dumps(row) + "\n")

    assert folder.ingest("once").returncode == 0

    parts = folder.parts("records")
    schemas = {ds.dataset(p, format="parquet").schema.remove_metadata() for p in parts}
    assert len(schemas) == 1, schemas
    records = records_of(folder)
    assert records.num_rows == 30_000
    assert records["late"].null_count == 20_000


def test_json_timestamps_of_any_precision_and_zone_read_alike_in_every_block(
    folder: Folder,
) -> None:
    # Whole seconds first (Arrow's reader types those), then milliseconds, offsets and
    # nanoseconds (Go's RFC 3339), which it leaves as text, in later blocks.
    folder.write_config(**STREAMING)
    base = dt.datetime(2024, 1, 1)
    expected = {}
    with (folder.drop / "times.jsonl").open("w") as fh:
        for i in range(30_000):
            at = base + dt.timedelta(seconds=i)
            text = at.strftime("%Y-%m-%dT%H:%M:%S")
            if i < 10_000:
                stamp, expected[i] = text + "Z", at
            elif i < 20_000:
                stamp, expected[i] = text + ".250Z", at + dt.timedelta(milliseconds=250)
            elif i % 2:
                stamp = (at + dt.timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S") + "+05:00"
                expected[i] = at
            else:  # nanoseconds are floored to microseconds
                stamp, expected[i] = text + ".123456789Z", at + dt.timedelta(microseconds=123456)
            fh.write(json.dumps({"i": i, "ts": stamp}) + "\n")

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "blocks" in result.stderr
    assert dict(folder.query("SELECT i, ts FROM records")) == expected
    assert folder.query("SELECT count(*) FROM records WHERE _rescued_data IS NOT NULL") == [(0,)]


def test_the_same_big_file_twice_is_ingested_once_and_the_other_is_a_duplicate(
    folder: Folder,
) -> None:
    folder.write_config(**STREAMING)
    big_csv(folder.drop / "one.csv", rows=20_000)
    (folder.drop / "two.csv").write_bytes((folder.drop / "one.csv").read_bytes())

    result = folder.ingest("once", timeout=120)

    assert result.returncode == 0, result.stderr
    assert records_of(folder).num_rows == 20_000
    assert "duplicate " in result.stderr


def test_a_semicolon_file_with_notes_and_a_decimal_comma_is_streamed_in_its_dialect(
    folder: Folder,
) -> None:
    folder.write_config(**STREAMING)
    path = folder.drop / "export.csv"
    rows = 30_000
    lines = ["Export from LabLogger 3.2\n", "Device: probe-7\n", "\n", "Datum;Stelle;Wert\n"]
    lines += [f"{1 + i % 28:02d}.02.2024;st-{i % 7};{i},{i % 100:02d}\n" for i in range(rows)]
    path.write_text("".join(lines))
    assert path.stat().st_size > 256 << 10  # a quarter of memory_mb: read in blocks

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "blocks; quantiles exact" in result.stderr
    table = records_of(folder).sort_by("Wert")
    assert table.num_rows == rows
    assert table.column_names[:3] == ["Datum", "Stelle", "Wert"]
    assert table["Wert"].to_pylist() == [i + (i % 100) / 100 for i in range(rows)]
    assert str(table.schema.field("Datum").type).startswith("date32")
    # The streamed file pinned the table's dialect: a small file of the same export,
    # without its notes, is read in it.
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        ((pinned,),) = db.execute("SELECT dialect FROM dialects WHERE table_name = 'records'")
    assert '";"' in pinned and "export.csv" not in pinned
    (folder.drop / "later.csv").write_text("Datum;Stelle;Wert\n01.03.2024;st-1;7,5\n")
    assert folder.ingest("once").returncode == 0
    assert 7.5 in records_of(folder)["Wert"].to_pylist()


# Rewrites one row's note, `plain`, with a new number each time and the file's mtime put
# back, until a file named by the second argument exists; then writes `plain` back.
# Rewrites a file in place, its mtime put back, through its descriptor: the file may be
# renamed meanwhile (into the drop folder). Says "ready" once it has rewritten it once.
REWRITER = """
import os, sys, time
path, stop, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path, "r+b") as fh:
    st = os.fstat(fh.fileno())
    fh.seek(at)
    at += fh.read(1 << 16).index(b",plain,") + 1
    turn = 0
    while not os.path.exists(stop):
        turn += 1
        fh.seek(at)
        fh.write(b"%05d" % (turn % 100_000))
        fh.flush()
        os.utime(fh.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
        if turn == 1:
            print("ready", flush=True)
        time.sleep(0.003)
    fh.seek(at)
    fh.write(b"plain")
    fh.flush()
    os.utime(fh.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
"""


def test_a_file_found_changed_time_after_time_is_looked_at_again_after_longer_pauses(
    folder: Folder, service: Callable[..., Service]
) -> None:
    """Rewritten in place with its mtime put back, again and again: each read finds it
    changed (its hash pass and its blocks read other bytes), and it is read again after a
    pause that doubles each time, not at once.

    On a starved machine the rewriter may not run between two reads, which then agree:
    the file is rightly ingested, and the pauses are looked at on another file."""
    folder.write_config(
        pipeline={"workers": 1, "memory_mb": 1}, watch={"settle_ms": 0, "rescan_s": 1},
        output={"flush_s": 0.05},
    )
    svc = service("--log-format", "json")
    ingested: dict[str, int] = {}
    for attempt in range(3):
        name = f"big-{attempt}.csv"
        changed = _changed_while_rewritten(folder, svc, name, seed=attempt)
        ingested[name] = 8_000
        if len(changed) >= 6:
            break
    else:
        raise AssertionError("ingested while rewritten (two reads agreed), three times")
    # After each change, the next offer waits its pause before the file is read again.
    pauses = [0.1 * 2**n for n in range(5)]  # settle_ms = 0: from CHANGED_PAUSE_S's first
    waited = changed[1:6]
    assert all(w >= pause - 0.002 for w, pause in zip(waited, pauses, strict=True)), waited

    wait_for(lambda: f'"ingested {name}"' in svc.text(), 120, f"{name} ingested")
    assert svc.stop(signal.SIGTERM, timeout=30) == 0
    check_exactly_once(folder, ingested, set())


def _changed_while_rewritten(folder: Folder, svc: Service, name: str, seed: int) -> list[float]:
    """Drop `name` (8,000 rows) and rewrite it in place until the service has found it
    changed six times, or ingested it; the latency of each `changed` line, in seconds."""
    big_csv(folder.root / name, rows=8_000, seed=seed)  # 360 KB: read in blocks, in a moment
    original = (folder.root / name).read_bytes()
    stop = folder.root / f"stop-rewriting-{name}"
    rewriter = subprocess.Popen(
        [sys.executable, "-c", REWRITER, str(folder.root / name), str(stop),
         str(len(original) // 2)], stdout=subprocess.PIPE,
    )
    assert rewriter.stdout is not None
    assert rewriter.stdout.readline() == b"ready\n"  # rewritten from before it is found
    rewriter.stdout.close()
    os.replace(folder.root / name, folder.drop / name)
    changed: list[float] = []

    def times_changed() -> int:
        """The latency of each `changed` line so far: from its offer to its outcome."""
        whole = svc.text().rpartition("\n")[0].splitlines()  # a line being written: later
        lines = [json.loads(line) for line in whole if line.startswith("{")]
        changed[:] = [
            line["latency_ms"] / 1000 for line in lines
            if line.get("event") == "changed" and line.get("file") == name
        ]
        return len(changed)

    try:
        wait_for(lambda: times_changed() >= 6 or f"ingested {name}" in svc.text(), 60,
                 f"{name} found changed six times")
        times_changed()
    finally:
        stop.touch()
        rewriter.wait(30)
    return changed


def test_once_leaves_a_file_found_changed_again_and_again_for_the_next_run(
    folder: Folder,
) -> None:
    """Rewritten in place for ever with its mtime put back, a file settles each time it is
    looked at and is found changed each time it is read: `once` waits once_unsettled_s
    for it after the other files, then leaves it to the next run, and ends."""
    folder.write_config(
        pipeline={"workers": 1, "memory_mb": 1},
        watch={"settle_ms": 0, "once_unsettled_s": 2}, output={"flush_s": 0.05},
    )
    big_csv(folder.root / "big.csv", rows=8_000)  # 360 KB: read in blocks, in a moment
    original = (folder.root / "big.csv").read_bytes()
    stop = folder.root / "stop-rewriting"
    os.replace(folder.root / "big.csv", folder.drop / "big.csv")
    (folder.drop / "other.csv").write_text("timestamp,v\n1,1.5\n")
    rewriter = subprocess.Popen(
        [sys.executable, "-c", REWRITER, str(folder.drop / "big.csv"), str(stop),
         str(len(original) // 2)]
    )
    try:
        result = folder.ingest("once", timeout=90)
    finally:
        stop.touch()
        rewriter.wait(30)
    assert result.returncode == 0, result.stderr
    assert "changed big.csv" in result.stderr, result.stderr
    assert re.search(
        r"WARNING +deferred big\.csv reason=\"still changing 2 s after", result.stderr
    ), result.stderr
    assert folder.rows_per_file() == {"other.csv": 1}

    again = folder.ingest("once", timeout=90)
    assert again.returncode == 0, again.stderr
    check_exactly_once(folder, {"big.csv": 8_000, "other.csv": 1}, set())


def test_a_file_rewritten_while_its_blocks_are_read_is_read_again_not_committed_torn(
    folder: Folder, service: Callable[..., Service]
) -> None:
    """The blocks are a second read of the file: if its bytes change after the hash pass,
    no row of the new bytes may be committed under the old sha256. The service is
    stopped once blocks are staged, the file's last rows are rewritten in place (same
    size and mtime), and it resumes: the file is read again, its new bytes committed once."""
    folder.write_config(
        pipeline={"workers": 1, "memory_mb": 1}, watch={"settle_ms": 0, "rescan_s": 1},
        output={"flush_s": 0.05},
    )
    svc = service()
    svc.wait_ready()
    big_csv(folder.root / "big.csv", rows=400_000)  # about 18 MB: hundreds of blocks
    original = (folder.root / "big.csv").read_bytes()
    os.replace(folder.root / "big.csv", folder.drop / "big.csv")
    tmp = folder.output / "_ingest" / "tmp"
    wait_for(lambda: any(tmp.iterdir()), 60, "the first staged block")

    os.kill(svc.proc.pid, signal.SIGSTOP)
    try:
        before = os.stat(folder.drop / "big.csv")
        with open(folder.drop / "big.csv", "r+b") as fh:
            fh.seek(len(original) - 200_000)
            tail = fh.read()
            fh.seek(len(original) - 200_000)
            fh.write(tail.replace(b",dev-0,", b",dev-7,"))
        # Its mtime put back, as `rsync --inplace -t` does, or as a file system whose
        # clock ticks by the second shows it: only the bytes tell.
        os.utime(folder.drop / "big.csv", ns=(before.st_atime_ns, before.st_mtime_ns))
    finally:
        os.kill(svc.proc.pid, signal.SIGCONT)
    rewritten = (folder.drop / "big.csv").read_bytes()
    assert len(rewritten) == len(original) and rewritten != original

    wait_for(lambda: "ingested big.csv" in svc.text(), 120, "big.csv ingested")
    assert svc.stop(signal.SIGTERM, timeout=30) == 0
    old = hashlib.sha256(original).hexdigest()
    assert "changed big.csv" in svc.text() and f"sha256={old}" in svc.text()
    assert 'reason="its bytes changed while it was read in blocks"' in svc.text()
    check_exactly_once(folder, {"big.csv": 400_000}, set())
    (sha,) = {s for (s,) in folder.query("SELECT DISTINCT source_sha256 FROM records")}
    assert sha == hashlib.sha256(rewritten).hexdigest()
    devices = dict(folder.query("SELECT device, count(*) FROM records GROUP BY 1"))
    assert devices["dev-7"] == rewritten.count(b",dev-7,") > 0
