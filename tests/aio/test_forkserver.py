"""The local pool's forkserver is started before the service's imports, and the pool's
workers are forked from that same process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..conftest import ROOT, Folder, write_csv

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


def test_the_workers_import_nothing_from_the_folder_ingest_was_started_in(folder: Folder) -> None:
    """A `numpy.py` where the command is run (a drop folder, a project of the same names):
    the forkserver, started by `python -c`, would put that folder first on its path, and the
    workers would import it (and fail every file); they import the installed packages."""
    (folder.root / "numpy.py").write_text(
        f"open({str(folder.root / 'imported')!r}, 'w').close()\n"
        "raise ImportError('the numpy.py of the working folder')\n"
    )
    write_csv(folder.drop / "a.csv", 50, seed=1)
    script = Path(sys.executable).parent / "ingest"  # its path has no working folder either
    done = subprocess.run(
        [str(script), "once", "--config", str(folder.config)],
        cwd=folder.root, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not (folder.root / "imported").exists()
    assert folder.rows_per_file() == {"a.csv": 50}


def test_python_m_ingest_in_a_checkout_runs_its_workers_from_the_same_checkout(
    folder: Folder,
) -> None:
    """`python -m ingest` in a folder holding a copy of the package runs that copy, as
    Python does for `-m`: its workers are forked from a forkserver that loaded the same
    copy (here, one whose workers' module writes a mark as it loads), not the installed one."""
    copy = folder.root / "ingest"
    shutil.copytree(ROOT / "ingest", copy, ignore=shutil.ignore_patterns("__pycache__"))
    mark = folder.root / "loaded-from-the-copy"
    task = copy / "compute" / "task.py"
    task.write_text(task.read_text() + f"\nopen({str(mark)!r}, 'w').close()\n")
    write_csv(folder.drop / "a.csv", 50, seed=2)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert mark.exists(), "the workers loaded the installed package, the service the copy"
    assert folder.rows_per_file() == {"a.csv": 50}
