"""Exact order statistics in passes: every rank equals the sorted array's, however the data
is split into pieces and however few values a pass may collect."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ingest.blocks import ColumnPartial, Probe, Scan, Window
from ingest.compute import radix, stream

finite = st.floats(allow_nan=False, allow_infinity=True, width=64)


def _search(
    values: np.ndarray, pieces: int, limit: int, samples: list[np.ndarray] | None = None
) -> tuple[dict[int, float], int]:
    """Every piece's own sample, unless `samples` are given for them."""
    found, passes, _ = _searched(values, pieces, limit, samples)
    return found, passes


def _searched(
    values: np.ndarray, pieces: int, limit: int, samples: list[np.ndarray] | None
) -> tuple[dict[int, float], int, tuple[Probe, ...]]:
    """The ranks found, the passes taken, and the first pass's probes."""
    chunks = np.array_split(values, pieces)
    histograms = {"c": [radix.digit_counts(radix.order_keys(c)) for c in chunks if c.size]}
    drawn = samples or [np.frombuffer(radix.sample(c), dtype=np.float64) for c in chunks]
    sampled = {"c": [(c.size, d.tobytes()) for c, d in zip(chunks, drawn, strict=True) if c.size]}
    column = ColumnPartial("c", values.size, 0, 0.0, 0.0, 0.0, 0.0, 0.0, b"", b"")
    selection = radix.start((column,), histograms, (0.05, 0.5, 0.95), limit, sampled)
    first = selection.probes
    passes = 0
    while not selection.done:
        results = tuple(radix.scan({"c": c}, selection.probes) for c in chunks)
        selection = radix.narrow(selection, results)
        passes += 1
    return {t.rank: t.value for t in selection.targets if t.value is not None}, passes, first


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


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 3000), elements=finite),
    st.integers(1, 9),
    st.integers(1, 400),
    hnp.arrays(np.float64, st.integers(0, 40), elements=finite),
)
def test_a_sample_from_elsewhere_never_changes_a_rank(
    values: np.ndarray, pieces: int, limit: int, other: np.ndarray
) -> None:
    """A window placed by a sample that is not the data's misses, or holds the rank: the
    values found are the sorted array's either way."""
    found, _ = _search(values, pieces, limit, [other] * pieces)
    ordered = np.sort(values)
    assert set(found) == set(radix.quantile_ranks(values.size, (0.05, 0.5, 0.95)))
    for rank, value in found.items():
        assert value == ordered[rank]


def test_a_window_placed_by_the_samples_finds_the_ranks_a_pass_sooner() -> None:
    """200,000 readings around 67 share a few first digits: too many to collect at once,
    so the digits alone take two passes; the blocks' samples place a window that the first
    pass collects, and every rank is in it."""
    rng = np.random.default_rng(7)
    values = rng.normal(67.0, 2.0, 200_000)
    limit = 20_000
    found, passes = _search(values, 8, limit)
    ordered = np.sort(values)
    for rank, value in found.items():
        assert value == ordered[rank]
    assert passes == 1
    _, without = _search(values, 8, limit, [np.empty(0)] * 8)
    assert without == 2


def test_a_window_whose_sample_misses_is_searched_on_by_its_digits() -> None:
    """Samples drawn from other readings (a mean of 68, not 67) place every window, some
    where the ranks are not: the digits counted in the same pass go on to find those, in
    the passes they take alone."""
    rng = np.random.default_rng(8)
    values = rng.normal(67.0, 2.0, 200_000)
    elsewhere = [rng.normal(68.0, 2.0, 1024) for _ in range(8)]
    found, passes, first = _searched(values, 8, 20_000, elsewhere)
    ordered = np.sort(values)
    assert set(found) == set(radix.quantile_ranks(values.size, (0.05, 0.5, 0.95)))
    for rank, value in found.items():
        assert value == ordered[rank]
    assert len(first) == 3 and all(p.window is not None for p in first)
    assert passes == 2


def test_a_bucket_of_equal_values_is_the_answer_after_one_pass() -> None:
    values = np.full(10_000, 3.25)
    values[:10] = -1.0
    found, passes = _search(values, 4, limit=1)
    assert set(found.values()) == {3.25}
    assert passes == 1


def test_buckets_at_the_infinities_and_either_zero_are_searched_by_their_keys() -> None:
    """A bucket's values are picked by comparing floats, then keys: -0.0 equals 0.0 as a
    float, and the keys past each infinity are NaN, so both ends need the keys' word."""
    for middle in (-0.0, 0.0, np.inf, -np.inf):
        values = np.concatenate([
            np.full(40, -np.inf), np.full(30, -0.0), np.full(31, 0.0), np.full(40, np.inf),
            np.full(9, middle), -np.logspace(-320, -300, 25), np.logspace(-320, -300, 25),
        ])
        found, _ = _search(values, 3, limit=1)
        ordered = np.sort(values)
        for rank, value in found.items():
            assert value == ordered[rank]


def test_order_keys_sort_like_the_floats_and_round_trip() -> None:
    values = np.array([-np.inf, -1e300, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, 1e300, np.inf])
    keys = radix.order_keys(values)
    assert (np.diff(keys.astype(object)) >= 0).all()
    assert [radix.value_of(int(k)) for k in keys] == list(values)
    assert (radix.order_values(keys) == values).all()


def test_a_staged_part_scans_the_same_from_its_path_as_from_its_bytes(tmp_path: Path) -> None:
    """A local worker reads a staged part by its path, a cluster's gets its bytes."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=5_000)
    values[::7] = np.nan
    table = pa.table({"c": values, "name": ["x"] * values.size, "n": np.arange(values.size)})
    part = tmp_path / "part.parquet"
    pq.write_table(table, part)
    finite = values[~np.isnan(values)]
    histograms = {"c": [radix.digit_counts(radix.order_keys(finite))]}
    column = ColumnPartial("c", finite.size, 0, 0.0, 0.0, 0.0, 0.0, 0.0, b"", b"")
    selection = radix.start((column,), histograms, (0.05, 0.5, 0.95), 16)
    by_path = stream.scan(Scan(b"", selection.probes, str(part)))
    by_bytes = stream.scan(Scan(part.read_bytes(), selection.probes))
    assert by_path == by_bytes == radix.scan({"c": finite}, selection.probes)


def _windowed_search(
    values: np.ndarray, pieces: int, sample: np.ndarray, limit: int = 64
) -> tuple[dict[int, float], int]:
    """Each piece counts its values in the windows a sample places, then the search (a
    value taken for a byte of the file)."""
    windows = [
        Window("c", low, high, share)
        for low, high, share in radix.windows_of(np.sort(sample), (0.05, 0.5, 0.95))
    ]
    chunks = [c for c in np.array_split(values, pieces) if c.size]
    histograms = {"c": [radix.digit_counts(radix.order_keys(c)) for c in chunks]}
    counted = {
        "c": [(c.size, tuple(radix.in_window(c, w, c.size) for w in windows)) for c in chunks]
    }
    column = ColumnPartial("c", values.size, 0, 0.0, 0.0, 0.0, 0.0, 0.0, b"", b"")
    selection = radix.start((column,), histograms, (0.05, 0.5, 0.95), limit, None, counted)
    passes = 0
    while not selection.done:
        results = tuple(radix.scan({"c": c}, selection.probes) for c in chunks)
        selection = radix.narrow(selection, results)
        passes += 1
    return {t.rank: t.value for t in selection.targets if t.value is not None}, passes


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 3000), elements=finite),
    st.integers(1, 9),
    hnp.arrays(np.float64, st.integers(0, 600), elements=finite),
)
def test_windows_counted_by_the_blocks_never_change_a_rank(
    values: np.ndarray, pieces: int, sample: np.ndarray
) -> None:
    """Windows placed by any sample, the data's own or not: a rank in one is read from
    it, any other is searched for by its digits; each is the sorted array's."""
    for drawn in (sample, values[:: max(1, values.size // 500)]):
        found, _ = _windowed_search(values, pieces, drawn)
        ordered = np.sort(values)
        assert set(found) == set(radix.quantile_ranks(values.size, (0.05, 0.5, 0.95)))
        for rank, value in found.items():
            assert value == ordered[rank]


def test_windows_placed_by_lines_from_all_over_the_data_need_no_pass() -> None:
    rng = np.random.default_rng(21)
    values = rng.normal(67.0, 2.0, 200_000)
    found, passes = _windowed_search(values, 8, values[::40])
    ordered = np.sort(values)
    assert set(found) == set(radix.quantile_ranks(values.size, (0.05, 0.5, 0.95)))
    assert all(value == ordered[rank] for rank, value in found.items())
    assert passes == 0


def test_a_block_with_far_more_in_a_window_than_foretold_keeps_none_and_the_digits_search() -> None:
    """A sample from readings around 60 puts the windows where the data (around 67) has
    almost nothing; one block of readings at 60 has far more in them than that: it keeps
    none (its memory stays bounded), the window goes unused, and the passes find the ranks."""
    rng = np.random.default_rng(22)
    values = np.concatenate([rng.normal(67.0, 2.0, 150_000), rng.normal(60.0, 0.01, 50_000)])
    sample = rng.normal(60.0, 2.0, 5_000)
    ((low, high, share),) = radix.windows_of(np.sort(sample), (0.5,))
    assert radix.in_window(values[150_000:], Window("c", low, high, share), 50_000).over
    found, passes = _windowed_search(values, 4, sample)
    ordered = np.sort(values)
    assert all(value == ordered[rank] for rank, value in found.items())
    assert passes >= 1


def test_a_block_keeps_no_more_of_a_window_than_its_bytes_foretold() -> None:
    """Lines read where a column was mostly empty foretell few of its values a byte: a
    block of 10,000 values in the window, where 100 were foretold, keeps none of them."""
    window = Window("c", 4.0, 6.0, per_byte=0.01)
    assert radix.in_window(np.full(10_000, 5.0), window, 10_000).over
    kept = radix.in_window(np.full(150, 5.0), window, 10_000)
    assert not kept.over and len(kept.values) == 150 * 8


def test_a_pass_keeps_none_of_a_window_far_fuller_than_its_sample_said() -> None:
    """Ties that the samples missed fill a window: each piece keeps none of them (the
    collect limit holds), and the digits counted in the same pass find the ranks."""
    rng = np.random.default_rng(23)
    values = np.concatenate([np.full(60_000, 504.0), rng.uniform(496.0, 512.0, 60_000)])
    rng.shuffle(values)
    chunks = np.array_split(values, 4)
    histograms = {"c": [radix.digit_counts(radix.order_keys(c)) for c in chunks]}
    column = ColumnPartial("c", values.size, 0, 0.0, 0.0, 0.0, 0.0, 0.0, b"", b"")
    selection = radix.start((column,), histograms, (0.5,), 1_000)
    probes = tuple(
        dataclasses.replace(p, window=(503.5, 504.5), keep=0.001) for p in selection.probes
    )
    selection = dataclasses.replace(selection, probes=probes)
    results = tuple(radix.scan({"c": c}, selection.probes) for c in chunks)
    assert all(found.over and not found.values for result in results for found in result)
    selection = radix.narrow(selection, results)
    while not selection.done:
        results = tuple(radix.scan({"c": c}, selection.probes) for c in chunks)
        selection = radix.narrow(selection, results)
    ordered = np.sort(values)
    assert all(t.value == ordered[t.rank] for t in selection.targets)
