"""Exact order statistics in passes: every rank equals the sorted array's, however the data
is split into pieces and however few values a pass may collect."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ingest.blocks import ColumnPartial
from ingest.compute import radix

finite = st.floats(allow_nan=False, allow_infinity=True, width=64)


def _search(values: np.ndarray, pieces: int, limit: int) -> tuple[dict[int, float], int]:
    chunks = np.array_split(values, pieces)
    histograms = {"c": [radix.digit_counts(radix.order_keys(c)) for c in chunks if c.size]}
    column = ColumnPartial("c", values.size, 0, 0.0, 0.0, 0.0, 0.0, 0.0, b"", b"")
    selection = radix.start((column,), histograms, (0.05, 0.5, 0.95), limit)
    passes = 0
    while not selection.done:
        results = tuple(radix.scan({"c": c}, selection.probes) for c in chunks)
        selection = radix.narrow(selection, results)
        passes += 1
    return {t.rank: t.value for t in selection.targets if t.value is not None}, passes


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 400), elements=finite),
    st.integers(1, 9),
    st.integers(1, 64),
)
def test_every_wanted_rank_is_the_sorted_value(values: np.ndarray, pieces: int, limit: int) -> None:
    found, passes = _search(values, pieces, limit)
    ordered = np.sort(values)
    assert set(found) == set(radix.quantile_ranks(values.size, (0.05, 0.5, 0.95)))
    for rank, value in found.items():
        assert value == ordered[rank]
    assert passes <= 6  # a 16-bit digit from the blocks, then 8-bit digits pin any key


def test_a_bucket_of_equal_values_is_the_answer_after_one_pass() -> None:
    values = np.full(10_000, 3.25)
    values[:10] = -1.0
    found, passes = _search(values, 4, limit=1)
    assert set(found.values()) == {3.25}
    assert passes == 1


def test_order_keys_sort_like_the_floats_and_round_trip() -> None:
    values = np.array([-np.inf, -1e300, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, 1e300, np.inf])
    keys = radix.order_keys(values)
    assert (np.diff(keys.astype(object)) >= 0).all()
    assert [radix.value_of(int(k)) for k in keys] == list(values)
    assert (radix.order_values(keys) == values).all()
