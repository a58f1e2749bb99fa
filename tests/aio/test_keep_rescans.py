"""With on_success = "keep", every file stays in the drop folder, and every rescan finds
it again. A running service does not take those it has resolved through the settler,
the intake and the ledger again at each rescan, yet a file that changes is read again,
and one that is deleted is forgotten (memory holds only files still there)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from ..conftest import Folder, Service, wait_for, write_csv

FILES = 20
RESCAN_S = 0.1
RESCANS = 10  # waited for, each time the test lets rescans run


def _put(path: Path, data: bytes, mtime_ns: int | None = None) -> None:
    """`data` at `path`, whole at once: written beside it (a name the service ignores),
    then renamed over it."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    if mtime_ns is not None:
        os.utime(temp, ns=(mtime_ns, mtime_ns))
    os.replace(temp, path)


def _ingested(service: Service) -> int:
    return len(re.findall(r" ingested \S+\.csv ", service.text()))


def test_rescans_in_keep_mode_skip_resolved_files_until_they_change(
    folder: Folder, service: Callable[..., Service]
) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep", "rescan_s": RESCAN_S},
        pipeline={"workers": 2}, output={"flush_s": 0},
    )
    for i in range(FILES):
        write_csv(folder.drop / f"f{i:02d}.csv", rows=10, seed=i)
    running = service()
    running.wait_ready()
    wait_for(lambda: _ingested(running) == FILES, 60, "every file to be ingested")
    time.sleep(RESCANS * RESCAN_S)  # rescans that find every file again

    # Replaced by a rename, by a file of the same size: a new version, read again.
    changed = folder.drop / "f03.csv"
    data = changed.read_bytes()
    _put(changed, data.replace(b"\n", b"\r", 1))
    wait_for(lambda: _ingested(running) == FILES + 1, 60, "the new version to be ingested")

    # Deleted, then, once rescans have not found it, put back as it was (same bytes,
    # same mtime): forgotten, so taken up again, and the ledger knows it.
    gone = folder.drop / "f07.csv"
    data, mtime_ns = gone.read_bytes(), gone.stat().st_mtime_ns
    gone.unlink()
    time.sleep(RESCANS * RESCAN_S)
    _put(gone, data, mtime_ns)
    time.sleep(RESCANS * RESCAN_S)

    assert running.stop() == 0
    last = running.text().strip().splitlines()[-1]
    assert f"ingested {FILES + 1} files" in last, last
    assert ", 1 already known," in last, last
