"""Feature sets the tests name "tests.plugin_sets:<function>", as a user names their own.

Each takes one column's values as float64, NaN standing for null, like a built-in set.
"""

from __future__ import annotations

import numpy as np

FeatureValue = float | int | None


def spread(values: np.ndarray) -> dict[str, FeatureValue]:
    """Range and number of positive values: two columns a plugin adds."""
    valid = values[~np.isnan(values)]
    if valid.size == 0:
        return {"spread": None, "positives": 0}
    return {"spread": float(valid.max() - valid.min()), "positives": int((valid > 0).sum())}


def named_like_summary(values: np.ndarray) -> dict[str, FeatureValue]:
    """A plugin whose feature shares a name with a summary column."""
    valid = values[~np.isnan(values)]
    return {"max": float(valid.max()) if valid.size else None, "energy": float(valid @ valid)}


def explode(values: np.ndarray) -> dict[str, FeatureValue]:
    """A plugin with a bug in it."""
    raise ZeroDivisionError("plugin divided by zero")


not_callable = 42
