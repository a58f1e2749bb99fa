"""decode: bytes -> Arrow table by extension; bad bytes -> DecodeError with a line or offset."""

from __future__ import annotations

import datetime
import gzip
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq
import pytest

from ingest import conform, fitting
from ingest.compute.decode import DecodeError, decode, decode_block, decode_file
from ingest.compute.names import check_columns

CSV = (
    b"timestamp,temperature,count,label\n"
    b"2026-11-01T00:00:00,20.5,1,a\n"
    b"2026-11-01T00:00:01,,2,b\n"
    b"2026-11-01T00:00:02,21.25,3,\n"
)
JSONL = (
    b'{"timestamp": "2026-11-03T00:00:00", "device": "pump-0", "flow": 31.5, "rpm": 1545}\n'
    b'{"timestamp": "2026-11-03T00:00:01", "device": "pump-1", "flow": null, "rpm": 1473}\n'
)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _table() -> pa.Table:
    return pa.table({
        "timestamp": pa.array([1_700_000_000_000, 1_700_000_000_010, None], pa.timestamp("ms")),
        "speed": pa.array([1.5, None, 3.25], pa.float64()),
        "load": pa.array([1, 2, 3], pa.int64()),
        "line": pa.array(["a", "b", None], pa.string()),
    })


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _ipc_file(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa_ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _ipc_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa_ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _decode_error(name: str, data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(name, data)
    return caught.value


# --- every format decodes ---------------------------------------------------------------


def test_csv_decodes_with_typed_columns_and_empty_cells_as_null() -> None:
    table = decode("sensor.csv", CSV)
    assert table.column_names == ["timestamp", "temperature", "count", "label"]
    assert pa.types.is_timestamp(table.schema.field("timestamp").type)
    assert table.schema.field("temperature").type == pa.float64()
    assert table.schema.field("count").type == pa.int64()
    assert table.schema.field("label").type == pa.string()
    assert table.column("temperature").to_pylist() == [20.5, None, 21.25]
    assert table.column("count").to_pylist() == [1, 2, 3]


def test_gzipped_csv_decodes_to_the_same_table_as_plain_csv() -> None:
    assert decode("sensor.csv.gz", gzip.compress(CSV)).equals(decode("sensor.csv", CSV))


@pytest.mark.parametrize("name", ["events.jsonl", "events.ndjson"])
def test_json_lines_decode_with_typed_columns(name: str) -> None:
    table = decode(name, JSONL)
    assert table.column_names == ["timestamp", "device", "flow", "rpm"]
    assert table.schema.field("device").type == pa.string()
    assert table.schema.field("flow").type == pa.float64()
    assert table.schema.field("rpm").type == pa.int64()
    assert table.column("flow").to_pylist() == [31.5, None]


def test_json_lines_without_a_final_newline_keep_the_last_row() -> None:
    assert decode("e.jsonl", b'{"a": 1}\n{"a": 2}').column("a").to_pylist() == [1, 2]


def test_json_dates_alone_are_dates_and_midnights_with_a_time_are_timestamps() -> None:
    data = (
        b'{"day": "2024-01-01", "at": "2024-01-01T00:00:00", "both": "2024-01-01", "n": 1}\n'
        b'{"day": null, "at": "2024-01-02 00:00:00", "both": "2024-01-02T00:00:00"}\n'
        b'{"day": "2024-02-29", "n": 3, "deep": {"day": "2024-01-01"}}\n'
    )
    table = decode("e.jsonl", data)
    assert table.schema.field("day").type == pa.date32()
    days = [datetime.date(2024, 1, 1), None, datetime.date(2024, 2, 29)]
    assert table.column("day").to_pylist() == days
    for written_with_a_time in ("at", "both"):
        assert pa.types.is_timestamp(table.schema.field(written_with_a_time).type)
    assert table.column("n").to_pylist() == [1, None, 3]
    # A midnight in UTC written with an offset, beside dates alone: a timestamp.
    zoned = decode("e.jsonl", b'{"at": "2024-01-01T05:00:00+05:00"}\n{"at": "2024-01-02"}\n')
    assert zoned.column("at").to_pylist() == [
        datetime.datetime(2024, 1, 1), datetime.datetime(2024, 1, 2)
    ]
    # A key JSON spells otherwise than it reads: its values are read again to be sure.
    quoted = decode("e.jsonl", b'{"a\\"b": "2024-01-01"}\n{"a\\"b": "2024-01-02T00:00"}\n')
    assert pa.types.is_timestamp(quoted.schema.field('a"b').type)
    quoted = decode("e.jsonl", b'{"a\\"b": "2024-01-01"}\n{"a\\"b": "2024-01-02"}\n')
    assert quoted.schema.field('a"b').type == pa.date32()
    # Written with a time, spelled with a JSON escape: read as Arrow reads it.
    escaped = decode("e.jsonl", b'{"at": "2024-01-01\\u005400:00"}\n{"at": "2024-01-02"}\n')
    assert pa.types.is_timestamp(escaped.schema.field("at").type)


def test_many_json_date_columns_are_read_again_together() -> None:
    """Past a few such columns, they are read again as text in one pass rather than
    searched for one by one: the same verdicts."""
    first = {f"d{i}": f"2024-01-0{i + 1}" for i in range(6)}
    second = {**first, "d3": "2024-01-04T00:00:00"}
    data = (json.dumps(first) + "\n" + json.dumps(second) + "\n").encode()
    table = decode("e.jsonl", data)
    assert [table.schema.field(f"d{i}").type for i in range(6)] == [
        pa.date32(), pa.date32(), pa.date32(), pa.timestamp("s"), pa.date32(), pa.date32()
    ]


def test_json_lines_not_utf8_are_refused_at_their_line() -> None:
    for data in (b'{"a": "x"}\n{"a": "x\xff"}\n', b'{"a": 1}\n{"b\xff": "2024-01-01"}\n'):
        assert _decode_error("e.jsonl", data).line == 2


def test_json_dates_in_a_later_block_are_typed_by_the_block() -> None:
    first, _ = decode_block("e.jsonl", b'{"day": "2024-01-01", "n": 1}\n', None)
    assert first.schema.field("day").type == pa.date32()
    later, _ = decode_block("e.jsonl", b'{"day": "2024-03-01", "n": 2}\n', first.schema)
    assert later.column("day").to_pylist() == [datetime.date(2024, 3, 1)]
    timed, _ = decode_block("e.jsonl", b'{"day": "2024-03-01T10:00:00", "n": 3}\n', first.schema)
    assert timed.column("day").to_pylist() == [datetime.datetime(2024, 3, 1, 10)]
    # A first block that reads the column as text: a later block's dates stay text too.
    words, _ = decode_block("e.jsonl", b'{"day": "unknown", "n": 1}\n', None)
    dates, _ = decode_block("e.jsonl", b'{"day": "2024-03-01", "n": 2}\n', words.schema)
    assert dates.column("day").type == pa.string()
    assert dates.column("day").to_pylist() == ["2024-03-01"]


def test_csv_timestamps_written_with_the_word_utc_are_timestamps_at_their_instants() -> None:
    # BigQuery's CSV export; DuckDB reads such a column as TIMESTAMP (tests/data/csv has two).
    table = decode("bq.csv", (
        b"id,at,note\n1,,x\n2,NA,y\n3,2024-01-01 10:00:00 UTC,z\n"
        b"4,2024-01-01T23:59:59.1234567 UTC,w\n5,2024-02-03 04:05 UTC,v\n"
    ))
    assert table.schema.field("at").type == pa.timestamp("us")
    at = datetime.datetime
    assert table.column("at").to_pylist() == [
        None, None, at(2024, 1, 1, 10), at(2024, 1, 1, 23, 59, 59, 123456), at(2024, 2, 3, 4, 5),
    ]


@pytest.mark.parametrize("other", [b"2024-01-02 10:00:00", b"tomorrow", b"2024-13-01 10:00:00 UTC"])
def test_a_csv_column_with_a_value_not_written_with_utc_stays_text(other: bytes) -> None:
    table = decode("bq.csv", b"id,at\n1,2024-01-01 10:00:00 UTC\n2," + other + b"\n")
    assert table.column("at").to_pylist() == ["2024-01-01 10:00:00 UTC", other.decode()]


def test_a_csv_column_of_utc_timestamps_hinted_text_stays_text() -> None:
    table, _ = decode_file("bq.csv", b"id,at\n1,2024-01-01 10:00:00 UTC\n", text=["AT"])
    assert table.column("at").to_pylist() == ["2024-01-01 10:00:00 UTC"]


def test_later_blocks_read_utc_timestamps_as_block_0_did_and_refuse_other_values() -> None:
    first, dialect = decode_block("bq.csv", b"id,at\n1,2024-01-01 10:00:00 UTC\n", None)
    body = b"2,2024-03-01 00:00:00.5 UTC\n3,NA\n4,\n"
    later, _ = decode_block("bq.csv", body, first.schema, dialect)
    assert later.schema.field("at").type == pa.timestamp("us")
    at = datetime.datetime(2024, 3, 1, 0, 0, 0, 500000)
    assert later.column("at").to_pylist() == [at, None, None]
    blank, _ = decode_block("bq.csv", b"5,NA\n", first.schema, dialect)
    assert blank.column("at").to_pylist() == [None]
    with pytest.raises(DecodeError, match=r"invalid value '2024-03-01 00:00:00', not a ti") as bad:
        decode_block("bq.csv", b"6,2024-03-01 00:00 UTC\n7,2024-03-01 00:00:00\n", first.schema,
                     dialect)
    assert bad.value.line == 2


def test_a_later_block_types_utc_timestamps_in_a_column_block_0_left_empty() -> None:
    first, dialect = decode_block("bq.csv", b"id,at\n1,\n", None)
    later, _ = decode_block("bq.csv", b"2,2024-01-01 10:00:00 UTC\n", first.schema, dialect)
    whole = decode("bq.csv", b"id,at\n1,\n2,2024-01-01 10:00:00 UTC\n")
    assert later.schema.field("at").type == whole.schema.field("at").type == pa.timestamp("us")
    assert later.column("at").to_pylist() == [datetime.datetime(2024, 1, 1, 10)]


def test_extension_match_ignores_case() -> None:
    assert decode("SENSOR.CSV", CSV).num_rows == 3


def test_npy_1d_is_one_column_named_c0() -> None:
    table = decode("trace.npy", _npy(np.array([1.5, 2.5, np.nan])))
    assert table.column_names == ["c0"]
    assert table.schema.field("c0").type == pa.float64()
    assert table.num_rows == 3


def test_npy_2d_is_one_column_per_array_column() -> None:
    array = np.arange(12, dtype=np.int32).reshape(4, 3)
    table = decode("grid.npy", _npy(array))
    assert table.column_names == ["c0", "c1", "c2"]
    assert table.schema.field("c1").type == pa.int32()
    assert table.column("c2").to_pylist() == array[:, 2].tolist()


def test_npy_structured_array_keeps_field_names_and_types() -> None:
    array = np.zeros(3, dtype=[("time", "i8"), ("volts", "f4"), ("amps", "f8")])
    array["volts"] = [1.0, 2.0, 3.0]
    table = decode("rec.npy", _npy(array))
    assert table.column_names == ["time", "volts", "amps"]
    assert [f.type for f in table.schema] == [pa.int64(), pa.float32(), pa.float64()]
    assert table.column("volts").to_pylist() == [1.0, 2.0, 3.0]


def test_npy_big_endian_arrays_read_their_values() -> None:
    assert decode("be.npy", _npy(np.array([1.5, -2.25], ">f8"))).to_pylist() == [
        {"c0": 1.5}, {"c0": -2.25},
    ]
    array = np.array([(1, 2.5), (-3, 4.0)], dtype=[("n", ">i4"), ("x", ">f8")])
    table = decode("be.npy", _npy(array))
    assert [f.type for f in table.schema] == [pa.int32(), pa.float64()]
    assert table.to_pylist() == [{"n": 1, "x": 2.5}, {"n": -3, "x": 4.0}]


@pytest.mark.parametrize("array", [
    np.array([b"a\x00b", b"\x00\x00c", b"a\x00\x00\x01", b"ab"], "S4"),
    np.array(["a\x00b", "x", "\x00y"], "<U3"),
    np.array(["a\x00b", "x"], ">U3"),
])
def test_npy_strings_keep_the_nul_bytes_inside_them(array: np.ndarray) -> None:
    # Arrow's conversion ended each at its first NUL: b"a\x00b" was b"a", silently.
    assert decode("s.npy", _npy(array)).column("c0").to_pylist() == array.tolist()


def test_parquet_int96_timestamps_outside_the_nanosecond_range_keep_their_dates() -> None:
    stamps = [
        datetime.datetime(1500, 1, 1), datetime.datetime(2024, 1, 1, 0, 0, 0, 1),
        datetime.datetime(9999, 12, 31),
    ]
    sink = io.BytesIO()
    table = pa.table({"ts": pa.array(stamps, pa.timestamp("us"))})
    pq.write_table(table, sink, use_deprecated_int96_timestamps=True)
    assert decode("legacy.parquet", sink.getvalue()).column("ts").to_pylist() == stamps


def test_parquet_with_a_repeated_column_name_reads_both_columns() -> None:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array(["b"])], ["x", "x"]), sink)
    assert check_columns(decode("dup.parquet", sink.getvalue())).to_pylist() == [
        {"x": 1, "x_1": "b"},
    ]


def test_a_run_end_encoded_column_reads_as_its_values() -> None:
    # It was cast to text ('7', '7', None), and so had no features. (Parquet has no such
    # encoding of its own: an Arrow file.)
    runs = pa.RunEndEncodedArray.from_arrays(pa.array([2, 3], pa.int32()), pa.array([7, None]))
    buffer = io.BytesIO()
    table = pa.table({"v": runs, "k": [1, 2, 3]})
    with pa_ipc.new_file(buffer, table.schema) as writer:
        writer.write_table(table)
    read = decode("r.arrow", buffer.getvalue())
    assert read.schema.field("v").type == pa.int64()
    assert read.column("v").to_pylist() == [7, 7, None]


def test_a_uuid_in_a_list_a_struct_or_a_map_reads_as_its_text(tmp_path: Path) -> None:
    # Only a column of UUIDs was made text: one inside a list quarantined its file.
    path = tmp_path / "ids.parquet"
    one = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    duckdb.sql(
        f"COPY (SELECT 1 AS k, ['{one}'::UUID, NULL] AS ids, {{'u': '{one}'::UUID}} AS s,"
        f" MAP {{'a': '{one}'::UUID}} AS m) TO '{path.as_posix()}' (FORMAT parquet)"
    )
    table = decode("ids.parquet", path.read_bytes())
    assert table.to_pylist() == [{"k": 1, "ids": [one, None], "s": {"u": one}, "m": [("a", one)]}]
    written = tmp_path / "out.parquet"
    pq.write_table(table, written)  # and a reader opens it
    assert duckdb.sql(f"SELECT ids[1] FROM '{written.as_posix()}'").fetchall() == [(one,)]


def test_a_uuid_column_as_duckdb_writes_it_reads_as_its_text(tmp_path: Path) -> None:
    path = tmp_path / "ids.parquet"
    duckdb.sql(
        "COPY (SELECT 1 AS k, 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6'::UUID AS id"
        f" UNION ALL SELECT 2, NULL) TO '{path.as_posix()}' (FORMAT parquet)"
    )
    table = decode("ids.parquet", path.read_bytes())
    assert table.schema.field("id").type == pa.string()
    assert table.sort_by("k").column("id").to_pylist() == [
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", None,
    ]


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_npz_is_one_column_per_array_named_by_key(compressed: bool) -> None:
    data = _npz(compressed, x=np.arange(4.0), n=np.arange(4, dtype=np.int16))
    table = decode("pair.npz", data)
    assert table.column_names == ["x", "n"]
    assert table.schema.field("x").type == pa.float64()
    assert table.schema.field("n").type == pa.int16()
    assert table.column("n").to_pylist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("name", "encode"),
    [("t.parquet", _parquet), ("t.arrow", _ipc_file), ("t.arrow", _ipc_stream)],
    ids=["parquet", "arrow-file", "arrow-stream"],
)
def test_columnar_formats_round_trip_schema_and_values(
    name: str, encode: Callable[[pa.Table], bytes]
) -> None:
    table = _table()
    decoded = decode(name, encode(table))
    assert decoded.schema.equals(table.schema)
    assert decoded.equals(table)


def test_arrow_ipc_aliases_decode() -> None:
    for name in ("t.feather", "t.ipc"):
        assert decode(name, _ipc_file(_table())).equals(_table())


# --- errors carry where they happened ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"a,b,c\n1,2,3\n4,5\n7,8,9\n", 3),  # short row
        (b"a,b,c\n1,2,3,4\n", 2),  # long row
        (b"a,b,c\n1,2,3\n4,5,6\n7,8,9\n1,2\n", 5),  # last row
        (b"a,b\r\n1,2\r\n3\r\n", 3),  # CRLF line endings
    ],
    ids=["short", "long", "last", "crlf"],
)
def test_ragged_csv_row_reports_the_line_of_that_row(data: bytes, line: int) -> None:
    error = _decode_error("bad.csv", data)
    assert error.line == line
    assert "Expected" in str(error)


def test_ragged_csv_row_deep_in_a_large_file_reports_its_line() -> None:
    rows = 200_000  # several of Arrow's blocks
    data = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(rows)) + b"1\n"
    assert _decode_error("big.csv", data).line == rows + 2


def test_ragged_csv_row_after_a_blank_line_reports_its_physical_line() -> None:
    assert _decode_error("bad.csv", b"a,b\n1,2\n\n3,4\n5\n").line == 5


@pytest.mark.parametrize("after", [0, 1, 10])
def test_a_quote_that_never_closes_is_named_at_the_line_it_opens_on(after: int) -> None:
    # With more fields after it than the header has, Arrow counts the fields of the
    # record the quote swallowed the file into: the quote is the error, not the count.
    rest = b"".join(b"%d,ok,4\n" % i for i in range(after))
    error = _decode_error("open.csv", b'id,text,v\n1,"abc,3\n' + rest)
    assert error.line == 2
    assert "never closed" in str(error)


def test_ragged_csv_row_in_gzipped_csv_reports_its_line() -> None:
    assert _decode_error("bad.csv.gz", gzip.compress(b"a,b\n1,2\n3\n")).line == 3


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b'{bad\n{"a": 1}\n', 1),
        (b'{"a": 1}\n{"a": 2,}\n{"a": 3}\n', 2),
        (b'{"a": 1}\n{"a": 2}\n{"a":\n', 3),
        (b'{"a": 1}\n[1, 2]\n', 2),  # not an object
        (b'{"a": 1}\r\n{"a": 2}\r\n{x\r\n', 3),
    ],
    ids=["first", "trailing-comma", "truncated-last", "array", "crlf"],
)
def test_bad_json_line_reports_its_one_based_line(data: bytes, line: int) -> None:
    assert _decode_error("bad.jsonl", data).line == line


def test_bad_json_line_deep_in_a_large_file_reports_its_line() -> None:
    rows = 150_000  # about 1.6 MB, more than one of Arrow's blocks
    data = b"".join(b'{"a": %d}\n' % i for i in range(rows)) + b"{x\n"
    assert _decode_error("big.jsonl", data).line == rows + 1


def test_a_value_of_another_kind_deep_in_json_lines_is_rescued_not_fatal() -> None:
    # Valid JSON throughout; Arrow refuses the file, so it is read line by line.
    lines = [json.dumps({"a": i, "b": 1.5}) for i in range(100_000)]
    lines[80_000] = json.dumps({"a": 80_000, "b": "oops"})
    lines.insert(10, "")  # a blank line
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) > 2 << 20
    table = decode("big.jsonl", data)
    assert table.num_rows == 100_000
    schema = conform.target(table, None, {})
    assert schema.field("b").type == pa.float64()
    fitted = fitting.fit(table, schema)
    assert fitted["b"][80_000].as_py() is None
    assert fitted["b"][79_999].as_py() == 1.5
    assert json.loads(fitted["_rescued_data"][80_000].as_py()) == {"b": "oops"}
    assert fitted["_rescued_data"].null_count == 99_999


@pytest.mark.parametrize(("data", "expected"), [
    (b'{"l": [null, 1]}\n{"l": [2]}\n', [[None, 1], [2]]),
    (b'{"s": {"l": [null, "a"]}}\n', [{"l": [None, "a"]}]),
    (b'{"l": [[null, 1]]}\n', [[[None, 1]]]),
])
def test_a_json_list_that_starts_with_null_keeps_every_value(
    data: bytes, expected: list[object]
) -> None:
    table = decode("a.jsonl", data)
    table.validate(full=True)
    assert [row for (row,) in (r.values() for r in table.to_pylist())] == expected
    # Every reader opens what is written of it.
    fitted = fitting.fit(table, conform.target(table, None, {}))
    buffer = io.BytesIO()
    pq.write_table(fitted, buffer)
    assert pq.read_table(pa.BufferReader(buffer.getvalue())).column(0).to_pylist() == expected


@pytest.mark.parametrize("data", [
    b'{"s": {"a": 1}}\n{"s": {"a": "x"}}\n',
    b'{"l": [1, "a"]}\n',
    # Arrow takes `true` for 1.0 where floats came first: a flag is not a number here.
    b'{"l": [1.5]}\n{"l": [true]}\n',
    b'{"l": [2.5, true, false]}\n',
    b'{"o": {"a": 1.5}}\n{"o": {"a": true}}\n',
    b'{"o": {"a": [1.5]}}\n{"o": {"a": [false]}}\n',
])
def test_kinds_mixed_inside_a_json_value_make_a_column_of_its_text(data: bytes) -> None:
    table = decode("a.jsonl", data)
    assert table.column(0).type == pa.string()

    def canonical(value: object) -> str:  # `true` and `1.0` compare equal in Python
        return json.dumps(value, sort_keys=True)

    assert [canonical(json.loads(value)) for value in table.column(0).to_pylist()] == [
        canonical(next(iter(json.loads(line).values()))) for line in data.splitlines()
    ]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
def test_a_line_separator_inside_a_string_of_a_mixed_file_stays_in_its_string(
    separator: str,
) -> None:
    # Read line by line (`v` mixes kinds), the file was split at it, mid-string.
    data = f'{{"v": 1, "s": "a{separator}b"}}\n{{"v": "x", "s": "c"}}\n'.encode()
    table = decode("a.jsonl", data)
    assert table.column("s").to_pylist() == [f"a{separator}b", "c"]


def test_a_byte_order_mark_before_a_mixed_file_is_read_as_arrow_reads_it() -> None:
    table = decode("a.jsonl", b'\xef\xbb\xbf{"a": 1}\n{"a": "x"}\n{"a": 2}\n')
    assert table.column("a").to_pylist() == ["1", "x", "2"]


def test_an_integer_past_64_bits_in_a_mixed_file_is_read_as_arrow_reads_it() -> None:
    # Arrow's reader takes it as a float; the line-by-line reader failed on it.
    data = b'{"v": 1, "big": 18446744073709551615}\n{"v": "x", "big": 2}\n'
    table = decode("a.jsonl", data)
    fitted = fitting.fit(table, conform.target(table, None, {}))
    assert fitted.column("big").to_pylist() == [1.8446744073709552e19, 2.0]


@pytest.mark.parametrize(("line", "reason"), [
    ('{"v": 1e400}', "Number too big to be stored in double"),
    ('{"v": 1, "v": 2}', "the key 'v' is given twice in one object"),
])
def test_a_mixed_file_refuses_what_arrows_reader_refuses_naming_the_line(
    line: str, reason: str
) -> None:
    # A mixed file read line by line took 1e400 as infinity, and a key given twice as
    # Python's json takes it (the last value); Arrow's reader refuses both elsewhere.
    data = f'{{"v": 1}}\n{{"v": "x"}}\n{line}\n'.encode()
    error = _decode_error("a.jsonl", data)
    assert str(error) == reason and error.line == 3
    assert _decode_error("b.jsonl", f"{line}\n".encode()).line == 1


@pytest.mark.parametrize(("depth", "nesting", "refused"), [
    (98, "object", False), (99, "object", True),
    (49, "list", False), (50, "list", True),
])
def test_a_json_value_nested_past_what_readers_open_is_refused(
    depth: int, nesting: str, refused: bool
) -> None:
    # Written, it made the whole table's glob fail to open in pyarrow and pandas.
    value: object = 1
    for _ in range(depth):
        value = {"a": value} if nesting == "object" else [value]
    table = decode("deep.jsonl", (json.dumps({"x": value}) + "\n").encode())
    if refused:
        with pytest.raises(DecodeError, match=r"column 'x' is nested 10\d levels deep"):
            check_columns(table)
        return
    fitted = fitting.fit(check_columns(table), conform.target(table, None, {}))
    buffer = io.BytesIO()
    pq.write_table(fitted, buffer)
    assert pq.read_table(pa.BufferReader(buffer.getvalue())).num_rows == 1


def test_a_later_json_block_keeps_the_times_of_a_column_its_first_block_read_as_text() -> None:
    # Block 0's "soon" made the column text; a later block of times alone was read as
    # timestamps, then cast back to text in UTC: the same input text, spelled two ways.
    first = pa.schema([("d", pa.string())])
    block = b'{"d": "2024-01-01T10:00:00+05:00"}\n{"d": "2024-01-01T10:00:00"}\n'
    table, _ = decode_block("a.jsonl", block, first)
    assert table.column("d").to_pylist() == ["2024-01-01T10:00:00+05:00", "2024-01-01T10:00:00"]


def test_json_dates_stay_dates_though_a_nested_key_of_their_name_holds_times() -> None:
    # The search of the bytes for a time under the key found the nested one's.
    data = b'{"d": "2024-01-01", "o": {"d": "2024-01-01T10:00:00"}}\n{"d": "2024-01-02"}\n'
    table = decode("a.jsonl", data)
    assert table.schema.field("d").type == pa.date32()
    assert table.column("d").to_pylist() == [datetime.date(2024, 1, 1), datetime.date(2024, 1, 2)]
    timed = decode("b.jsonl", b'{"d": "2024-01-01T00:00:00"}\n{"d": "2024-01-02"}\n')
    assert pa.types.is_timestamp(timed.schema.field("d").type)


@pytest.mark.parametrize("mixed", [b'"x"', b"[null, 1]"], ids=["kinds", "list-from-null"])
def test_a_file_read_line_by_line_types_its_times_and_dates_as_arrow_does(mixed: bytes) -> None:
    # Read line by line (a column of mixed kinds, a list starting with null), its times
    # and dates stayed text, and made a new table's columns text.
    data = (b'{"t": "2024-01-01T10:00:00Z", "d": "2024-01-01", "v": 1}\n'
            b'{"t": "2024-01-02T10:00:00+01:00", "d": "2024-01-02", "v": %s}\n' % mixed)
    table = decode("a.jsonl", data)
    assert pa.types.is_timestamp(table.schema.field("t").type)
    assert table.column("t").to_pylist() == [
        datetime.datetime(2024, 1, 1, 10), datetime.datetime(2024, 1, 2, 9)
    ]
    assert table.column("d").to_pylist() == [datetime.date(2024, 1, 1), datetime.date(2024, 1, 2)]
    kept = decode_file("a.jsonl", data, text=("t", "d"))[0]
    assert kept.column("t").to_pylist() == ["2024-01-01T10:00:00Z", "2024-01-02T10:00:00+01:00"]
    assert kept.column("d").to_pylist() == ["2024-01-01", "2024-01-02"]


def test_bad_json_line_after_a_blank_line_reports_its_physical_line() -> None:
    assert _decode_error("bad.jsonl", b'{"a": 1}\n\n{"a": 2}\n{x\n').line == 4


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl"])
@pytest.mark.parametrize(
    "data", [b"", b"\n", b"\r\n \n\t\n"], ids=["empty", "a-line-break", "blank-lines"]
)
def test_empty_text_file_is_a_decode_error(name: str, data: bytes) -> None:
    # A file of blank lines holds no more than an empty one, and fares the same.
    _decode_error(name, data)


def test_truncated_gzip_is_a_decode_error() -> None:
    error = _decode_error("cut.csv.gz", gzip.compress(CSV)[:-6])
    assert "gzip" in str(error)
    assert error.offset == 0


def test_plain_text_named_csv_gz_is_a_decode_error() -> None:
    error = _decode_error("liar.csv.gz", CSV)
    assert "gzip" in str(error)


def test_multi_member_gzip_keeps_every_member() -> None:
    # `cat a.csv.gz b.gz > c.csv.gz`, pigz and bgzip all write valid multi-member files.
    data = gzip.compress(b"a,b\n1,2\n") + gzip.compress(b"3,4\n")
    assert decode("joined.csv.gz", data).column("a").to_pylist() == [1, 3]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-20],  # footer cut
        lambda b: b[: len(b) // 2],  # half a file
        lambda b: b"PAR1" + b"\x00" * 16 + b"PAR1",  # magic, no metadata
        lambda b: b"not parquet at all",
    ],
    ids=["footer-cut", "half", "magic-only", "text"],
)
def test_corrupt_parquet_is_a_decode_error(damage: Callable[[bytes], bytes]) -> None:
    error = _decode_error("bad.parquet", damage(_parquet(_table())))
    assert "Parquet" in str(error)


def test_corrupt_parquet_page_header_is_a_decode_error() -> None:
    data = bytearray(_parquet(_table()))
    data[4:20] = b"\xff" * 16  # the first page header, just after the leading magic
    _decode_error("bad.parquet", bytes(data))


def test_npz_arrays_of_unequal_length_are_a_decode_error() -> None:
    error = _decode_error("uneven.npz", _npz(x=np.arange(3.0), y=np.arange(4.0)))
    assert "3" in str(error) and "4" in str(error)


def test_npz_with_a_2d_array_is_a_decode_error_naming_it() -> None:
    error = _decode_error("grid.npz", _npz(grid=np.zeros((2, 2))))
    assert "grid" in str(error)


def test_truncated_npz_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode("cut.npz", _npz(x=np.arange(10.0))[:-10])


def test_truncated_npz_is_not_silently_accepted() -> None:
    # Whatever the type, a truncated archive must raise, never decode to a partial table.
    with pytest.raises((DecodeError, zipfile.BadZipFile)):
        decode("cut.npz", _npz(x=np.arange(10.0))[:-10])


def test_corrupt_deflated_npz_member_is_a_decode_error() -> None:
    data = bytearray(_npz(True, x=np.arange(100.0)))
    data[60:70] = b"0123456789"  # inside the deflated member
    _decode_error("bad.npz", bytes(data))


@pytest.mark.parametrize(
    "data",
    [
        _npy(np.zeros((2, 2, 2))),
        _npy(np.float64(3.0)),
        _npy(np.arange(5.0))[:-8],
        b"garbage",
    ],
    ids=["3-d", "0-d", "truncated", "not-npy"],
)
def test_bad_npy_is_a_decode_error(data: bytes) -> None:
    _decode_error("bad.npy", data)


def test_npy_with_a_header_cut_short_is_a_decode_error() -> None:
    data = b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',}\n" + b"\0" * 16
    assert "not a valid .npy file" in str(_decode_error("cut.npy", data))


@pytest.mark.parametrize(("name", "said"), [
    ("text.npy", "not a .npy file"), ("text.npz", "not an .npz file"),
])
def test_bytes_of_another_format_are_named_so_and_no_pickle_is_spoken_of(
    name: str, said: str
) -> None:
    error = str(_decode_error(name, b"a,b\n1,2\n"))
    assert said in error and "pickle" not in error


def _zip(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name.replace("__", "/"), data)
    return buffer.getvalue()


@pytest.mark.parametrize("members", [
    {"x.npy": np.arange(3), "x": np.arange(7, 10)},
    {"x": np.arange(3), "x.npy": np.arange(7, 10)},
], ids=["x.npy-then-x", "x-then-x.npy"])
def test_an_npz_holding_two_arrays_of_one_name_is_refused_not_read_as_one(
    members: dict[str, np.ndarray],
) -> None:
    error = _decode_error("two.npz", _zip(**{name: _npy(a) for name, a in members.items()}))
    assert "more than one array named 'x'" in str(error)


def test_an_npz_member_that_is_not_an_array_is_named() -> None:
    data = _zip(**{"a.npy": _npy(np.arange(3)), "readme.txt": b"hi"})
    assert "member 'readme.txt' is not a NumPy array" in str(_decode_error("r.npz", data))


def test_a_structured_array_in_an_npz_is_refused_with_why() -> None:
    data = _npz(a=np.array([(1, 2.0)], dtype=[("x", "i4"), ("y", "f8")]))
    assert "array 'a' is a structured array" in str(_decode_error("s.npz", data))


@pytest.mark.parametrize("code", [0xD800, 0x110000], ids=["lone-surrogate", "past-10ffff"])
def test_numpy_text_that_is_not_unicode_is_refused_naming_its_row(code: int) -> None:
    array = np.frombuffer(np.array([0x61, 0x62, code, 0x63], "<u4").tobytes(), "<U2")
    error = _decode_error("t.npy", _npy(array))
    assert "column 'c0' holds text that is not Unicode, row 2 the first" in str(error)


def test_numpy_text_of_every_plane_reads_back() -> None:
    array = np.array(["a", "é", "\U0010ffff", "\ud7ff\ue000", ""])
    assert decode("t.npy", _npy(array)).column("c0").to_pylist() == array.tolist()


def test_pickled_npy_is_refused_not_unpickled() -> None:
    error = _decode_error("objects.npy", _npy(np.array([{"a": 1}, None], dtype=object)))
    assert "pickle" in str(error)


@pytest.mark.parametrize(
    "array",
    [np.array([1 + 2j, 3j]), np.zeros((2, 2), dtype=[("x", "f8")])],
    ids=["complex", "2-d-structured"],
)
def test_unsupported_npy_array_is_a_decode_error(array: np.ndarray) -> None:
    with pytest.raises(DecodeError):
        decode("odd.npy", _npy(array))


@pytest.mark.parametrize(
    "data",
    [b"junk", _ipc_file(_table())[:-30], _ipc_stream(_table())[:-30]],
    ids=["junk", "truncated-file", "truncated-stream"],
)
def test_bad_arrow_ipc_is_a_decode_error(data: bytes) -> None:
    error = _decode_error("bad.arrow", data)
    assert "Arrow" in str(error)


def test_a_cut_short_arrow_file_is_reported_as_a_file_not_as_a_stream() -> None:
    error = str(_decode_error("cut.arrow", _ipc_file(_table())[:-20]))
    assert error.startswith("not a valid Arrow IPC file: "), error


@pytest.mark.parametrize("name", ["notes.txt", "archive.gz", "data.csv.bz2", "noext"])
def test_unknown_extension_is_a_decode_error_naming_the_file(name: str) -> None:
    error = _decode_error(name, b"a,b\n1,2\n")
    assert repr(name) in str(error)


def test_a_column_of_ids_beyond_2_53_is_read_as_their_text_with_null_markers_still_null() -> None:
    data = b"id,v\n1,1.5\n2,NA\n3,12345678901234567890\n4,\n"
    table = decode("a.csv", data)
    assert table.column("v").to_pylist() == ["1.5", None, "12345678901234567890", None]
    # Large floats alone, or a decimal comma's numbers, are read as numbers as before.
    assert decode("b.csv", b"v\n6.02e23\n1.5\n").column("v").to_pylist() == [6.02e23, 1.5]
    comma = decode("c.csv", b"id;v\n1;1,5\n2;12345678901234567890\n3;2,5\n")
    assert pa.types.is_floating(comma.column("v").type)


def test_a_column_named_as_one_of_ingests_own_after_trimming_is_refused() -> None:
    with pytest.raises(DecodeError, match="reserved"):
        check_columns(decode("a.jsonl", b'{" Source_File": "mine", "x": 1}\n'))
    assert check_columns(decode("b.jsonl", b'{" x": 1, "X": 2}\n')).column_names == ["x", "X_1"]


def test_utf16_without_a_byte_order_mark_is_refused_naming_the_encoding() -> None:
    with pytest.raises(DecodeError, match="UTF-16 text without a byte-order mark") as caught:
        decode("wide.csv", "a,b\n1,2\n3,4\n".encode("utf-16-le"))
    assert caught.value.offset == 1  # the high byte of the first character
    assert decode("marked.csv", "a,b\n1,2\n".encode("utf-16")).to_pylist() == [{"a": 1, "b": 2}]


def test_a_leading_zero_past_the_first_mb_leaves_a_number_column_as_it_is() -> None:
    # A column is text where a value with a leading zero is in the file's first MB (the
    # head DuckDB's sniffer, too, types columns by), whatever else starts with a zero.
    rows = [b"01/02/2024,%d,%d" % (i, i) for i in range(120_000)]
    late = b"day,n,m\n" + b"\n".join(rows) + b"\n01/02/2024,0042,0043\n"
    early = b"day,n,m\n01/02/2024,0042,5\n" + b"\n".join(rows) + b"\n"
    assert len(late) > 2 << 20
    table, _ = decode_file("late.csv", late)
    assert table.schema.field("n").type == pa.int64() and table.column("n")[-1].as_py() == 42
    table, _ = decode_file("early.csv", early)
    assert table.column("n").to_pylist()[:2] == ["0042", "0"]
    assert table.schema.field("m").type == pa.int64()


def test_a_header_with_a_literal_quote_is_one_line() -> None:
    # Counted, its quotes never balanced: the whole file was taken for the header, 0 rows.
    table, _ = decode_file("h.csv", b'id,note 12"\n1,"a, b"\n3,x\n')
    assert table.column_names == ["id", 'note 12"']
    assert table.to_pylist() == [{"id": 1, 'note 12"': "a, b"}, {"id": 3, 'note 12"': "x"}]
