"""The moments of a block without nulls skip the masks, and are the masked ones to the bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ingest.compute import features

_FINITE = st.floats(-1e9, 1e9, allow_nan=False, allow_subnormal=False)
_WITH_NAN = st.one_of(_FINITE, st.just(float("nan")))


def _masked_moments(block: np.ndarray, axis: int) -> tuple[np.ndarray, ...]:
    """The moments as they were taken before, masks and all, along `axis` (the rows)."""
    rows = block.shape[axis]
    missing = np.isnan(block)
    count = rows - missing.sum(axis=axis)
    zeroed = np.where(missing, 0.0, block)
    safe = np.maximum(count, 1)
    mean = zeroed.sum(axis=axis) / safe
    deviation = np.where(missing, 0.0, block - np.expand_dims(mean, axis))
    variance = (deviation * deviation).sum(axis=axis) / np.maximum(count - 1, 1)
    rms = np.sqrt((zeroed * zeroed).sum(axis=axis) / safe)
    return count, mean, variance, rms


def _bits(values: tuple[np.ndarray, ...]) -> list[bytes]:
    return [np.ascontiguousarray(v, dtype=np.float64).tobytes() for v in values]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(1, 4), st.booleans(), st.data())
def test_a_file_block_gives_the_masked_moments(
    rows: int, width: int, nulls: bool, data: st.DataObject
) -> None:
    values = data.draw(arrays(np.float64, (rows, width), elements=_WITH_NAN if nulls else _FINITE))
    block = np.asfortranarray(values)
    assert _bits(features.moments(block)) == _bits(_masked_moments(block, 0))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5), st.integers(1, 300), st.integers(1, 4), st.booleans(), st.data())
def test_a_stacked_block_gives_the_masked_moments(
    files: int, rows: int, width: int, nulls: bool, data: st.DataObject
) -> None:
    values = data.draw(
        arrays(np.float64, (files, width, rows), elements=_WITH_NAN if nulls else _FINITE)
    )
    stack = values.transpose(0, 2, 1)  # each file's column contiguous, as `summaries` makes
    assert _bits(features.moments(stack, axis=1)) == _bits(_masked_moments(stack, 1))
