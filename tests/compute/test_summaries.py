"""The summary features of many files at once are those of each file alone, to the bit."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.compute import features
from ingest.compute.summaries import summary_table

_FLOATS = st.one_of(
    st.floats(-1e9, 1e9, allow_nan=False, allow_subnormal=False),
    st.just(float("nan")), st.none(), st.sampled_from([math.inf, -math.inf, 0.0, -0.0]),
)
_INTS = st.one_of(st.integers(-(2**62), 2**62), st.none())


@st.composite
def _files(draw: st.DrawFn) -> tuple[pa.Table, list[tuple[str, str, int]]]:
    """Files of one table: empty ones, one-row ones, longer ones; float columns with NaN
    and nulls, int columns with nulls, a time column and a text column."""
    kinds = draw(st.lists(st.sampled_from(["float", "int", "text"]), max_size=4))
    counts = draw(st.lists(
        st.one_of(st.just(0), st.just(1), st.integers(2, 40), st.integers(120, 300)),
        min_size=1, max_size=6,
    ))
    rows = sum(counts)
    columns: dict[str, pa.Array] = {"timestamp": pa.array(range(rows), pa.int64())}
    for j, kind in enumerate(kinds):
        if kind == "text":
            columns[f"c{j}"] = pa.array([str(i) for i in range(rows)], pa.string())
        else:
            values = draw(st.lists(_FLOATS if kind == "float" else _INTS,
                                   min_size=rows, max_size=rows))
            type_ = pa.float64() if kind == "float" else pa.int64()
            columns[f"c{j}"] = pa.array(values, type_)
    sources = [(f"f{i}.csv", f"{i:064x}", count) for i, count in enumerate(counts)]
    return pa.table(columns), sources


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b and (
        not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b)  # type: ignore[arg-type]
    )


@settings(max_examples=300, deadline=None)
@given(_files())
def test_the_features_of_files_taken_together_are_those_of_each_file_alone(
    files: tuple[pa.Table, list[tuple[str, str, int]]],
) -> None:
    records, sources = files

    with np.errstate(invalid="ignore"):  # inf - inf, in both alike
        together = summary_table(records, sources, "timestamp", "sensors")
        rows, start = [], 0
        for source_file, sha256, count in sources:
            rows += features.rows(
                records.slice(start, count), source_file, sha256, "timestamp", ("summary",), 0,
                source_table="sensors",
            )
            start += count
    alone = features.to_table(rows, ("summary",))
    assert together.schema == alone.schema
    got, want = together.to_pylist(), alone.to_pylist()
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert all(_same(g[key], w[key]) for key in w), (g, w)


def test_files_without_a_numeric_column_give_no_rows_but_the_full_schema() -> None:
    records = pa.table({"timestamp": [1, 2, 3], "name": ["a", "b", "c"]})
    table = summary_table(records, [("a.csv", "0" * 64, 2), ("b.csv", "1" * 64, 1)],
                          "timestamp", "records")
    assert table.num_rows == 0
    assert table.schema == features.to_table([], ("summary",)).schema


def test_files_of_different_lengths_keep_their_order() -> None:
    values = np.arange(7, dtype=np.float64)
    records = pa.table({"v": values})
    sources = [("a", "", 3), ("b", "", 1), ("c", "", 3)]
    table = summary_table(records, sources, "timestamp", "records")
    assert table.column("source_file").to_pylist() == ["a", "b", "c"]
    assert table.column("mean").to_pylist() == [1.0, 3.0, 5.0]
    assert table.column("std").to_pylist() == [1.0, None, 1.0]
