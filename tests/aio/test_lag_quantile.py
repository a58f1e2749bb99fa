"""The loop-lag quantile the exit line reports is numpy's, interpolated the same way."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ingest.aio.lag import LagProbe
from ingest.metrics import Metrics


@given(
    st.lists(st.floats(0, 10, allow_nan=False), max_size=200),
    st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]),
)
def test_the_quantile_is_numpys(samples: list[float], q: float) -> None:
    probe = LagProbe(Metrics())
    probe.samples.extend(samples)
    expected = float(np.quantile(samples, q)) if samples else 0.0
    assert abs(probe.quantile(q) - expected) <= 1e-12 * max(1.0, abs(expected))
