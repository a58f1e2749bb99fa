"""Tables every reader opens with no options: routing, one schema per table, rescued data.

Each case runs real `ingest once` processes and reads the output back with DuckDB
(without union_by_name), Polars, pandas and pyarrow.dataset, as a downstream job would.
"""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from .conftest import FAST, ROOT, SAMPLE_DATA, Folder
from .invariants import check_one_schema

RESCUED = "_rescued_data"

Row = tuple[object, ...]


def readers(output: Path, table: str, columns: list[str]) -> dict[str, list[Row]]:
    """The table's rows as each reader returns them, with no options, sorted by `id`."""
    folder = output / table
    glob = f"{folder}/ingest_date=*/*.parquet"
    got: dict[str, list[Row]] = {}
    got["duckdb"] = duckdb.sql(
        f"SELECT {', '.join(columns)} FROM read_parquet('{glob}') ORDER BY id"
    ).fetchall()
    polars = pl.scan_parquet(glob).select(columns).sort("id").collect()
    got["polars"] = [tuple(r) for r in polars.iter_rows()]
    frame = pd.read_parquet(folder)[columns].sort_values("id")
    got["pandas"] = [
        tuple(None if pd.isna(v) else v for v in row)
        for row in frame.itertuples(index=False, name=None)
    ]
    arrow = ds.dataset(folder).to_table(columns=columns).sort_by("id")
    got["pyarrow"] = [tuple(r.values()) for r in arrow.to_pylist()]
    return got


def test_files_drifting_in_type_and_columns_read_the_same_in_every_reader(folder: Folder) -> None:
    """int then float, a new column, a missing column, text in a numeric column, an all-null
    column and a hinted column: committed one after another, so each drift widens what is
    already committed."""
    folder.write_config(
        watch={"settle_ms": 50, "on_success": "keep"},
        pipeline={"workers": 2},
        output={"flush_s": 0},
        **{"tables.records.columns": {"station": "string"}},
    )
    inputs: list[tuple[str, bytes]] = [
        ("a.csv", b"id,temp,station\n1,1,x\n2,2,y\n"),
        ("b.csv", b"id,temp,station\n3,2.5,z\n4,,w\n"),
        ("c.jsonl", b'{"id": 5, "temp": 3.5, "station": "v", "humidity": 40}\n'),
        ("e.csv", b"id,temp,station\n6,n/a?,q\n7,8,r\n"),
        ("f.csv", b"id,temp,station,empty\n8,9,s,\n"),
        ("g.csv", b"id,temp,station\n9,10,123\n"),
    ]
    for name, content in inputs:
        (folder.drop / name).write_bytes(content)
        done = folder.ingest("once")
        assert done.returncode == 0, done.stderr
    missing = pa.table({"id": pa.array([10], pa.int32()), "station": ["p"]})
    pq.write_table(missing, folder.drop / "d.parquet")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr

    schema = check_one_schema(folder.output)["records"]
    assert schema.names == [
        "id", "temp", "station", "humidity", "empty",
        "source_file", "source_sha256", "_rescued_data",
    ]
    assert [str(t) for t in schema.types[:4]] == ["int64", "double", "string", "int64"]

    want: list[Row] = [
        (1, 1.0, "x", None), (2, 2.0, "y", None), (3, 2.5, "z", None), (4, None, "w", None),
        (5, 3.5, "v", None), (6, None, "q", {"temp": "n/a?"}), (7, 8.0, "r", None),
        (8, 9.0, "s", None), (9, 10.0, "123", None), (10, None, "p", None),
    ]
    for reader, rows in readers(folder.output, "records", [
        "id", "temp", "station", "_rescued_data"
    ]).items():
        decoded = [(*r[:3], json.loads(r[3]) if r[3] else None) for r in rows]
        assert decoded == want, reader
    humidity = duckdb.sql(
        f"SELECT id, humidity FROM read_parquet('{folder.output}/records/*/*.parquet')"
        " WHERE humidity IS NOT NULL"
    ).fetchall()
    assert humidity == [(5, 40)]


def test_a_file_has_features_for_its_own_columns_only_whatever_its_table_holds(
    folder: Folder,
) -> None:
    """A column that another file added to the table reads null in the records of a file
    without it, but is not the file's: it gets no feature row, in whichever way the file
    is read (parsed with others, alone, as JSON Lines), so a file's features never depend
    on what was committed before it."""
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep"}, pipeline={"workers": 1},
        output={"flush_s": 0},
    )
    (folder.drop / "a.csv").write_bytes(b"timestamp,ch0,extra\n1,1.5,7\n2,2.5,8\n")
    assert folder.ingest("once").returncode == 0
    (folder.drop / "b.csv").write_bytes(b"timestamp,ch0\n3,3.5\n")
    (folder.drop / "c.csv.gz").write_bytes(gzip.compress(b"timestamp,CH0\n4,4.5\n"))
    (folder.drop / "d.jsonl").write_bytes(b'{"timestamp": 5, "ch0": 5.5, "more": 1}\n')
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr

    features = folder.query(
        "SELECT source_file, source_column, count, null_count FROM features ORDER BY 1, 2"
    )
    assert features == [
        ("a.csv", "ch0", 2, 0), ("a.csv", "extra", 2, 0), ("b.csv", "ch0", 1, 0),
        ("c.csv.gz", "ch0", 1, 0), ("d.jsonl", "ch0", 1, 0), ("d.jsonl", "more", 1, 0),
    ]
    records = folder.query("SELECT source_file, ch0, extra FROM records ORDER BY 1")
    assert records == [("a.csv", 1.5, 7), ("a.csv", 2.5, 8), ("b.csv", 3.5, None),
                       ("c.csv.gz", 4.5, None), ("d.jsonl", 5.5, None)]


def test_a_json_lines_column_of_numbers_and_text_stays_numeric(folder: Folder) -> None:
    (folder.drop / "mixed.jsonl").write_bytes(b'{"v": 1}\n{"v": "x"}\n{"v": 2}\n')
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    rows = duckdb.sql(
        f"SELECT v, _rescued_data FROM read_parquet('{folder.output}/records/*/*.parquet')"
    ).fetchall()
    assert rows == [(1, None), (None, '{"v": "x"}'), (2, None)]
    features = duckdb.sql(
        f"SELECT source_table, source_column, count, null_count"
        f" FROM read_parquet('{folder.output}/features/*/*.parquet')"
    ).fetchall()
    assert features == [("records", "v", 2, 1)]


def test_text_a_file_types_as_text_keeps_its_spelling_in_every_reader(folder: Folder) -> None:
    # JSON strings and Parquet string columns that look like numbers: a ZIP code, a
    # version, a code with leading zeros stay text, as DuckDB reads the inputs.
    (folder.drop / "a.jsonl").write_bytes(
        b'{"id": 1, "zip": "00123", "ver": "1.10"}\n{"id": 2, "zip": "02134", "ver": "2"}\n'
    )
    pq.write_table(
        pa.table({"id": [3, 4], "zip": ["10001", "007"], "code": ["1e5", "NaN"]}),
        folder.drop / "b.parquet",
    )
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    expected = [
        (1, "00123", "1.10", None, None), (2, "02134", "2", None, None),
        (3, "10001", None, "1e5", None), (4, "007", None, "NaN", None),
    ]
    columns = ["id", "zip", "ver", "code", RESCUED]
    for reader, rows in readers(folder.output, "records", columns).items():
        assert rows == expected, reader


def test_csv_columns_hinted_text_keep_their_spelling_alone_together_and_gzipped(
    folder: Folder,
) -> None:
    # Two plain files (which would be parsed together) and a gzip'd one: `01234` keeps its
    # leading zero, `1.50` its last.
    folder.write_config(**{"tables.records.columns": {"zip": "string", "code": "string"}})
    (folder.drop / "a.csv").write_bytes(b"id,zip,code\n1,01234,1.50\n2,00501,7\n")
    (folder.drop / "b.csv").write_bytes(b"id,zip,code\n3,10001,007\n4,,8\n")
    (folder.drop / "c.csv.gz").write_bytes(gzip.compress(b"id,zip,code\n5,00077,1e5\n"))
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    expected = [
        (1, "01234", "1.50", None), (2, "00501", "7", None), (3, "10001", "007", None),
        (4, None, "8", None), (5, "00077", "1e5", None),
    ]
    for reader, rows in readers(folder.output, "records", ["id", "zip", "code", RESCUED]).items():
        assert rows == expected, reader


def test_csv_numbers_written_with_leading_zeros_keep_their_spelling(folder: Folder) -> None:
    # A ZIP code or an account number, unhinted: text, as DuckDB reads it, whether the file
    # is read alone, with others of its header, gzip'd, or after files without a zero.
    (folder.drop / "a.csv").write_bytes(b"id,zip,amount\n1,01234,1.5\n2,10001,2\n")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    (folder.drop / "b.csv").write_bytes(b"id,zip,amount\n3,20500,3\n")
    (folder.drop / "c.csv").write_bytes(b"id,zip,amount\n4,00501,4\n")
    (folder.drop / "d.csv.gz").write_bytes(gzip.compress(b"id,zip,amount\n5,02139,5\n"))
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    expected = [
        (1, "01234", 1.5, None), (2, "10001", 2.0, None), (3, "20500", 3.0, None),
        (4, "00501", 4.0, None), (5, "02139", 5.0, None),
    ]
    columns = ["id", "zip", "amount", RESCUED]
    for reader, rows in readers(folder.output, "records", columns).items():
        assert rows == expected, reader


def test_a_number_with_a_leading_zero_in_a_numeric_column_is_rescued_as_written(
    folder: Folder,
) -> None:
    # The table's column is a number (the first file's): `00501` would be 501, so it is
    # rescued with its text, from a CSV and from a JSON string alike.
    (folder.drop / "a.csv").write_bytes(b"id,zip\n1,10001\n")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    (folder.drop / "b.csv").write_bytes(b"id,zip\n2,00501\n3,20500\n")
    (folder.drop / "c.jsonl").write_bytes(b'{"id": 4, "zip": "007"}\n')
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    assert folder.query(f"SELECT id, zip, {RESCUED} FROM records ORDER BY id") == [
        (1, 10001, None), (2, None, '{"zip": "00501"}'), (3, 20500, None),
        (4, None, '{"zip": "007"}'),
    ]


def test_decimals_of_other_widths_widen_the_column_and_read_exactly_everywhere(
    folder: Folder,
) -> None:
    # decimal(10,2), then decimal(12,4), then decimal(23,4): each widens what is committed,
    # as DuckDB unites them, where such values were rescued as text.
    def parquet(name: str, values: pa.Array) -> None:
        ids = pa.array(range(len(values)), pa.int64())
        pq.write_table(pa.table({"id": pa.compute.add(ids, 10 * len(name)), "v": values}),
                       folder.drop / name)

    parquet("a.parquet", pa.array([decimal.Decimal("1.25")], pa.decimal128(10, 2)))
    assert folder.ingest("once").returncode == 0
    parquet("bb.parquet", pa.array([decimal.Decimal("-123.4567")], pa.decimal128(12, 4)))
    assert folder.ingest("once").returncode == 0
    big = decimal.Decimal("9007199254740993.0001")  # past 2**53, as no float holds it
    parquet("ccc.parquet", pa.array([big], pa.decimal128(23, 4)))
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    assert "widened from decimal128(12, 4) to decimal128(23, 4)" in done.stderr
    expected = [
        (10 * 9, decimal.Decimal("1.2500"), None),
        (10 * 10, decimal.Decimal("-123.4567"), None),
        (10 * 11, decimal.Decimal("9007199254740993.0001"), None),
    ]
    for reader, rows in readers(folder.output, "records", ["id", "v", RESCUED]).items():
        assert [(i, decimal.Decimal(str(v)), r) for i, v, r in rows] == expected, reader


def test_a_csv_column_hinted_text_keeps_a_date_as_written(folder: Folder) -> None:
    folder.write_config(**{"tables.records.columns": {"d": "string"}})
    (folder.drop / "a.csv").write_bytes(
        b"id;d;e\n1;13/02/2024;13/02/2024\n2;25/12/2024;25/12/2024\n"
    )
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    assert folder.query("SELECT id, d, e FROM records ORDER BY id") == [
        (1, "13/02/2024", dt.date(2024, 2, 13)), (2, "25/12/2024", dt.date(2024, 12, 25)),
    ]


def test_a_gzipped_csv_is_read_with_its_tables_pins(folder: Folder) -> None:
    folder.write_config(**{"tables.records.csv": {"header": False, "delimiter": ";"}})
    # All text: detected alone, its first line would be the header.
    (folder.drop / "a.csv.gz").write_bytes(gzip.compress(b"a;x\nb;y\n"))
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    assert folder.query("SELECT column0, column1 FROM records ORDER BY 1") == [
        ("a", "x"), ("b", "y"),
    ]


def test_json_timestamps_with_fractions_and_zones_fill_a_timestamp_column_across_files(
    folder: Folder,
) -> None:
    # The first file's whole seconds make the column a timestamp; later files' fractions,
    # offsets and nanoseconds are the instants they name, and only text is rescued.
    (folder.drop / "a.jsonl").write_bytes(b'{"id": 1, "ts": "2024-01-01T00:00:00Z"}\n')
    assert folder.ingest("once").returncode == 0
    (folder.drop / "b.jsonl").write_bytes(
        b'{"id": 2, "ts": "2024-01-01T00:00:00.250Z"}\n'
        b'{"id": 3, "ts": "2024-01-01T05:00:00+05:00"}\n'
    )
    (folder.drop / "c.jsonl").write_bytes(
        b'{"id": 4, "ts": "2024-01-01T00:00:00.123456789"}\n{"id": 5, "ts": "soon"}\n'
    )
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    at = dt.datetime(2024, 1, 1)
    expected = [
        (1, at, None), (2, at + dt.timedelta(milliseconds=250), None), (3, at, None),
        (4, at + dt.timedelta(microseconds=123456), None), (5, None, '{"ts": "soon"}'),
    ]
    for reader, rows in readers(folder.output, "records", ["id", "ts", RESCUED]).items():
        got = [(i, ts.to_pydatetime() if isinstance(ts, pd.Timestamp) else ts, r)
               for i, ts, r in rows]
        assert got == expected, reader


@pytest.mark.parametrize("made_text_by", ["an earlier run", "a hint"])
def test_json_times_in_a_text_column_keep_their_spelling_in_every_reader(
    folder: Folder, made_text_by: str
) -> None:
    """A column the table holds as text (an earlier run's "soon"), or hinted `string`: a
    later file's times in it were read as timestamps and cast back to text, in UTC, their
    zone gone and their nanoseconds cut (`tests/test_as_written.py`: the same run)."""
    hinted = made_text_by == "a hint"
    if hinted:
        folder.write_config(**FAST, **{"tables.records.columns": {"d": "string"}})
    else:
        (folder.drop / "a.jsonl").write_bytes(b'{"id": 1, "d": "soon"}\n')
    if made_text_by == "an earlier run":
        assert folder.ingest("once").returncode == 0
    written = [
        "2024-01-01T10:00:00+05:00", "2024-01-01T10:00:00.123456789Z", "2024-01-01T10:00:00",
    ]
    (folder.drop / "b.jsonl").write_text(
        "".join(json.dumps({"id": i, "d": d}) + "\n" for i, d in enumerate(written, start=2))
    )
    (folder.drop / "c.jsonl").write_bytes(b'{"id": 5, "d": "2024-02-01"}\n')
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    expected = [(i, d) for i, d in enumerate([*written, "2024-02-01"], start=2)]
    if not hinted:
        expected.insert(0, (1, "soon"))
    for reader, rows in readers(folder.output, "records", ["id", "d"]).items():
        assert rows == expected, reader


@pytest.mark.parametrize("first", ['{"id": 1, "d": 7}', '{"id": 1, "d": true}'])
def test_json_times_in_a_number_or_flag_column_are_rescued_as_written(
    folder: Folder, first: str
) -> None:
    """A later file's times in a column of numbers (or flags) were read as timestamps and
    rescued as that instant's text, in UTC: the zone gone, the nanoseconds cut."""
    (folder.drop / "a.jsonl").write_text(first + "\n")
    assert folder.ingest("once").returncode == 0
    written = ["2024-01-01T10:00:00+05:00", "2024-01-01T10:00:00.123456789", "2024-02-01"]
    (folder.drop / "b.jsonl").write_text(
        "".join(json.dumps({"id": i, "d": d}) + "\n" for i, d in enumerate(written, start=2))
    )
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    rescued = dict(folder.query("SELECT id, _rescued_data FROM records WHERE id > 1"))
    assert {i: json.loads(r) for i, r in rescued.items()} == {
        i: {"d": d} for i, d in enumerate(written, start=2)
    }


def test_json_strings_in_a_number_or_flag_column_are_cast_where_they_spell_its_type(
    folder: Folder,
) -> None:
    """A JSON string that spells a value of its column's type exactly is that value, as a
    CSV's text is; any other is rescued as written. Alike in a column of strings and in one
    that mixes strings and numbers (read line by line)."""
    (folder.drop / "a.jsonl").write_text('{"id": 1, "n": 7, "f": true}\n')
    assert folder.ingest("once").returncode == 0
    strings = [("8", "false"), ("eight", "no"), (" 9", "TRUE"), ("1e3", "1")]
    (folder.drop / "b.jsonl").write_text("".join(
        json.dumps({"id": i, "n": n, "f": f}) + "\n" for i, (n, f) in enumerate(strings, 2)
    ))
    (folder.drop / "c.jsonl").write_text(
        '{"id": 6, "n": 9, "f": true}\n{"id": 7, "n": "10", "f": "0"}\n'
    )
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr

    expected = [
        (1, 7, True, None), (2, 8, False, None), (3, None, None, {"n": "eight", "f": "no"}),
        (4, None, True, {"n": " 9"}), (5, None, True, {"n": "1e3"}), (6, 9, True, None),
        (7, 10, False, None),
    ]
    rows = folder.query("SELECT id, n, f, _rescued_data FROM records ORDER BY id")
    assert [(i, n, f, r and json.loads(r)) for i, n, f, r in rows] == expected
    schema = check_one_schema(folder.output)["records"]
    assert (schema.field("n").type, schema.field("f").type) == (pa.int64(), pa.bool_())


def test_csv_timestamps_written_with_utc_are_timestamps_as_duckdb_reads_them(
    folder: Folder,
) -> None:
    """BigQuery's CSV export writes `2024-01-01 10:00:00 UTC`: DuckDB reads a TIMESTAMP,
    and so does ingest, in every reader; such text in a later JSON file fills the column
    at the instant it names, and only text that is no time is rescued."""
    source = folder.root / "source"
    source.mkdir()
    (source / "a.csv").write_text(
        "id,ts\n1,2024-01-01 10:00:00 UTC\n2,\n3,2024-01-02 11:30:15.123456 UTC\n"
    )
    duck = duckdb.sql(f"SELECT id, ts FROM read_csv('{source / 'a.csv'}') ORDER BY id")
    assert duck.types == ["BIGINT", "TIMESTAMP"]
    shutil.copy(source / "a.csv", folder.drop / "a.csv")
    assert folder.ingest("once").returncode == 0
    (folder.drop / "b.jsonl").write_bytes(
        b'{"id": 4, "ts": "2024-01-05 06:07:08.5 UTC"}\n{"id": 5, "ts": "soon UTC"}\n'
    )
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr

    assert check_one_schema(folder.output)["records"].field("ts").type == pa.timestamp("us")
    expected = [(i, ts, None) for i, ts in duck.fetchall()] + [
        (4, dt.datetime(2024, 1, 5, 6, 7, 8, 500000), None), (5, None, '{"ts": "soon UTC"}'),
    ]
    for reader, rows in readers(folder.output, "records", ["id", "ts", RESCUED]).items():
        got = [(i, ts.to_pydatetime() if isinstance(ts, pd.Timestamp) else ts, r)
               for i, ts, r in rows]
        assert got == expected, reader


def test_json_dates_alone_are_dates_as_a_csvs_are_in_every_reader(folder: Folder) -> None:
    """Arrow's JSON reader types `"2024-01-01"` as a timestamp; DuckDB's `read_json` and
    Arrow's CSV reader read a date, and so does ingest: a JSON file and a CSV of the same
    dates make one date column. A midnight written with its time stays a timestamp."""
    source = folder.root / "source"
    source.mkdir()
    (source / "a.jsonl").write_bytes(
        b'{"id": 1, "day": "2024-01-01", "at": "2024-01-01T00:00:00"}\n'
        b'{"id": 2, "day": null, "at": "2024-01-02T00:00:00"}\n'
        b'{"id": 3, "day": "2024-02-29", "at": null}\n'
    )
    (source / "b.csv").write_text("id,day,at\n4,2023-12-31,2024-01-03T00:00:00\n")
    duck = duckdb.sql(f"SELECT day FROM read_json('{source / 'a.jsonl'}')")
    assert duck.types == ["DATE"]
    for name in ("a.jsonl", "b.csv"):
        shutil.copy(source / name, folder.drop / name)
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr

    schema = check_one_schema(folder.output)["records"]
    assert schema.field("day").type == pa.date32()
    assert pa.types.is_timestamp(schema.field("at").type)
    expected = [
        (1, dt.date(2024, 1, 1)), (2, None), (3, dt.date(2024, 2, 29)), (4, dt.date(2023, 12, 31)),
    ]
    for reader, rows in readers(folder.output, "records", ["id", "day"]).items():
        assert rows == expected, reader


def test_text_that_is_not_utf8_is_quarantined_and_the_table_opens_everywhere(
    folder: Folder,
) -> None:
    """Arrow's JSON, Parquet and IPC readers keep such bytes in their strings; a part
    file holding them opens in no reader, and would take the whole table down with it."""
    (folder.drop / "good.jsonl").write_bytes(b'{"id": 1, "name": "caf\xc3\xa9"}\n')
    (folder.drop / "bad.jsonl").write_bytes(b'{"id": 2, "name": "x"}\n{"id": 3, "name": "x\xff"}\n')
    bad = pa.table({
        "id": [4, 5],
        "name": pa.array([b"x", b"x\xff"], pa.binary()).view(pa.string()),
    })
    pq.write_table(bad, folder.drop / "bad.parquet")
    with pa.ipc.new_file(folder.drop / "bad.arrow", bad.schema) as writer:
        writer.write_table(bad)
    done = folder.ingest("once")
    assert done.returncode == 3, done.stderr
    assert "quarantined bad.jsonl" in done.stderr and "line=2" in done.stderr, done.stderr
    for name in ("bad.parquet", "bad.arrow"):
        assert f"quarantined {name}" in done.stderr and "UTF8" in done.stderr, done.stderr
    for reader, rows in readers(folder.output, "records", ["id", "name"]).items():
        assert rows == [(1, "caf\u00e9")], reader


def test_a_json_value_nested_past_what_readers_open_is_quarantined_and_the_table_opens(
    folder: Folder,
) -> None:
    """Committed, a column of 100 nested objects made pyarrow and pandas refuse every part
    of the table once a later file widened it (the rewrite carried the column into each)."""
    deep: object = 1
    for _ in range(100):
        deep = {"a": deep}
    (folder.drop / "good.jsonl").write_text('{"id": 1, "x": {"a": 2}}\n')
    (folder.drop / "deep.jsonl").write_text(json.dumps({"id": 2, "x": deep}) + "\n")
    done = folder.ingest("once")
    assert done.returncode == 3, done.stderr
    assert "quarantined deep.jsonl" in done.stderr and "nested 101 levels deep" in done.stderr
    for reader, rows in readers(folder.output, "records", ["id"]).items():
        assert rows == [(1,)], reader


def test_times_of_day_nanoseconds_and_durations_read_the_same_in_every_reader(
    folder: Folder,
) -> None:
    """A CSV's `12:30:00` is a time of day to Arrow, a Parquet TIME column Spark refuses:
    it is kept as text. Nanoseconds are cut to the table's microseconds, floored, not
    refused; a duration is in microseconds."""
    (folder.drop / "a.csv").write_bytes(
        b"id,clock,ts\n1,12:30:00,2024-01-02 12:00:00.123456789\n"
        b"2,07:05:09,1969-12-31 23:59:59.9999995\n"
    )
    pq.write_table(pa.table({
        "id": pa.array([3], pa.int64()),
        "clock": pa.array([45_296_000_001], pa.time64("us")),  # 12:34:56.000001
        "ts": pa.array([1_001], pa.timestamp("ns")),
        "took": pa.array([1_500_000], pa.duration("ns")),
    }), folder.drop / "b.parquet")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    schema = check_one_schema(folder.output)["records"]
    assert [str(schema.field(c).type) for c in ("clock", "ts", "took")] == [
        "string", "timestamp[us]", "int64"
    ]
    want_ts = [
        dt.datetime(2024, 1, 2, 12, 0, 0, 123456), dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
        dt.datetime(1970, 1, 1, 0, 0, 0, 1),
    ]
    for reader, rows in readers(folder.output, "records", ["id", "clock", "ts"]).items():
        assert rows == [
            (1, "12:30:00", want_ts[0]), (2, "07:05:09", want_ts[1]),
            (3, "12:34:56.000001", want_ts[2]),
        ], reader
    took = ds.dataset(folder.output / "records").to_table(filter=ds.field("id") == 3)["took"]
    assert took.to_pylist() == [1_500]  # microseconds


def test_dates_outside_years_1_to_9999_are_rescued_and_the_table_opens_everywhere(
    folder: Folder,
) -> None:
    """pandas reads a date as Python's, and refused the whole table for one of year 10000."""
    pq.write_table(pa.table({
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "day": pa.array(np.array(
            ["2024-01-01", "10000-01-01", "-0768-03-01", "9999-12-31"], dtype="datetime64[D]"
        )),
    }), folder.drop / "a.parquet")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    day = [dt.date(2024, 1, 1), None, None, dt.date(9999, 12, 31)]
    rescued = [None, {"day": "10000-01-01"}, {"day": "-0768-03-01"}, None]
    for reader, rows in readers(folder.output, "records", ["id", "day", RESCUED]).items():
        got = [(row[1], row[2] and json.loads(row[2])) for row in rows]
        assert got == list(zip(day, rescued, strict=True)), reader


def test_a_date_outside_years_1_to_9999_in_a_list_or_struct_is_rescued_with_its_value(
    folder: Folder,
) -> None:
    """In a list, a struct, a map or a list of fixed size too: pandas refused the whole table
    for one such date at any depth. The value that holds it is rescued whole, as JSON."""
    days = pa.array([19_723, 3_000_000], pa.int32()).cast(pa.date32())  # 2024-01-01, 10183
    near, past = days.slice(0, 1), days.slice(1, 1)
    nothing = pa.array([None], pa.date32())

    def one(*values: pa.Array) -> pa.Array:
        return pa.concat_arrays(list(values))

    lists = pa.ListArray.from_arrays([0, 1, 2, 2, 3, 4, 5], one(near, past, near, near, near))
    structs = pa.StructArray.from_arrays([one(near, near, past, near, near, nothing)], ["d"])
    maps = pa.MapArray.from_arrays(
        [0, 1, 2, 3, 4, 5, 5], pa.array(["k"] * 5), one(near, near, near, past, near)
    )
    fixed = pa.FixedSizeListArray.from_arrays(one(near, near, near, near, past, near), 1)
    pq.write_table(pa.table({
        "id": pa.array(range(1, 7), pa.int64()), "ds": lists, "s": structs, "m": maps,
        "f": fixed,
    }), folder.drop / "a.parquet")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr

    rescued = [None, {"ds": '["10183-09-21"]'}, {"s": '{"d": "10183-09-21"}'},
               {"m": '[["k", "10183-09-21"]]'}, {"f": '["10183-09-21"]'}, None]
    for reader, rows in readers(folder.output, "records", ["id", RESCUED]).items():
        assert [r and json.loads(r) for _, r in rows] == rescued, reader
    table = ds.dataset(folder.output / "records").to_table().sort_by("id")
    day = [dt.date(2024, 1, 1)]
    assert table["ds"].to_pylist() == [day, None, [], day, day, day]
    assert table["s"].to_pylist()[1:3] == [{"d": dt.date(2024, 1, 1)}, None]
    assert table["m"].to_pylist()[3] is None and table["f"].to_pylist()[4] is None


def test_integers_float64_would_round_keep_their_text(folder: Folder) -> None:
    """Arrow reads a CSV column of 20-digit IDs as float64, rounded to 16 digits: the
    integers float64 cannot hold are rescued as their text, as a wider int's are."""
    folder.write_config(**{"pipeline": {"workers": 1}})
    (folder.drop / "ids.csv").write_bytes(b"id,sim\n1,89014103211118510720\n2,7\n")
    (folder.drop / "mixed.csv").write_bytes(
        b"id,sim\n3,1.5\n4,9007199254740993\n5,1e300\n"
    )
    for i, name in enumerate("abc"):  # small files of one header, read together in a task
        (folder.drop / f"{name}.csv").write_bytes(b"id,sim,n\n%d,2.5,1\n" % (6 + i))
    (folder.drop / "d.csv").write_bytes(b"id,sim,n\n9,12345678901234567890,1\n")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    rows = duckdb.sql(
        f"SELECT id, sim, _rescued_data FROM read_parquet('{folder.output}/records/*/*.parquet')"
        " ORDER BY id, source_file"
    ).fetchall()
    assert rows == [
        (1, None, '{"sim": "89014103211118510720"}'), (2, 7.0, None), (3, 1.5, None),
        (4, None, '{"sim": "9007199254740993"}'), (5, 1e300, None),
        (6, 2.5, None), (7, 2.5, None), (8, 2.5, None),
        (9, None, '{"sim": "12345678901234567890"}'),
    ]


def test_an_empty_list_or_struct_of_nulls_takes_the_types_a_later_file_brings(
    folder: Folder,
) -> None:
    """`[]`, `{"x": null}` and `{}` say nothing of their values' type: a later file's
    `[1, 2]`, `{"y": 2, "x": 3, "z": "new"}` (another order, a new field) and `{"a": 1}`
    widen them, as a column of nulls takes its first values' type."""
    (folder.drop / "a.jsonl").write_bytes(
        b'{"id": 1, "tags": [], "m": {"x": null, "y": 1}, "mp": {}}\n'
    )
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    (folder.drop / "b.jsonl").write_bytes(
        b'{"id": 2, "tags": [1, 2], "m": {"y": 2, "x": 3, "z": "new"}, "mp": {"a": 1}}\n'
        b'{"id": 3, "tags": [1.5], "m": {"x": 4}}\n'
    )
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    assert "column 'tags' widened from list<untyped> to list<double>" in done.stderr
    assert "column 'mp' widened from untyped to struct<a: int64>" in done.stderr
    schema = check_one_schema(folder.output)["records"]
    assert str(schema.field("tags").type) == "list<element: double>"
    assert str(schema.field("m").type) == "struct<x: int64, y: int64, z: string>"
    assert str(schema.field("mp").type) == "struct<a: int64>"
    want = [
        (1, [], {"x": None, "y": 1, "z": None}, None),
        (2, [1.0, 2.0], {"x": 3, "y": 2, "z": "new"}, {"a": 1}),
        (3, [1.5], {"x": 4, "y": None, "z": None}, None),
    ]
    glob = f"{folder.output}/records/*/*.parquet"
    got = {
        "duckdb": duckdb.sql(f"SELECT id, tags, m, mp FROM read_parquet('{glob}') ORDER BY id")
        .fetchall(),
        "polars": pl.scan_parquet(glob).select("id", "tags", "m", "mp").sort("id").collect()
        .rows(),
        "pyarrow": [tuple(r.values()) for r in ds.dataset(folder.output / "records").to_table(
            columns=["id", "tags", "m", "mp"]).sort_by("id").to_pylist()],
    }
    for reader, rows in got.items():
        assert rows == want, reader
    assert ds.dataset(folder.output / "records").to_table()[RESCUED].null_count == 3


@pytest.mark.parametrize("later", ["b.csv", "b.jsonl"])
def test_a_column_of_nulls_committed_in_an_earlier_run_takes_the_type_of_its_first_values(
    folder: Folder, later: str
) -> None:
    """A table's empty `end_time` column: its first values are dates, times and flags in
    the table, not their text, as they would be in one run with the empty file."""
    (folder.drop / "a.csv").write_bytes(b"id,d,ts,b\n0,,,\n")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    (folder.drop / later).write_bytes(
        b"id,d,ts,b\n1,2024-01-01,2024-01-01 10:00:00,true\n" if later.endswith(".csv") else
        b'{"id": 1, "d": "2024-01-01", "ts": "2024-01-01T10:00:00Z", "b": true}\n'
    )

    done = folder.ingest("once")

    assert done.returncode == 0, done.stderr
    schema = check_one_schema(folder.output)["records"]
    assert [str(schema.field(c).type) for c in ("d", "ts", "b")] == [
        "date32[day]", "timestamp[us]", "bool"
    ]
    for reader, rows in readers(folder.output, "records", ["id", "d", "ts", "b", RESCUED]).items():
        assert rows == [
            (0, None, None, None, None),
            (1, dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 10), True, None),
        ], reader


def test_a_hint_added_for_a_column_its_table_holds_widens_the_column_to_it(
    folder: Folder,
) -> None:
    (folder.drop / "a.csv").write_bytes(b"id,code,d\n1,5,2024-01-01\n")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    folder.write_config(**FAST, **{"tables.records.columns": {"code": "string", "D": "timestamp"}})
    (folder.drop / "b.csv").write_bytes(b"id,code,d\n2,007,2024-01-02 10:30:00\n3,AB-1,\n")

    done = folder.ingest("once")

    assert done.returncode == 0, done.stderr
    assert "column 'code' widened from int64 to string" in done.stderr
    schema = check_one_schema(folder.output)["records"]
    assert [str(schema.field(c).type) for c in ("code", "d")] == [
        "string", "timestamp[us, tz=UTC]"
    ]
    utc = dt.UTC
    for reader, rows in readers(folder.output, "records", ["id", "code", "d", RESCUED]).items():
        assert [(i, code, d and d.replace(tzinfo=utc), r) for i, code, d, r in rows] == [
            (1, "5", dt.datetime(2024, 1, 1, tzinfo=utc), None),
            (2, "007", dt.datetime(2024, 1, 2, 10, 30, tzinfo=utc), None),
            (3, "AB-1", None, None),
        ], reader


@pytest.mark.parametrize(("column", "hint", "held"), [
    ("id", "bool", "int64"), ("code", "int64", "string"), ("d", "date", "timestamp[us]"),
])
def test_a_hint_that_would_narrow_a_column_its_table_holds_exits_2_naming_both(
    folder: Folder, column: str, hint: str, held: str
) -> None:
    (folder.drop / "a.csv").write_bytes(b"id,code,d\n1,x,2024-01-01 10:00:00\n")
    assert folder.ingest("once").returncode == 0
    folder.write_config(**FAST, **{"tables.records.columns": {column: hint}})
    (folder.drop / "b.csv").write_bytes(b"id,code,d\n2,y,2024-01-02 10:00:00\n")

    done = folder.ingest("once")

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f'ingest: {folder.config}: [tables.records.columns] {column} = "{hint}", but table'
        f" records holds {column} as {held} (schema v1): a hint widens a column (to float64"
        " from int64, to string from any plain type), it cannot narrow one; remove the hint"
    )
    assert (folder.drop / "b.csv").exists()


def test_column_names_in_other_cases_are_one_column_in_every_reader(folder: Folder) -> None:
    """DuckDB renames the second of `Temp` and `temp` (or of `Source_File` and ours), and
    Spark refuses the table: within a file the second is `temp_1`, as DuckDB names it;
    across files a column is the table's of the same name in any case."""
    (folder.drop / "a.csv").write_bytes(b"id,Temp,temp\n1,10,11\n")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    (folder.drop / "b.csv").write_bytes(b"ID,TEMP\n2,20\n")
    (folder.drop / "c.jsonl").write_bytes(b'{"Id": 3, "tEMP": 30, "TEMP_1": 31}\n')
    (folder.drop / "d.csv").write_bytes(b"id,Source_File\n4,x\n")
    done = folder.ingest("once")
    assert done.returncode == 3, done.stderr
    assert "column 'Source_File' is reserved" in done.stderr
    schema = check_one_schema(folder.output)["records"]
    assert schema.names == ["id", "Temp", "temp_1", "source_file", "source_sha256", RESCUED]
    for reader, rows in readers(folder.output, "records", ["id", "Temp", "temp_1"]).items():
        assert rows == [(1, 10, 11), (2, 20, None), (3, 30, 31)], reader


def test_files_are_routed_to_the_first_table_whose_patterns_match(folder: Folder) -> None:
    folder.write_config(
        watch={"settle_ms": 50},
        pipeline={"workers": 2},
        output={"flush_s": 0},
        **{
            "tables.sensors": {"patterns": ["sensor_*.csv"]},
            "tables.sensors.columns": {"temp": "float64"},
            "tables.events": {"patterns": ["*.jsonl", "sensor_x.csv"]},
        },
    )
    (folder.drop / "site").mkdir()
    (folder.drop / "site" / "sensor_a.csv").write_bytes(b"temp,station\n1,a\n2,b\n")
    (folder.drop / "sensor_x.csv").write_bytes(b"temp,station\n3,c\n")
    (folder.drop / "log.jsonl").write_bytes(b'{"event": "start", "n": 1}\n')
    (folder.drop / "other.csv").write_bytes(b"q\n7\n")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    tables = check_one_schema(folder.output)
    assert sorted(tables) == ["events", "features", "records", "sensors"]
    assert tables["sensors"].field("temp").type == pa.float64()  # the hint, though ints came
    sensors = duckdb.sql(
        f"SELECT source_file, temp FROM read_parquet('{folder.output}/sensors/*/*.parquet')"
        " ORDER BY temp"
    ).fetchall()
    assert sensors == [
        ("site/sensor_a.csv", 1.0), ("site/sensor_a.csv", 2.0), ("sensor_x.csv", 3.0),
    ]
    routed = duckdb.sql(
        f"SELECT DISTINCT source_table, source_file"
        f" FROM read_parquet('{folder.output}/features/*/*.parquet') ORDER BY 2"
    ).fetchall()
    assert routed == [
        ("events", "log.jsonl"), ("records", "other.csv"),
        ("sensors", "sensor_x.csv"), ("sensors", "site/sensor_a.csv"),
    ]


def test_every_table_of_the_samples_opens_in_every_reader_and_they_agree(folder: Folder) -> None:
    """`make run`'s own config and sample files: each table, read with no options."""
    shutil.copy(ROOT / "config.toml", folder.config)
    for sample in SAMPLE_DATA.iterdir():
        shutil.copy(sample, folder.drop / sample.name)
    done = folder.ingest("once")
    assert done.returncode == 3, done.stderr  # the malformed sample is quarantined
    tables = check_one_schema(folder.output)
    assert sorted(tables) == ["conveyor", "events", "features", "sensors", "spectra"]
    for name, schema in tables.items():
        folder_path = folder.output / name
        glob = f"{folder_path}/ingest_date=*/*.parquet"
        arrow = pq.read_table(sorted(folder_path.rglob("*.parquet"))).to_pylist()
        key = sorted(schema.names)
        want = sorted(tuple(str(r[k]) for k in key) for r in arrow)
        got = {
            "duckdb": duckdb.sql(f"SELECT * FROM read_parquet('{glob}')").to_arrow_table(),
            "polars": pl.scan_parquet(glob).collect().to_arrow(),
            "pandas": pa.Table.from_pandas(pd.read_parquet(folder_path), preserve_index=False),
            "pyarrow": ds.dataset(folder_path).to_table(),
        }
        for reader, read in got.items():
            # Readers that see the Hive folder names add the partition column; ours is the rest.
            if "ingest_date" in read.column_names:
                read = read.drop(["ingest_date"])
            rows = read.to_pylist()
            assert sorted(rows[0]) == key, f"{reader} read other columns of {name}"
            values = sorted(tuple(str(r[k]) for k in key) for r in rows)
            assert values == want, f"{reader} read other values of {name}"


@pytest.mark.parametrize(
    ("section", "values", "named"),
    [
        ("tables.Sensors", {"patterns": ["*.csv"]}, "[tables.Sensors]"),
        ("tables.features", {"patterns": ["*.csv"]}, "[tables.features]"),
        ("tables._hidden", {"patterns": ["*.csv"]}, "[tables._hidden]"),
        ("tables.sensors", {"patterns": ["*.csv"], "colour": "red"}, "'colour'"),
        ("tables.records.columns", {"temp": "float32"}, "[tables.records.columns] temp"),
        ("tables.records.columns", {"Temp": "int64", "temp": "string"},
         "[tables.records.columns] Temp and temp name one column"),
    ],
)
def test_a_bad_table_in_the_config_exits_2_naming_it(
    folder: Folder, section: str, values: dict[str, object], named: str
) -> None:
    folder.write_config(**{section: values})
    done = folder.ingest("once")
    assert done.returncode == 2
    assert named in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
