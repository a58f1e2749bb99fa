"""With on_success = "keep", every file stays in the drop folder, and every rescan finds
it again. A running service does not take those it has resolved through the settler,
the intake and the ledger again at each rescan, yet a file that changed is read again.
(When a remembered file is forgotten, and what a rescan finding a file in flight does:
tests/aio/test_settle.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..conftest import Folder, Service, wait_for, write_csv

FILES = 20
RESCAN_S = 0.1
RESCANS = 20  # rescan periods waited while the service runs


def _run_until_idle(service: Callable[..., Service], ingested: int) -> str:
    """Run the service until it has ingested `ingested` files and `RESCANS` rescan periods
    have passed; its exit line."""
    running = service()
    running.wait_ready()
    wait_for(lambda: running.text().count(" ingested f") == ingested, 60, "the files")
    time.sleep(RESCANS * RESCAN_S)  # rescans that find every file again
    assert running.stop() == 0
    return running.text().strip().splitlines()[-1]


def test_rescans_in_keep_mode_pass_over_resolved_files_and_a_changed_one_is_read_again(
    folder: Folder, service: Callable[..., Service]
) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep", "rescan_s": RESCAN_S},
        pipeline={"workers": 2}, output={"flush_s": 0},
    )
    for i in range(FILES):
        write_csv(folder.drop / f"f{i:02d}.csv", rows=10, seed=i)

    first = _run_until_idle(service, FILES)
    assert f"ingested {FILES} files" in first, first
    assert ", 0 already known," in first, first

    # Changed while no service ran, to the same size: the restart's scan reads it again
    # and finds the others known, once each, however many rescans follow.
    changed = folder.drop / "f03.csv"
    data = bytearray(changed.read_bytes())
    last_digit = max(i for i, byte in enumerate(data) if chr(byte).isdigit())
    data[last_digit] = ord("1") if data[last_digit] != ord("1") else ord("2")
    changed.write_bytes(bytes(data))

    second = _run_until_idle(service, 1)
    assert "ingested 1 files" in second, second
    assert f", {FILES - 1} already known," in second, second
