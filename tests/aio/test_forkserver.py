"""The local pool's forkserver is started before the service's imports, and the pool's
workers are forked from that same process."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, os, sys, time
import psutil
from ingest.aio import forkserver
forkserver.start()
def forkservers():
    found = []
    for child in psutil.Process().children():
        try:
            # Split, so as not to match a child not yet exec'd, whose cmdline is this script.
            if "from multiprocessing." + "forkserver import main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass  # not yet exec'd, or gone
    return found
deadline = time.monotonic() + 30  # the child may not have exec'd yet
while not (started := forkservers()) and time.monotonic() < deadline:
    time.sleep(0.01)
loaded = "ingest.aio.service" in sys.modules or "pyarrow" in sys.modules
from ingest.aio.to_compute import _process_pool
pool = _process_pool(2, False)
workers = [p.ppid() for p in (psutil.Process(pid) for pid in pool._processes)]
pool.shutdown()
print(json.dumps({
    "started": [p.pid for p in started],
    "preload": ["ingest.compute.task" in " ".join(p.cmdline()) for p in started],
    "loaded": loaded,
    "parents": workers,
}))
"""


def test_the_pool_forks_its_workers_from_the_forkserver_started_first() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(found["started"]) == 1, found
    assert found["preload"] == [True]
    assert not found["loaded"], "starting it loaded the service's modules"
    assert found["parents"] == found["started"] * 2
