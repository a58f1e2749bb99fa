"""A dask cluster's workers: tuned as the local pool's are, and asked what they see.

A dask nanny starts each worker with `MALLOC_TRIM_THRESHOLD_` at 64 KB, so that
memory freed goes back to the system at once. A task's buffers are megabytes, freed
and allocated again for every file, and each time their pages are faulted in afresh:
the worker spends that in system time. The plugin gives the worker the local pool's
settings (`startup.tune`), on every worker, those that join later included.

With `[pipeline] shared_output`, each worker is asked at start-up to read a file
the service has just written in the output folder, and to write one beside it for
the service to read (`answer_probe`): one that cannot would write its part files
where the service never finds them, or could not write them at all.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from distributed import WorkerPlugin


class Tuned(WorkerPlugin):
    name = "ingest-tuned"

    def __init__(self, plugins: bool):
        self.plugins = plugins  # feature sets that may hand pyarrow a pandas object

    def setup(self, worker: Any) -> None:
        from .startup import tune

        tune(self.plugins)


def answer_probe(path: str) -> str | None:
    """Read the token in the file at `path` and write it to a file beside it, whose path
    is returned: None if this worker cannot do both, as it must to stage part files there."""
    answer = f"{path}-{socket.gethostname()}-{os.getpid()}"
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read()
        with open(answer, "w", encoding="utf-8") as fh:
            fh.write(token)
    except (OSError, UnicodeDecodeError):
        return None
    return answer
