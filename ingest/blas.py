"""numpy's BLAS on one thread in every process of the service.

OpenBLAS starts a thread per core when numpy is imported, and its threads spin a
while, waiting for work: about 0.1 s of CPU at the start of the service's own
process, and as much in the forkserver and in each worker, for a library that
only the workers call, where the pool already owns the cores (`compute/startup.py`
holds them to one thread as well). The library reads its environment once, as it
loads: set before numpy is imported, it also reaches every process the service starts.
"""

from __future__ import annotations

import os

ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def one_thread() -> None:
    """For this process, if numpy is not loaded yet, and for every process it starts;
    a value the operator set is kept."""
    for name, value in ONE_THREAD.items():
        os.environ.setdefault(name, value)
