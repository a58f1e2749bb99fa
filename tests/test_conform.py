"""The type rules of one schema per table, on Arrow tables in memory."""

from __future__ import annotations

import datetime
import decimal
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import conform, fitting
from ingest.compute import runs
from ingest.compute.decode import decode
from ingest.widen import RESCUED, is_untyped, matching, merge, merge_schemas, normalise


@pytest.mark.parametrize(
    ("table", "file", "result"),
    [
        (pa.int64(), pa.float64(), pa.float64()),
        (pa.float64(), pa.int64(), pa.float64()),
        (pa.int64(), pa.null(), pa.int64()),
        (pa.null(), pa.string(), pa.string()),
        (pa.float64(), pa.string(), pa.float64()),  # text never widens a number column
        (pa.string(), pa.int64(), pa.string()),  # numbers reaching text stay text
        (pa.date32(), pa.timestamp("us"), pa.timestamp("us")),
        (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), pa.timestamp("us", tz="UTC")),
        (pa.bool_(), pa.int64(), pa.bool_()),
        # Two decimals widen to hold both exactly, as DuckDB unites them; past 38 digits,
        # or with a negative scale, the table's type stays. A decimal and an integer are
        # not united: the table's type stays.
        (pa.decimal128(10, 2), pa.decimal128(12, 4), pa.decimal128(12, 4)),
        (pa.decimal128(12, 4), pa.decimal128(10, 1), pa.decimal128(13, 4)),
        (pa.decimal128(38, 0), pa.decimal128(10, 2), pa.decimal128(38, 0)),
        (pa.decimal128(5, -2), pa.decimal128(7, -1), pa.decimal128(5, -2)),
        (pa.decimal128(10, 2), pa.int64(), pa.decimal128(10, 2)),
        (pa.int64(), pa.decimal128(10, 2), pa.int64()),
        (pa.decimal128(10, 2), pa.float64(), pa.decimal128(10, 2)),
        (pa.float64(), pa.decimal128(10, 2), pa.float64()),
    ],
)
def test_types_only_widen(table: pa.DataType, file: pa.DataType, result: pa.DataType) -> None:
    assert merge(table, file) == result


def test_narrow_types_are_normalised_to_one_width_per_family() -> None:
    assert normalise(pa.int8()) == pa.int64()
    assert normalise(pa.uint32()) == pa.int64()
    assert normalise(pa.float32()) == pa.float64()
    assert normalise(pa.timestamp("ns", tz="Europe/Berlin")) == pa.timestamp("us", tz="UTC")
    assert normalise(pa.dictionary(pa.int32(), pa.string())) == pa.string()
    assert normalise(pa.time32("s")) == pa.string()  # Spark opens no Parquet TIME column
    assert normalise(pa.time64("ns")) == pa.string()
    assert normalise(pa.duration("ns")) == pa.int64()  # microseconds: Delta holds no duration


def test_nanoseconds_are_floored_to_microseconds_and_a_duration_truncated() -> None:
    data = pa.table({
        "ts": pa.array([-1, 1_999, None], pa.timestamp("ns")),
        "took": pa.array([-1_500, 1_999, None], pa.duration("ns")),
        "clock": pa.array([1, 2, None], pa.time64("ns")),
    })
    schema = conform.target(data, None, {})
    fitted = fitting.fit(data, schema)
    assert fitted["ts"].cast(pa.int64()).to_pylist() == [-1, 1, None]
    assert fitted["took"].cast(pa.int64()).to_pylist() == [-1, 1, None]
    assert fitted["clock"].to_pylist() == ["00:00:00.000000001", "00:00:00.000000002", None]
    assert fitted["_rescued_data"].null_count == 3


def test_times_inside_a_fixed_size_list_are_microseconds_too() -> None:
    data = pa.table({
        "took": pa.array([[1, 2], None], pa.list_(pa.duration("s"), 2)),
        "at": pa.array([[1_500, 3_000], [None, 0]], pa.list_(pa.timestamp("ns"), 2)),
        "inner": pa.array(
            [{"f": [5, 6]}, None], pa.struct([("f", pa.list_(pa.duration("ms"), 2))])
        ),
    })
    fitted = fitting.fit(data, conform.target(data, None, {}))
    assert fitted["took"].to_pylist() == [[1_000_000, 2_000_000], None]
    assert [[v and v.microsecond for v in row] for row in fitted["at"].to_pylist()] == [
        [1, 3], [None, 0]
    ]
    assert fitted["inner"].to_pylist() == [{"f": [5_000, 6_000]}, None]
    assert fitted["_rescued_data"].null_count == 2


def test_a_nanosecond_before_1970_is_floored_at_any_depth_as_in_a_column() -> None:
    data = pa.table({
        "at": pa.array([-1, 1_500], pa.timestamp("ns")),
        "listed": pa.array([[-1, 1_500], None], pa.large_list(pa.timestamp("ns"))),
        "fixed": pa.array([[-1, 1_500], None], pa.list_(pa.timestamp("ns"), 2)),
        "inner": pa.array(
            [{"t": -1, "k": 5}, None],
            pa.struct([("t", pa.timestamp("ns")), ("k", pa.duration("s"))]),
        ),
        "keyed": pa.array([[("a", -1)], None], pa.map_(pa.string(), pa.timestamp("ns"))),
    })
    fitted = fitting.fit(data, conform.target(data, None, {}))
    before = datetime.datetime(1969, 12, 31, 23, 59, 59, 999999)
    after = datetime.datetime(1970, 1, 1, 0, 0, 0, 1)
    assert fitted["at"].to_pylist() == [before, after]
    assert fitted["listed"].to_pylist() == [[before, after], None]
    assert fitted["fixed"].to_pylist() == [[before, after], None]
    assert fitted["inner"].to_pylist() == [{"t": before, "k": 5_000_000}, None]
    assert fitted["keyed"].to_pylist() == [[("a", before)], None]


def test_a_decimal_of_negative_scale_is_held_as_the_same_whole_numbers() -> None:
    # Parquet holds no negative scale: `decimal(5, -2)` counts hundreds, `decimal(7, 0)` ones.
    data = pa.table({
        "hundreds": pa.array([decimal.Decimal("123E2"), None], pa.decimal128(5, -2)),
        "vast": pa.array([decimal.Decimal("1E+10")], pa.decimal128(36, -5)).take([0, 0]),
    })
    schema = conform.target(data, None, {})
    assert schema.field("hundreds").type == pa.decimal128(7, 0)
    assert schema.field("vast").type == pa.string()  # 41 digits: more than a decimal128
    fitted = fitting.fit(data, schema)
    sink = pa.BufferOutputStream()
    pq.write_table(fitted, sink)
    back = pq.read_table(pa.BufferReader(sink.getvalue()))
    assert back["hundreds"].to_pylist() == [decimal.Decimal(12300), None]
    assert [decimal.Decimal(v) for v in back["vast"].to_pylist()] == [decimal.Decimal(10**10)] * 2


def test_a_timestamp_past_arrows_calendar_is_rescued_as_its_date_not_a_count() -> None:
    far = np.array(["300000-01-01T00:00:00", "2024-01-01T00:00:00"], dtype="datetime64[s]")
    data = pa.table({"at": pa.array(far), "zoned": pa.array(far).cast(pa.timestamp("s", "UTC"))})
    fitted = fitting.fit(data, conform.target(data, None, {}))
    assert fitted["at"].to_pylist() == [None, datetime.datetime(2024, 1, 1)]
    assert json.loads(fitted["_rescued_data"][0].as_py()) == {
        "at": "300000-01-01 00:00:00", "zoned": "300000-01-01 00:00:00Z"
    }


def test_a_value_python_cannot_hold_is_rescued_as_arrow_writes_it() -> None:
    data = pa.table({"on": pa.array([3_000_000], pa.date32())})  # beyond Python's year 9999
    fitted = fitting.fit(data, conform.target(data, None, {"on": "bool"}))
    assert fitted["on"].to_pylist() == [None]
    assert fitted["_rescued_data"].to_pylist() == ['{"on": "10183-09-21"}']


def test_a_date_is_rescued_as_its_text_not_a_quoted_string() -> None:
    data = pa.table({"on": pa.array([1], pa.date32())})
    fitted = fitting.fit(data, conform.target(data, None, {"on": "bool"}))
    assert fitted["_rescued_data"].to_pylist() == ['{"on": "1970-01-02"}']


def test_a_column_is_the_tables_of_the_same_name_in_any_case() -> None:
    table = pa.schema([("Temp", pa.int64()), ("v", pa.int64()), ("source_file", pa.string()),
                       ("source_sha256", pa.string()), ("_rescued_data", pa.string())])
    data = pa.table({"TEMP": [1.5], "V": [2], "new": ["x"]})
    merged = merge_schemas(table, conform.own_schema(data, {}))
    assert merged.names == ["Temp", "v", "new", "source_file", "source_sha256", "_rescued_data"]
    assert merged.field("Temp").type == pa.float64()
    fitted = fitting.fit(data, merged)
    assert fitted.select(["Temp", "v", "new"]).to_pylist() == [{"Temp": 1.5, "v": 2, "new": "x"}]


def test_an_exact_name_is_matched_before_one_in_another_case() -> None:
    assert matching(["temp", "Temp", "x"], ["TEMP", "temp"]) == {"temp": "temp", "Temp": "TEMP"}
    assert matching(["Temp"], ["temp", "TEMP"]) == {"Temp": "temp"}  # the file's first


def test_a_new_column_is_appended_before_the_identity_columns() -> None:
    table = pa.schema([("a", pa.int64()), ("source_file", pa.string()),
                       ("source_sha256", pa.string()), ("_rescued_data", pa.string())])
    merged = merge_schemas(table, pa.schema([("b", pa.float64()), ("a", pa.float64())]))
    assert merged.names == ["a", "b", "source_file", "source_sha256", "_rescued_data"]
    assert merged.field("a").type == pa.float64()


def test_a_hinted_column_keeps_its_type_and_rescues_what_does_not_fit() -> None:
    data = pa.table({"station": [1, 2], "temp": ["20.5", "warm"]})
    schema = conform.target(data, None, {"station": "string", "temp": "float64"})
    assert schema.field("station").type == pa.string()
    fitted = fitting.fit(data, schema)
    assert fitted["station"].to_pylist() == ["1", "2"]
    assert fitted["temp"].to_pylist() == [20.5, None]
    assert fitted["_rescued_data"].to_pylist() == [None, '{"temp": "warm"}']


def test_an_all_null_column_is_untyped_until_a_file_gives_it_values() -> None:
    first = conform.target(pa.table({"e": pa.nulls(2)}), None, {})
    assert first.field("e").type == pa.string() and is_untyped(first.field("e"))
    # A second part that has no value for it either leaves it untyped.
    assert is_untyped(merge_schemas(first, first).field("e"))
    second = conform.target(pa.table({"e": [1, 2]}), first, {})
    assert second.field("e").type == pa.int64() and not is_untyped(second.field("e"))
    # The earlier part, fitted to the new schema, reads null.
    old = fitting.fit(pa.table({"e": pa.nulls(2, pa.string())}), second)
    assert old["e"].type == pa.int64() and old["e"].null_count == 2


def test_an_integer_beyond_two_to_the_53_is_rescued_in_a_float_column() -> None:
    big = 2**53 + 1
    table = pa.schema([("v", pa.float64()), ("_rescued_data", pa.string())])
    fitted = fitting.fit(pa.table({"v": [1, big]}), table)
    assert fitted["v"].to_pylist() == [1.0, None]
    assert json.loads(fitted["_rescued_data"][1].as_py()) == {"v": str(big)}


def test_a_text_column_of_mostly_numbers_is_numeric() -> None:
    schema = conform.target(pa.table({"t": ["1", "2", "oops", None]}), None, {})
    assert schema.field("t").type == pa.int64()
    assert conform.target(pa.table({"t": ["a", "b", "3"]}), None, {}).field("t").type == (
        pa.string()
    )


def test_an_empty_cell_in_a_numeric_column_is_missing_not_text_to_rescue() -> None:
    table = pa.schema([("level", pa.float64()), ("_rescued_data", pa.string())])
    fitted = fitting.fit(pa.table({"level": ["n/a", "2.5", "", "low"]}), table)
    assert fitted["level"].to_pylist() == [None, 2.5, None, None]
    assert fitted["_rescued_data"].to_pylist() == [
        '{"level": "n/a"}', None, None, '{"level": "low"}'
    ]
    # Nor do empty cells count against a text column's share of numbers.
    mostly = pa.table({"t": ["1", "", "", "oops", "2"]})
    assert conform.target(mostly, None, {}).field("t").type == pa.int64()


@given(st.lists(st.one_of(
    st.none(), st.integers(-(2**60), 2**60), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
), max_size=30))
def test_every_value_is_kept_in_its_column_or_in_rescued_data(values: list[object]) -> None:
    """Whatever a text column holds, each value survives: typed, or as its raw text."""
    raw = [None if v is None else str(v) for v in values]
    data = pa.table({"c": pa.array(raw, pa.string())})
    schema = conform.target(data, None, {})
    fitted = fitting.fit(data, schema)
    textual = schema.field("c").type == pa.string()
    for text, kept, rescued in zip(
        raw, fitted["c"].to_pylist(), fitted["_rescued_data"].to_pylist(), strict=True
    ):
        if text is None or (text == "" and not textual):  # an empty cell is a missing value
            assert kept is None and rescued is None
        elif rescued is not None:
            assert kept is None and json.loads(rescued) == {"c": text}
        elif isinstance(kept, str):
            assert kept == text
        elif isinstance(kept, int):
            assert kept == int(text)
        else:  # `NAN` and `nan` are NaN, which equals nothing
            assert kept == float(text) or (math.isnan(kept) and math.isnan(float(text)))


_CELLS = st.one_of(
    st.none(), st.just(""), st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["n/a", "1e5", "+.5", "-7", "inf", "nan", "1.", "12\n", " 3", "0x1F", "1,5"]),
    st.text(max_size=6),
)


@given(st.lists(_CELLS, max_size=300))
def test_a_short_text_column_is_judged_as_arrow_judges_a_long_one(cells: list[str | None]) -> None:
    """The plain-Python check of a short column agrees with the Arrow one on every column."""
    column = pa.chunked_array([pa.array(cells, pa.string())])
    assert conform._numbers_in_short_text(cells) == conform._numbers_in_long_text(column)


def test_a_task_remembers_a_target_only_for_files_its_values_decide_alike() -> None:
    """Files of one task share a target when their column types and their text columns'
    verdicts agree; a text column of numbers in one file and of words in the next, with
    the same Arrow types, give each its own."""
    files = [
        pa.table({"device": ["a", "b"], "v": ["1", "2"]}),    # v: numbers as text
        pa.table({"device": ["c", "d"], "v": ["x", "y"]}),    # same types, v: words
        pa.table({"device": ["e", "f"], "v": ["3", "n/a"]}),  # v: half numbers
        pa.table({"device": ["g", "h"], "v": ["4", "5"]}),    # as the first
        pa.table({"device": ["i", "j"], "v": [1.5, 2.5]}),    # v: floats
    ]
    targets = conform.Targets()

    got = [targets.of(t, "records", None, {}) for t in files]

    assert got == [conform.target(t, None, {}) for t in files]
    assert [g.field("v").type for g in got] == [
        pa.int64(), pa.string(), pa.int64(), pa.int64(), pa.float64()
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_CELLS, max_size=conform._SMALL + 20), min_size=1, max_size=6))
def test_the_verdicts_of_files_taken_together_are_those_each_gets_alone(
    files: list[list[str | None]],
) -> None:
    """`text_verdicts` of files read as one table gives each file the verdict `Targets`
    finds for it alone, short files and long, on every text column but a hinted one."""
    cells = [cell for values in files for cell in values]
    data = pa.table({
        "device": pa.array(cells, pa.string()),
        "v": pa.array(cells[::-1], pa.string()),
        "hinted": pa.array(cells, pa.string()),
        "n": pa.array(range(len(cells)), pa.int64()),
    })
    hints = {"hinted": "string"}
    counts = [len(values) for values in files]

    together = conform.text_verdicts(data, hints, counts)

    alone, start = [], 0
    for count in counts:
        part = data.slice(start, count)
        alone.append(tuple(conform._numbers_in_text(part.column(name)) for name in ("device", "v")))
        start += count
    assert together == alone


@settings(max_examples=100, deadline=None)
@given(st.lists(
    st.tuples(st.integers(conform._SMALL + 1, 1300), st.integers(0, 1300), st.booleans(),
              st.sampled_from(["1", "2.5", "", "x", "nan"])),
    min_size=1, max_size=5,
))
def test_long_files_without_nulls_are_judged_by_their_own_sample_as_alone(
    files: list[tuple[int, int, bool, str]],
) -> None:
    """Files over `_SMALL` rows, in a column without nulls: a file whose first
    `_SAMPLE` values are mostly words is text, whatever its later values, as alone."""
    cells: list[str] = []
    counts = []
    for rows, words, floats, other in files:
        words = min(words, rows)
        number = "3.5" if floats else "7"
        cells += ["w"] * words + [number if i % 3 else other for i in range(rows - words)]
        counts.append(rows)
    data = pa.table({"v": pa.array(cells, pa.string())})

    together = conform.text_verdicts(data, {}, counts)

    alone, start = [], 0
    for count in counts:
        alone.append((conform._numbers_in_text(data.column("v").slice(start, count)),))
        start += count
    assert together == alone


def test_text_integers_float64_would_round_are_rescued_and_empty_cells_stay_missing() -> None:
    data = pa.table({"x": ["1.5", "", "12345678901234567890", None, "9007199254740993", "1e300"]})
    schema = pa.schema([("x", pa.float64()), ("_rescued_data", pa.string())])
    fitted = fitting.fit(data, schema)
    assert fitted["x"].to_pylist() == [1.5, None, None, None, None, 1e300]
    assert fitted["_rescued_data"].to_pylist() == [
        None, None, '{"x": "12345678901234567890"}', None, '{"x": "9007199254740993"}', None,
    ]


def test_a_hint_names_its_column_in_any_case() -> None:
    data = pa.table({"temp": [1, 2]})
    schema = conform.target(data, None, {"Temp": "string"})
    assert schema.field("temp").type == pa.string()
    later = conform.target(pa.table({"TEMP": ["warm"]}), schema, {"Temp": "string"})
    assert later.names == schema.names and later.field("temp").type == pa.string()


def test_a_cast_of_text_to_int64_rescues_what_int64_cannot_hold_at_once() -> None:
    data = pa.table({"id": ["12", "", "89014103211118510720", "-9000000000000000001"]})
    fitted = fitting.fit(data, pa.schema([("id", pa.int64()), ("_rescued_data", pa.string())]))
    assert fitted["id"].to_pylist() == [12, None, None, -9000000000000000001]
    assert fitted["_rescued_data"].to_pylist() == [None, None, '{"id": "89014103211118510720"}',
                                                   None]


def test_nested_types_merge_inside_by_the_rules_of_columns() -> None:
    def field(name: str, kind: pa.DataType) -> pa.Field:
        return pa.field(name, kind)

    # `[]` and `{"x": null}` as a table first holds them: untyped text inside.
    empty = normalise(pa.list_(pa.null()))
    assert empty == pa.list_(field("element", pa.string()))
    assert is_untyped(empty.value_field)
    assert merge(empty, normalise(pa.list_(pa.int64()))) == pa.list_(field("element", pa.int64()))
    nulls = normalise(pa.struct([("x", pa.null()), ("y", pa.string())]))
    # A struct's fields by name, in any order; new ones appended; types widen inside.
    assert merge(nulls, pa.struct([("y", pa.string()), ("x", pa.float64()), ("z", pa.int64())])) \
        == pa.struct([("x", pa.float64()), ("y", pa.string()), ("z", pa.int64())])
    assert merge(pa.list_(field("element", pa.int64())), pa.list_(field("element", pa.float64()))) \
        == pa.list_(field("element", pa.float64()))
    # Text never widens a number inside either; a list and a number are not alike.
    ints = pa.list_(field("element", pa.int64()))
    assert merge(ints, pa.list_(field("element", pa.string()))) == ints
    assert merge(ints, pa.int64()) == ints
    assert normalise(pa.struct([])) == pa.null()  # `{}`: no more than null, and Parquet has none


def test_a_struct_cast_to_its_tables_wider_struct_keeps_every_value() -> None:
    data = pa.table({"m": pa.array([{"y": 2, "x": 3}], pa.struct([("y", pa.int64()),
                                                                 ("x", pa.int64())]))})
    table = pa.schema([("m", pa.struct([("x", pa.float64()), ("y", pa.int64()),
                                        ("z", pa.string())])), ("_rescued_data", pa.string())])
    fitted = fitting.fit(data, table)
    assert fitted.to_pylist() == [{"m": {"x": 3.0, "y": 2, "z": None}, "_rescued_data": None}]


def test_text_is_read_as_numbers_as_arrow_casts_it() -> None:
    """Arrow's cast takes "+5" as a float, not an int, and "Infinity" or "NaN" in any case."""
    data = pa.table({"a": ["+5", "6"], "b": ["Infinity", "1.5"], "c": ["-INF", "NaN"]})
    schema = conform.target(data, None, {})
    assert [schema.field(n).type for n in "abc"] == [pa.float64()] * 3
    fitted = fitting.fit(data, schema).to_pydict()
    assert fitted["a"] == [5.0, 6.0] and fitted["b"] == [float("inf"), 1.5]
    assert fitted["c"][0] == float("-inf") and fitted["c"][1] != fitted["c"][1]  # NaN
    assert fitted["_rescued_data"] == [None, None]


def test_an_old_part_fits_a_table_whose_untyped_nested_field_a_file_has_typed() -> None:
    """A part written while `z` held only nulls (untyped text) keeps its other values when
    the table's `z` becomes a list; a field named in another case is the table's."""
    old = pa.table({"s": pa.array([{"x": "keep", "z": None}],
                                  pa.struct([("x", pa.string()), ("z", pa.string())]))})
    table = pa.schema([("s", pa.struct([("x", pa.string()), ("z", pa.list_(pa.int64()))])),
                       ("_rescued_data", pa.string())])
    assert fitting.fit(old, table).to_pylist() == [
        {"s": {"x": "keep", "z": None}, "_rescued_data": None}]
    other_case = pa.table({"s": pa.array([{"X": "b", "t": {}}],
                                         pa.struct([("X", pa.string()), ("t", pa.struct([]))]))})
    assert fitting.fit(other_case, table).to_pylist() == [
        {"s": {"x": "b", "z": None}, "_rescued_data": None}]
    assert merge(table.field("s").type, pa.struct([("X", pa.string())])) == table.field("s").type
    assert normalise(pa.struct([("x", pa.int64()), ("X", pa.int64())])) == pa.string()


def test_nested_columns_fit_when_sliced_chunked_or_large() -> None:
    """A file of a group is a slice of the group's table, and a part read back comes in
    chunks of 131,072 rows: both must fit as the whole would."""
    rescued = ("_rescued_data", pa.string())
    lists = pa.table({"l": pa.array([[1], [2]], pa.list_(pa.int64()))}).slice(1)
    assert fitting.fit(lists, pa.schema([("l", pa.list_(pa.float64())), rescued]))[
        "l"].to_pylist() == [[2.0]]
    maps = pa.table({"m": pa.array([[("a", 1)], [("b", 2)]], pa.map_(pa.string(), pa.int32()))})
    assert fitting.fit(maps.slice(1), pa.schema([("m", pa.map_(pa.string(), pa.int64())),
                                                 rescued]))["m"].to_pylist() == [[("b", 2)]]
    kind = pa.struct([("a", pa.int64())])
    chunks = pa.table({"s": pa.chunked_array([
        pa.array([{"a": None}] * 3, kind), pa.array([{"a": 1}], kind)])})
    assert fitting.fit(chunks, pa.schema([("s", pa.struct([("a", pa.float64())])), rescued]))[
        "s"].to_pylist() == [{"a": None}] * 3 + [{"a": 1.0}]
    large = pa.table({"l": pa.array([[{"X": 1}]], pa.large_list(pa.struct([("X", pa.int64())])))})
    assert fitting.fit(large, pa.schema([("l", pa.list_(pa.struct([("x", pa.int64())]))),
                                         rescued]))["l"].to_pylist() == [[{"x": 1}]]


def test_a_schema_read_back_from_a_part_is_the_same_though_its_map_is_renamed() -> None:
    """Arrow names a map's entries after its column when it reads Parquet back."""
    import pyarrow.parquet as pq

    from ingest.partfile import write
    from ingest.store.schema import same

    marked = pa.field("element", pa.string(), metadata={b"ingest.untyped": b"1"})
    data = pa.table({"m": pa.array([[("a", 1)]], pa.map_(pa.string(), pa.int64())),
                     "l": pa.array([[None]], pa.list_(marked))})
    sink = pa.BufferOutputStream()
    write(data, sink, "zstd", {})
    back = pq.read_schema(pa.BufferReader(sink.getvalue()))
    assert str(back.field("m").type) != str(data.schema.field("m").type)
    assert same(data.schema, back)
    typed = pa.schema([("m", data.schema.field("m").type), ("l", pa.list_(pa.string()))])
    assert not same(data.schema, typed)  # the untyped mark is a difference


def test_a_files_target_is_its_own_after_another_of_the_same_types_but_other_typed_text() -> None:
    # Both files hold a string and an int64 column read from JSON, but which column mixed
    # strings and numbers (and so may be read as numbers) differs.
    first = decode("a.jsonl", b'{"a": "x", "b": 1}\n{"a": "y", "b": "2"}\n')
    second = decode("b.jsonl", b'{"a": 1, "b": "x"}\n{"a": "2", "b": "y"}\n')
    assert first.schema.equals(second.schema)  # metadata aside
    targets = conform.Targets()
    targets.of(first, "t", None, {})
    assert targets.of(second, "t", None, {}) == conform.Targets().of(second, "t", None, {})


@pytest.mark.parametrize(("values", "kind", "kept"), [
    ([5, 0], pa.bool_(), [None, None]),  # Arrow's cast: true, false
    ([True, False], pa.int64(), [None, None]),  # 1, 0
    ([True], pa.float64(), [None]),
    ([1_700_000_000], pa.timestamp("us", "UTC"), [None]),  # a moment in 1970
    ([5], pa.date32(), [None]),  # 1970-01-06
    ([1.239, 0.001, 1.5], pa.decimal128(10, 2), [None, None, decimal.Decimal("1.50")]),
    # The same inside a list, a struct (its fields matched in any case) and a map.
    ([[True, False]], pa.list_(pa.float64()), [None]),
    ([[1.5]], pa.list_(pa.bool_()), [None]),
    ([[1_700_000_000]], pa.list_(pa.timestamp("us", "UTC")), [None]),
    ([{"a": True}], pa.struct([("a", pa.float64())]), [None]),
    ([{"A": [True]}], pa.struct([("a", pa.list_(pa.int64()))]), [None]),
])
def test_a_value_arrows_cast_would_change_is_rescued_not_changed(
    values: list[object], kind: pa.DataType, kept: list[object]
) -> None:
    schema = pa.schema([pa.field("v", kind), pa.field(RESCUED, pa.string())])
    fitted = fitting.fit(pa.table({"v": values}), schema)
    assert fitted.column("v").to_pylist() == kept
    rescued = [json.loads(r) if r else None for r in fitted.column(RESCUED).to_pylist()]
    assert rescued == [
        None if k is not None else {"v": json.dumps(v)} for v, k in zip(values, kept, strict=True)
    ]


def test_text_integers_at_int64s_bounds_are_kept_and_past_them_rescued() -> None:
    values = ["9223372036854775807", "-9223372036854775808", "18446744073709551615",
              "9223372036854775808", "-9223372036854775809", "009223372036854775807", "7"]
    schema = pa.schema([pa.field("v", pa.int64()), pa.field(RESCUED, pa.string())])
    fitted = fitting.fit(pa.table({"v": values}), schema)
    # Written with leading zeros, the bound is text (`ZERO_PADDED`): rescued, as written.
    assert fitted.column("v").to_pylist() == [
        2**63 - 1, -(2**63), None, None, None, None, 7,
    ]
    assert fitted.column(RESCUED).null_count == len(values) - 4
    assert json.loads(fitted.column(RESCUED)[5].as_py()) == {"v": "009223372036854775807"}


def test_text_of_numbers_written_with_leading_zeros_is_judged_text() -> None:
    # A CSV column pyarrow reads as text (it holds a word): `01234` is not a number, so a
    # column mostly of such values stays text, and one mostly of numbers rescues them.
    padded = pa.table({"zip": ["01234", "02139", "n/a", "10001"] * 100})
    numbers = pa.table({"v": ["1", "2", "3", "007", "x"] * 100})
    # Files judged together, short and long, as each alone.
    assert conform.text_verdicts(padded, {}, [8, 392]) == [(None,), (None,)]
    assert conform.text_verdicts(numbers, {}, [5, 495]) == [(pa.int64(),), (pa.int64(),)]
    assert conform.own_schema(padded, {}).field("zip").type == pa.string()
    assert conform.own_schema(padded.slice(0, 8), {}).field("zip").type == pa.string()
    assert conform.own_schema(numbers, {}).field("v").type == pa.int64()
    schema = pa.schema([("v", pa.int64()), (RESCUED, pa.string())])
    fitted = fitting.fit(numbers.slice(0, 5), schema)
    assert fitted.column("v").to_pylist() == [1, 2, 3, None, None]
    assert fitted.column(RESCUED).to_pylist()[3] == '{"v": "007"}'


def test_a_signed_number_with_a_leading_zero_is_a_number() -> None:
    # As DuckDB reads `-05`: a temperature, an offset.
    signed = pa.table({"v": ["-05", "-12", "-07", "x"]})
    assert conform.own_schema(signed, {}).field("v").type == pa.int64()
    schema = pa.schema([("v", pa.int64()), (RESCUED, pa.string())])
    assert fitting.fit(pa.table({"v": ["-05", "05"]}), schema).to_pylist() == [
        {"v": -5, RESCUED: None}, {"v": None, RESCUED: '{"v": "05"}'},
    ]


@pytest.mark.parametrize("zone", [None, "UTC"])
def test_a_time_of_day_bound_for_a_date_column_is_rescued_and_midnight_kept(
    zone: str | None,
) -> None:
    moments = pa.array([
        datetime.datetime(2024, 1, 2, 10, 30), datetime.datetime(2024, 1, 3), None,
    ], pa.timestamp("us", zone))
    schema = pa.schema([pa.field("d", pa.date32()), pa.field(RESCUED, pa.string())])
    fitted = fitting.fit(pa.table({"d": moments}), schema)
    assert fitted.column("d").to_pylist() == [None, datetime.date(2024, 1, 3), None]
    rescued = fitted.column(RESCUED).to_pylist()
    assert rescued[1:] == [None, None]
    assert rescued[0] is not None and "10:30" in json.loads(rescued[0])["d"]


def test_a_union_and_an_interval_are_held_as_the_text_of_each_value() -> None:
    union = pa.UnionArray.from_sparse(
        pa.array([0, 1, 0], pa.int8()),
        [pa.array([1, 2, 3]), pa.array(["a", "b", "c"])],
    )
    interval = pa.array([pa.MonthDayNano([1, 2, 3]), None, pa.MonthDayNano([0, 0, 5])])
    data = pa.table({"u": union, "i": interval})
    schema = conform.target(data, None, {})
    assert [schema.field(c).type for c in ("u", "i")] == [pa.string(), pa.string()]
    fitted = fitting.fit(data, schema)
    assert fitted.column("u").to_pylist() == ["1", "b", "3"]
    first, missing, last = fitted.column("i").to_pylist()
    assert missing is None
    assert first is not None and "months=1" in first and "nanoseconds=3" in first
    assert last is not None and "nanoseconds=5" in last
    assert fitted.column(RESCUED).to_pylist() == [None, None, None]


def test_a_struct_whose_fields_differ_only_by_case_is_rescued_whole_in_a_struct_column() -> None:
    table_struct = pa.struct([("a", pa.int64())])
    schema = pa.schema([pa.field("s", table_struct), pa.field(RESCUED, pa.string())])
    data = pa.table({"s": pa.array([{"a": 5, "A": 6}, None],
                                   pa.struct([("a", pa.int64()), ("A", pa.int64())]))})
    fitted = fitting.fit(data, schema)
    assert fitted.column("s").to_pylist() == [None, None]
    rescued = fitted.column(RESCUED).to_pylist()
    assert json.loads(json.loads(rescued[0])["s"]) == {"a": 5, "A": 6}
    assert rescued[1] is None


def test_a_struct_whose_fields_share_a_name_is_the_json_of_each_field_in_its_order() -> None:
    duplicated = pa.StructArray.from_arrays(
        [pa.array([1, None]), pa.array(["a", "b"]),
         pa.array([[{"on": datetime.date(2024, 1, 2)}], None])],
        fields=[pa.field("x", pa.int64()), pa.field("x", pa.string()),
                pa.field("l", pa.list_(pa.struct([("on", pa.date32())])))],
    )
    data = pa.table({"s": duplicated, "l": pa.array([[duplicated[0]], None], pa.list_(
        duplicated.type
    ))})
    schema = conform.target(data, None, {})
    fitted = fitting.fit(data, schema)
    assert fitted.column("s").to_pylist() == [
        '{"x": 1, "x": "a", "l": [{"on": "2024-01-02"}]}', '{"x": null, "x": "b", "l": null}',
    ]
    rescued = [r and json.loads(r) for r in fitted.column(RESCUED).to_pylist()]
    assert rescued == [{"l": '[{"x": 1, "x": "a", "l": [{"on": "2024-01-02"}]}]'}, None]


def test_a_nested_value_rescued_keeps_the_fields_the_table_lacks_in_its_text() -> None:
    # The table's list of structs holds `a` as int64; the file's `a` is 1.5, and `b` is
    # a field the table does not have: the rescued text is the value as the file held it.
    kind = pa.list_(pa.field("element", pa.struct([("a", pa.int64())])))
    schema = pa.schema([pa.field("l", kind), pa.field(RESCUED, pa.string())])
    data = pa.table({"l": pa.array([[{"a": 1.5, "b": "x"}], [{"a": 2.0, "b": None}]])})
    fitted = fitting.fit(data, schema)
    rescued = [json.loads(r)["l"] if r else None for r in fitted.column(RESCUED).to_pylist()]
    assert fitted.column("l").to_pylist()[0] is None
    assert json.loads(rescued[0]) == [{"a": 1.5, "b": "x"}]


def test_bytes_that_are_not_utf8_bound_for_a_text_column_are_rescued_not_held_as_text() -> None:
    # Only a type the table holds as text is written as text value by value.
    schema = pa.schema([pa.field("v", pa.string()), pa.field(RESCUED, pa.string())])
    fitted = fitting.fit(pa.table({"v": pa.array([b"ok", b"\xff"], pa.binary())}), schema)
    assert fitted.column("v").to_pylist() == ["ok", None]
    assert fitted.column(RESCUED).to_pylist()[0] is None


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_a_duration_past_int64s_microseconds_is_rescued_not_wrapped_around(unit: str) -> None:
    # Arrow's cast to microseconds, unsafe so as to cut nanoseconds, wrapped it around.
    factor = 1_000_000 if unit == "s" else 1_000
    values = [10**14 * 1000, 5, None, -(10**14) * 1000]
    table = pa.table({"v": pa.array(values, pa.duration(unit))})
    schema = pa.schema([pa.field("v", pa.duration("us")), pa.field(RESCUED, pa.string())])
    fitted = fitting.fit(table, schema)
    assert fitted.column("v").cast(pa.int64()).to_pylist() == [None, 5 * factor, None, None]
    rescued = [json.loads(r) if r else None for r in fitted.column(RESCUED).to_pylist()]
    name = "seconds" if unit == "s" else "milliseconds"
    assert rescued == [{"v": f"{10**17} {name}"}, None, None, {"v": f"{-(10**17)} {name}"}]


def test_a_duration_past_int64s_microseconds_in_a_list_is_rescued_with_its_value() -> None:
    table = pa.table({"v": pa.array([[10**17], [5], None], pa.list_(pa.duration("s")))})
    schema = pa.schema([
        pa.field("v", pa.list_(pa.duration("us"))), pa.field(RESCUED, pa.string()),
    ])
    fitted = fitting.fit(table, schema)
    assert fitted.column("v").to_pylist() == [None, [datetime.timedelta(seconds=5)], None]
    rescued = fitted.column(RESCUED).to_pylist()
    assert rescued[0] is not None and str(10**17) in rescued[0] and rescued[1:] == [None, None]


def test_list_views_keep_their_values_at_any_depth() -> None:
    # Arrow's cast to a list (pyarrow 26) lost a large list view's values, silently, and
    # made a list view's an invalid array.
    view = pa.ListViewArray.from_arrays(
        pa.array([1, 0, 0], pa.int32()), pa.array([2, 1, 0], pa.int32()),
        pa.array([1.5, 2.5, 3.5]), mask=pa.array([False, False, True]),
    )
    large = pa.LargeListViewArray.from_arrays(
        pa.array([0, 1, 0], pa.int64()), pa.array([2, 1, 0], pa.int64()), pa.array([1.5, 2.5]),
    )
    table = pa.table({
        "v": view, "large": large, "sliced": view.slice(1).take([1, 0, 0]),
        "s": pa.StructArray.from_arrays([view], names=["l"]),
    })
    doubles = pa.list_(pa.float64())
    schema = pa.schema([
        pa.field("v", doubles), pa.field("large", doubles), pa.field("sliced", doubles),
        pa.field("s", pa.struct([pa.field("l", doubles)])),
    ])
    fitted = fitting.fit(table, schema)
    fitted.validate(full=True)
    assert fitted.to_pylist() == table.to_pylist()


@pytest.mark.parametrize(("kind", "values", "kept"), [
    (pa.decimal128(20, 1), ["9007199254740993.0", "0.1", "2.5", None], [None, 0.1, 2.5, None]),
    (pa.decimal128(38, 0), ["1234567890123456789012345678901234567", "7"], [None, 7.0]),
    (pa.decimal256(60, 0), ["1" + "0" * 59, "3"], [None, 3.0]),
])
def test_a_decimal_a_float_column_cannot_hold_at_its_scale_is_rescued(
    kind: pa.DataType, values: list[str | None], kept: list[float | None]
) -> None:
    # Arrow's cast rounded it, silently, where an integer past 2**53 is rescued.
    table = pa.table({"v": pa.array([None if v is None else decimal.Decimal(v) for v in values],
                                    kind)})
    schema = pa.schema([pa.field("v", pa.float64()), pa.field(RESCUED, pa.string())])
    fitted = fitting.fit(table, schema)
    assert fitted.column("v").to_pylist() == kept
    rescued = [json.loads(r) if r else None for r in fitted.column(RESCUED).to_pylist()]
    assert rescued == [
        {"v": v} if k is None and v is not None else None
        for v, k in zip(values, kept, strict=True)
    ]


# A name this long makes a file of a million rows hold 2 GiB of its text in `source_file`.
LONG_NAME = "/".join(["d" * 200] * 9) + "/" + "x" * 190 + ".npy"


def test_a_files_name_in_more_rows_than_32_bit_offsets_reach_reads_back_whole() -> None:
    rows = (2**31) // len(LONG_NAME) + 1000
    data = pa.table({"c0": pa.array(np.zeros(rows, np.int8))})
    schema = conform.target(data, None, {})

    fitted = fitting.fit_file(data, LONG_NAME, "f" * 64, schema)

    names = fitted.column("source_file")
    assert len(names) == rows
    assert names[rows - 1].as_py() == LONG_NAME and names[0].as_py() == LONG_NAME
    assert fitted.column("source_sha256")[rows - 1].as_py() == "f" * 64
    assert fitted.get_total_buffer_size() < 32 << 20, "one chunk of the text, repeated"


def test_a_run_whose_names_pass_32_bit_offsets_reads_back_whole() -> None:
    per = (2**31) // len(LONG_NAME) // 2 + 1000
    data = pa.table({"c0": pa.array(np.zeros(2 * per, np.int8))})
    schema = conform.target(data, None, {})
    sources = [(LONG_NAME, "a" * 64, per), (LONG_NAME[:-5] + "y.npy", "b" * 64, per)]

    fitted = runs.fit_run(data, sources, schema)

    names = fitted.column("source_file")
    assert (names[0].as_py(), names[2 * per - 1].as_py()) == (LONG_NAME, sources[1][0])
    assert fitted.column("source_sha256")[2 * per - 1].as_py() == "b" * 64
