"""Feature rows against an independent reference: fsum moments, hand-rolled quantiles."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ingest.compute import features
from ingest.compute.features import summary
from ingest.compute.task import process
from ingest.config import Features
from ingest.jobs import Job, Task

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ("count", "null_count", "mean", "std", "min", "max", "p05", "p50", "p95", "rms")
IDENTITY = ("source_table", "source_file", "source_sha256", "source_column", "window")
REL = 1e-9


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make tests/plugin_sets.py importable as `tests.plugin_sets`, like a user's package."""
    monkeypatch.syspath_prepend(str(ROOT))
    yield


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's "linear", R's type 7)."""
    position = q * (len(ordered) - 1)
    lo = math.floor(position)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)


def reference(values: list[float | None]) -> dict[str, float | int | None]:
    """The summary set, computed without numpy: None and NaN are both null."""
    valid = sorted(v for v in values if v is not None and not math.isnan(v))
    n = len(valid)
    if n == 0:
        return {**dict.fromkeys(SUMMARY), "count": 0, "null_count": len(values)}
    mean = math.fsum(valid) / n
    return {
        "count": n,
        "null_count": len(values) - n,
        "mean": mean,
        "std": math.sqrt(math.fsum((v - mean) ** 2 for v in valid) / (n - 1)) if n > 1 else None,
        "min": valid[0],
        "max": valid[-1],
        "p05": _quantile(valid, 0.05),
        "p50": _quantile(valid, 0.50),
        "p95": _quantile(valid, 0.95),
        "rms": math.sqrt(math.fsum(v * v for v in valid) / n),
    }


def assert_matches(actual: Mapping[str, object], expected: Mapping[str, object]) -> None:
    """Equal to 1e-9 relative; the absolute floor is 1e-9 of the data's scale, for
    results that cancel to near zero (a mean of +x and -x, a std of equal values)."""
    scale = max(
        (abs(v) for k, v in expected.items() if k in ("min", "max") and v is not None),
        default=0.0,
    )
    for key in SUMMARY:
        want, got = expected[key], actual[key]
        if want is None or key in ("count", "null_count"):
            assert got == want, key
        else:
            assert got == pytest.approx(want, rel=REL, abs=REL * scale), key


def rows_by_column(table: pa.Table) -> dict[str, dict[str, object]]:
    rows = table.to_pylist()
    assert len({r["source_column"] for r in rows}) == len(rows), "one row per column"
    return {str(r["source_column"]): r for r in rows}


def _compute(table: pa.Table, window: int = 0, sets: tuple[str, ...] = ("summary",),
             time_column: str = "timestamp") -> pa.Table:
    found = features.rows(table, "drop/a.csv", "ab" * 32, time_column, sets, window)
    return features.to_table(found, sets)


# --- the summary set --------------------------------------------------------------------


def test_summary_matches_the_reference_with_nulls_and_nans() -> None:
    values = [3.5, None, -1.25, 7.0, float("nan"), 2.0, 10.5, None, 0.0, 4.75]
    table = pa.table({"x": pa.array(values, pa.float64())})
    row = rows_by_column(_compute(table))["x"]
    assert row["count"] == 7
    assert row["null_count"] == 3
    assert_matches(row, reference(values))


def test_summary_of_a_realistic_column_matches_to_1e_9_relative() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(20.0, 3.0, 5_000)
    values[rng.random(5_000) < 0.02] = np.nan
    row = rows_by_column(_compute(pa.table({"temp": values})))["temp"]
    expected = reference(values.tolist())
    for key in SUMMARY:
        assert row[key] == pytest.approx(expected[key], rel=REL), key


def test_known_values_give_textbook_results() -> None:
    row = rows_by_column(_compute(pa.table({"x": [1.0, 2.0, 3.0, 4.0, 5.0]})))["x"]
    assert row["mean"] == 3.0
    assert row["std"] == pytest.approx(math.sqrt(2.5), rel=REL)  # ddof = 1, not 2.0
    assert row["p50"] == 3.0
    assert row["p05"] == pytest.approx(1.2, rel=REL)  # linear, not nearest rank
    assert row["p95"] == pytest.approx(4.8, rel=REL)
    assert row["rms"] == pytest.approx(math.sqrt(11.0), rel=REL)


def test_all_null_column_has_counts_and_null_statistics() -> None:
    table = pa.table({"dead": pa.array([None, None, None, None], pa.float64())})
    row = rows_by_column(_compute(table))["dead"]
    assert row["count"] == 0
    assert row["null_count"] == 4
    for key in SUMMARY[2:]:
        assert row[key] is None, key


def test_single_value_column_has_null_std_and_the_value_elsewhere() -> None:
    table = pa.table({"one": pa.array([None, 7.5, None], pa.float64())})
    row = rows_by_column(_compute(table))["one"]
    assert row["count"] == 1
    assert row["null_count"] == 2
    assert row["std"] is None
    for key in ("mean", "min", "max", "p05", "p50", "p95", "rms"):
        assert row[key] == 7.5, key


@pytest.mark.parametrize("kind", [pa.int8(), pa.int32(), pa.int64(), pa.uint16()])
def test_integer_columns_are_featurised_with_nulls(kind: pa.DataType) -> None:
    values = [5, None, 1, 9, 3, 3, None, 120]
    row = rows_by_column(_compute(pa.table({"n": pa.array(values, kind)})))["n"]
    assert_matches(row, reference([None if v is None else float(v) for v in values]))


def test_float32_columns_are_featurised() -> None:
    values = np.array([0.1, 0.2, 0.7, np.nan], dtype=np.float32)
    row = rows_by_column(_compute(pa.table({"f": values})))["f"]
    assert_matches(row, reference([float(v) for v in values]))


def test_time_column_and_non_numeric_columns_are_excluded() -> None:
    table = pa.table({
        "timestamp": pa.array([1, 2, 3], pa.int64()),
        "when": pa.array([1, 2, 3], pa.timestamp("ms")),
        "day": pa.array([1, 2, 3], pa.date32()),
        "label": ["a", "b", "c"],
        "ok": [True, False, True],
        "price": pa.array([1, 2, 3], pa.decimal128(5, 2)),
        "nested": [{"a": 1}, {"a": 2}, {"a": 3}],
        "nothing": pa.array([None, None, None], pa.null()),
        "value": [1.0, 2.0, 3.0],
        "n": pa.array([1, 2, 3], pa.int16()),
    })
    result = _compute(table)
    assert result.column("source_column").to_pylist() == ["value", "n"]


def test_time_column_is_configurable() -> None:
    table = pa.table({"timestamp": [1.0, 2.0], "t": [10.0, 20.0]})
    assert _compute(table, time_column="t").column("source_column").to_pylist() == ["timestamp"]


def test_output_schema_has_identity_and_summary_columns_with_spec_types() -> None:
    table = pa.table({"timestamp": [1, 2], "x": [1.0, 2.0]})
    result = _compute(table)
    assert result.column_names == [*IDENTITY, *SUMMARY]
    types = {f.name: f.type for f in result.schema}
    for name in ("source_file", "source_sha256", "source_column"):
        assert types[name] == pa.string()
    for name in ("window", "count", "null_count"):
        assert types[name] == pa.int64()
    for name in SUMMARY[2:]:
        assert types[name] == pa.float64()
    row = result.to_pylist()[0]
    assert row["source_file"] == "drop/a.csv"
    assert row["source_sha256"] == "ab" * 32
    assert row["window"] is None  # whole file


@pytest.mark.parametrize("name", ["Timestamp", "TIMESTAMP"])
def test_the_time_column_is_excluded_whatever_its_case(name: str) -> None:
    # Columns match their table's in any case, and hints their columns: so does this.
    result = _compute(pa.table({name: pa.array([1, 2, 3], pa.int64()), "v": [1.0, 2.0, 3.0]}))
    assert set(rows_by_column(result)) == {"v"}


def test_table_without_numeric_columns_gives_no_rows_but_the_full_schema() -> None:
    result = _compute(pa.table({"timestamp": [1, 2], "label": ["a", "b"]}))
    assert result.num_rows == 0
    assert result.column_names == [*IDENTITY, *SUMMARY]


def test_one_row_per_numeric_column_in_table_order() -> None:
    table = pa.table({"b": [1.0], "a": [2.0], "c": pa.array([3], pa.int64())})
    assert _compute(table).column("source_column").to_pylist() == ["b", "a", "c"]


# --- windows ----------------------------------------------------------------------------


def test_window_gives_one_row_per_window_with_its_index() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0.0, 1.0, 25)
    values[[2, 11, 12]] = np.nan
    table = pa.table({"timestamp": np.arange(25), "x": values, "y": np.arange(25.0)})
    result = _compute(table, window=10)
    rows = result.to_pylist()
    assert [(r["source_column"], r["window"]) for r in rows] == [
        ("x", 0), ("x", 1), ("x", 2), ("y", 0), ("y", 1), ("y", 2),
    ]
    for r in rows:
        start = int(r["window"]) * 10
        column = values if r["source_column"] == "x" else np.arange(25.0)
        assert_matches(r, reference(column[start:start + 10].tolist()))
    assert [r["count"] + r["null_count"] for r in rows[:3]] == [10, 10, 5]


def test_window_longer_than_the_file_gives_window_zero() -> None:
    rows = _compute(pa.table({"x": [1.0, 2.0, 3.0]}), window=100).to_pylist()
    assert [r["window"] for r in rows] == [0]
    assert rows[0]["count"] == 3


def test_window_of_only_nulls_has_count_zero() -> None:
    table = pa.table({"x": pa.array([1.0, 2.0, None, None], pa.float64())})
    rows = _compute(table, window=2).to_pylist()
    assert [(r["window"], r["count"], r["null_count"], r["mean"]) for r in rows] == [
        (0, 2, 0, 1.5), (1, 0, 2, None),
    ]


# --- plugin sets ------------------------------------------------------------------------


def test_plugin_set_adds_its_columns_beside_the_summary(plugins: None) -> None:
    table = pa.table({"x": [-2.0, 1.0, 4.0, None]})
    result = _compute(table, sets=("summary", "tests.plugin_sets:spread"))
    assert result.column_names == [*IDENTITY, *SUMMARY, "spread", "positives"]
    row = result.to_pylist()[0]
    assert row["spread"] == 6.0
    assert row["positives"] == 2
    assert_matches(row, reference([-2.0, 1.0, 4.0, None]))


def test_plugin_set_alone_gives_identity_and_its_own_columns(plugins: None) -> None:
    result = _compute(pa.table({"x": [1.0, 3.0]}), sets=("tests.plugin_sets:spread",))
    assert result.column_names == [*IDENTITY, "spread", "positives"]
    assert result.to_pylist()[0]["spread"] == 2.0


def test_plugin_set_runs_per_window(plugins: None) -> None:
    result = _compute(pa.table({"x": [1.0, 5.0, 2.0, 2.5]}), window=2,
                      sets=("tests.plugin_sets:spread",))
    assert result.column("spread").to_pylist() == [4.0, 0.5]


def test_plugin_feature_named_like_a_summary_field_is_kept(plugins: None) -> None:
    sets = ("tests.plugin_sets:named_like_summary",)
    result = _compute(pa.table({"x": [1.0, 3.0]}), sets=sets)
    assert result.column("max").to_pylist() == [3.0]


@pytest.mark.parametrize(("sets", "named"), [
    (("summary", "tests.plugin_sets:named_like_summary"), "'max'"),
    (("tests.plugin_sets:named_like_identity",), "'Source_File'"),
    (("tests.plugin_sets:spread", "tests.plugin_sets:spread_in_capitals"), "'SPREAD'"),
])
def test_a_plugin_feature_named_like_another_column_fails_the_file_naming_it(
    plugins: None, sets: tuple[str, ...], named: str
) -> None:
    # It took the other's place in the row: the summary's max, or the file's own name.
    with pytest.raises(ValueError, match=f"returned {named}, a column the features table has"):
        _compute(pa.table({"x": [1.0, 3.0]}), sets=sets)


def test_plugin_set_exception_propagates_to_the_caller(plugins: None) -> None:
    # task.process turns it into a Failure; compute itself does not hide it.
    with pytest.raises(ZeroDivisionError, match="plugin divided by zero"):
        _compute(pa.table({"x": [1.0]}), sets=("tests.plugin_sets:explode",))


@pytest.mark.parametrize(
    "name", ["no_such_set", "tests.plugin_sets:", ":spread", "tests.plugin_sets"]
)
def test_set_name_that_is_neither_built_in_nor_module_function_is_refused(
    name: str, plugins: None
) -> None:
    with pytest.raises(ValueError, match="neither built in"):
        features.load_set(name)


def test_set_from_a_missing_module_raises_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        features.load_set("no_such_package.sets:fn")


def test_set_resolves_to_the_named_function(plugins: None) -> None:
    from tests import plugin_sets

    assert features.load_set("tests.plugin_sets:spread") is plugin_sets.spread
    assert features.load_set("summary") is summary


# --- property ---------------------------------------------------------------------------

# Subnormals are left out: interpolating between 0 and 5e-324 may round either way,
# and no tolerance relative to such a value can tell the two apart.
_values = arrays(
    np.float64,
    st.integers(0, 300),
    elements=st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False),
        st.just(float("nan")),
    ),
)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_summary_matches_the_reference_for_any_floats_with_nans(values: np.ndarray) -> None:
    assert_matches(summary(values), reference(values.tolist()))


@settings(max_examples=50, deadline=None)
@given(_values, st.integers(1, 50))
def test_windows_partition_the_column(values: np.ndarray, window: int) -> None:
    rows = _compute(pa.table({"x": pa.array(values, from_pandas=True)}), window=window).to_pylist()
    assert [r["window"] for r in rows] == list(range(max(1, math.ceil(len(values) / window))))
    assert sum(int(r["count"]) + int(r["null_count"]) for r in rows) == len(values)
    assert sum(int(r["count"]) for r in rows) == int((~np.isnan(values)).sum())


@pytest.mark.parametrize("columnwise_above", [features.COLUMNWISE_VALUES, 0])
@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=60).flatmap(
        lambda rows: st.lists(
            st.lists(
                st.one_of(
                    st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
                    st.just(float("nan")),
                ),
                min_size=rows, max_size=rows,
            ),
            min_size=1, max_size=5,
        )
    )
)
def test_summary_of_a_block_equals_summary_of_each_column(
    columnwise_above: int, columns: list[list[float]]
) -> None:
    from ingest.compute.features import summary_block

    block = np.array(columns, dtype=np.float64).T.reshape(len(columns[0]), len(columns))
    together = summary_block(np.asfortranarray(block), columnwise_above)
    for j, column in enumerate(columns):
        alone = features.summary(np.array(column, dtype=np.float64))
        assert together[j].keys() == alone.keys()
        for key, value in alone.items():
            if value is None or together[j][key] is None:
                assert value is together[j][key], key
            else:
                assert together[j][key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_an_integer_beyond_2_to_the_53_gets_features_of_its_nearest_float() -> None:
    column = pa.chunked_array([pa.array([9_007_199_254_740_993, -42], pa.int64())])
    assert features.as_float64(column).tolist() == [9_007_199_254_740_992.0, -42.0]


def test_the_config_knows_every_built_in_set_by_name() -> None:
    """The command line checks a set's name against the config's list, without loading
    the workers' modules: the two lists are one."""
    from ingest.config import BUILT_IN_SETS

    assert frozenset(features.BUILT_IN) == BUILT_IN_SETS


@pytest.mark.parametrize("files", [1, 3], ids=["alone", "in-a-run"])
def test_quantiles_of_a_column_with_infinities_are_those_values_not_nan(files: int) -> None:
    # numpy's interpolation gives NaN for the median of [1, 2, inf] (inf * 0).
    data = [b"t,v,w\n%d,1,-inf\n%d,2,1\n%d,inf,inf\n%d,,2\n" % (i, i, i, i) for i in range(files)]
    jobs = tuple(Job(f"f{i}.csv", hashlib.sha256(d).hexdigest(), d) for i, d in enumerate(data))
    result = process(Task(jobs, Features()))
    assert all(o.failure is None for o in result.outcomes)
    [part] = [p for p in result.parts if p.table == "features"]
    rows = pq.read_table(pa.BufferReader(part.data)).to_pylist()  # type: ignore[arg-type]
    by_column = {(r["source_file"], r["source_column"]): r for r in rows}
    for i in range(files):
        v, w = by_column[f"f{i}.csv", "v"], by_column[f"f{i}.csv", "w"]
        assert (v["p05"], v["p50"], v["p95"]) == (pytest.approx(1.1), 2.0, math.inf)
        assert (w["p05"], w["p50"], w["p95"]) == (-math.inf, 1.5, math.inf)
