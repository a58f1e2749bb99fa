"""Feature sets the tests name "tests.plugin_sets:<function>", as a user names their own.

Each takes one column's values as float64, NaN standing for null, like a built-in set.
"""

from __future__ import annotations

import numpy as np

FeatureValue = float | int | None
HUNG_MARK = "INGEST_TEST_HUNG_MARK"  # an environment variable: see hang_on_sentinel
SLOW_MARK = "INGEST_TEST_SLOW_MARK"  # an environment variable: see slow


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


def named_like_identity(values: np.ndarray) -> dict[str, FeatureValue]:
    """A plugin whose feature shares a name, in another case, with an identity column."""
    return {"Source_File": float(values.size)}


def spread_in_capitals(values: np.ndarray) -> dict[str, FeatureValue]:
    """`spread`'s features, named in capitals: the same columns to a reader."""
    return {key.upper(): value for key, value in spread(values).items()}


def explode(values: np.ndarray) -> dict[str, FeatureValue]:
    """A plugin with a bug in it."""
    raise ZeroDivisionError("plugin divided by zero")


not_callable = 42


# Sentinels a test writes into a CSV to make one file, and only that file, misbehave.
SEGFAULT_VALUE = 666.0
HANG_VALUE = 777.0
EXIT_VALUE = 888.0


def segfault_on_sentinel(values: np.ndarray) -> dict[str, FeatureValue]:
    """Kill the worker outright, as a bug in a C extension would."""
    if SEGFAULT_VALUE in values:
        import ctypes

        ctypes.string_at(0)
    return {}


def hang_on_sentinel(values: np.ndarray) -> dict[str, FeatureValue]:
    """Never return, as a feature function stuck in a loop would. With HUNG_MARK set,
    touch that path first: a test then knows a worker is stuck, without guessing when."""
    if HANG_VALUE in values:
        import os
        import time
        from pathlib import Path

        if mark := os.environ.get(HUNG_MARK):
            Path(mark).touch()
        while True:
            time.sleep(0.1)
    return {}


def exit_on_sentinel(values: np.ndarray) -> dict[str, FeatureValue]:
    """Call sys.exit, which a careless library sometimes does."""
    if EXIT_VALUE in values:
        raise SystemExit(3)
    return {}


class Unpicklable(Exception):
    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("this exception refuses to be pickled")


def raise_unpicklable(values: np.ndarray) -> dict[str, FeatureValue]:
    raise Unpicklable("an exception that cannot cross a process boundary")


def return_unpicklable(values: np.ndarray) -> dict[str, FeatureValue]:
    return {"lock": __import__("threading").Lock()}  # type: ignore[dict-item]


def slow(values: np.ndarray) -> dict[str, FeatureValue]:
    """Take a while, so that files are still in flight when a test strikes. With SLOW_MARK
    set, touch that path first: a test then knows a worker is busy, without guessing when."""
    import os
    import time
    from pathlib import Path

    if mark := os.environ.get(SLOW_MARK):
        Path(mark).touch()
    time.sleep(0.05)
    return {}


def hang_ignoring_alarm(values: np.ndarray) -> dict[str, FeatureValue]:
    """Hang where the worker's own time limit cannot reach, as C code stuck in a loop would."""
    if HANG_VALUE in values:
        import signal
        import time

        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            time.sleep(0.1)
    return {}


def exhaust_memory_on_sentinel(values: np.ndarray) -> dict[str, FeatureValue]:
    """Hit an address-space cap, as a worker under a memory limit would."""
    if SEGFAULT_VALUE not in values:
        return {}
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (512 * 1024 * 1024, hard))
    try:
        np.ones(1024 * 1024 * 1024, dtype=np.uint8)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return {}


WAIT_MARK = "INGEST_TEST_WAIT_MARK"  # an environment variable: see wait_on_sentinel
WAIT_VALUE = 555.0


def wait_on_sentinel(values: np.ndarray) -> dict[str, FeatureValue]:
    """Hold the file whose column holds WAIT_VALUE until the path WAIT_MARK names is gone
    (60 s at most): a test naming another input there then knows it was committed and
    archived first, without guessing how long either task takes."""
    import os
    import time
    from pathlib import Path

    if WAIT_VALUE in values and (mark := os.environ.get(WAIT_MARK)):
        ends = time.monotonic() + 60
        while Path(mark).exists() and time.monotonic() < ends:
            time.sleep(0.02)
    return {}
