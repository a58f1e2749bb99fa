"""A full output disk: nothing is quarantined, nothing half-written, and intake resumes."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.csv as pa_csv
import pytest

from ingest.store.lasting import LASTING_AFTER
from ingest.store.ledger import FileRecord, Ledger

from ..conftest import Folder, Service, free_port, wait_for, write_csv
from ..invariants import check_exactly_once
from ..store.seed import seed_parts
from ..test_stream import big_csv
from ..test_watch_health import _healthz


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def small_disk(folder: Folder) -> Iterator[Path]:
    """The output folder on a 256 KiB tmpfs, which a test may grow with `remount`."""
    if not _can_mount():
        pytest.skip("needs root to mount a tmpfs")
    folder.output.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder.output)],
        capture_output=True, text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder.output
    finally:
        subprocess.run(["umount", "-l", str(folder.output)], check=False)


def _grow(disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)


def _until_commits_fail(
    folder: Folder, service: type[Service], metrics_port: int = 0, **pipeline: object
) -> tuple[Service, dict[str, int]]:
    """40 files dropped on the small disk and a service started; returns once a commit
    has failed for want of space."""
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1}, pipeline={"workers": 2, **pipeline},
        output={"flush_s": 0.1, "compression": "none"}, metrics={"port": metrics_port},
    )
    expected = {
        f"f{i:02d}.csv": len(write_csv(folder.drop / f"f{i:02d}.csv", 400, i, columns=6))
        for i in range(40)
    }
    svc = service()
    wait_for(lambda: "retrying in" in svc.text(), 60, "a commit to fail for want of space")
    return svc, expected


def test_disk_full_keeps_inputs_pending_then_resumes_when_space_returns(
    folder: Folder, small_disk: Path, service: type[Service]
) -> None:
    svc, expected = _until_commits_fail(folder, service)
    # More failures than a batch's own fault is given before it is split (store/lasting.py),
    # each told as the machine's: "commit failed: ...", not "commit of <files> failed: ...".
    wait_for(lambda: svc.text().count("commit failed: ") > LASTING_AFTER, 60, "commits to fail")

    assert "commit of " not in svc.text(), "a full disk is not the batch's fault"
    assert "two halves" not in svc.text(), "a full disk is not the batch's fault"
    assert not list(folder.quarantine.iterdir()), "a full disk is not the files' fault"
    assert list(folder.drop.glob("*.csv")), "uncommitted inputs stay in the drop folder"
    assert "No space left on device" in svc.text() or "disk is full" in svc.text()

    _grow(small_disk)
    wait_for(lambda: not list(folder.drop.glob("*.csv")), 90, "every input to be committed")
    assert svc.stop() == 0
    check_exactly_once(folder, expected, set())


def test_healthz_is_503_while_commits_keep_failing_and_200_once_one_goes_through(
    folder: Folder, small_disk: Path, service: type[Service]
) -> None:
    """Files wait in the drop folder while the disk is full, for as long as it stays so:
    a supervisor's probe must see it, not only the log."""
    port = free_port()
    svc, expected = _until_commits_fail(folder, service, metrics_port=port)
    assert _healthz(port)[0] == 200, "a first failure is not yet a problem"
    wait_for(lambda: _healthz(port)[0] == 503, 60, "/healthz to turn 503")
    status, body = _healthz(port)
    assert status == 503 and body.startswith("commits failing for "), body
    assert "No space left on device" in body or "disk is full" in body, body

    _grow(small_disk)
    wait_for(lambda: not list(folder.drop.glob("*.csv")), 90, "every input to be committed")
    assert _healthz(port) == (200, "ok\n")
    assert svc.stop() == 0
    check_exactly_once(folder, expected, set())


def test_a_ledger_transaction_that_fails_for_want_of_space_ends_and_says_why(
    small_disk: Path,
) -> None:
    ledger = Ledger(small_disk / "ledger.sqlite")
    try:
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        filler = small_disk / "filler"
        filler.write_bytes(b"x" * free)
        # A small batch fails in COMMIT, a large one while SQLite spills its cache to the WAL.
        # Either way the error is the disk's, and the next transaction can begin.
        for count in (20, 30_000):
            files = [
                FileRecord(f"batch{count}/f{i:05d}.csv", 1, 1, "a" * 64, "ingested", done_at=1.0)
                for i in range(count)
            ]
            with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
                ledger.record(files)
            assert not ledger.counts(), "nothing of a failed transaction is kept"
        filler.unlink()
        ledger.record(files[:3])  # the next transaction begins and commits
        assert ledger.counts() == {"ingested": 3}
    finally:
        ledger.close()


def test_sigterm_while_commits_fail_exits_within_drain_s_and_leaves_the_files_for_later(
    folder: Folder, small_disk: Path, service: type[Service]
) -> None:
    drain_s = 3
    svc, expected = _until_commits_fail(folder, service, drain_s=drain_s)

    svc.proc.send_signal(signal.SIGTERM)
    try:  # commits that fail are retried for as long as it takes: drain_s alone ends them
        code = svc.proc.wait(drain_s + 30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"SIGTERM did not stop the service:\n{svc.text()}") from None

    assert code == 0, svc.text()
    assert "could not be committed before drain_s" in svc.text()
    assert not list(folder.quarantine.iterdir()), "a full disk is not the files' fault"
    left = sorted(path.name for path in folder.drop.glob("*.csv"))
    assert left, "uncommitted inputs stay in the drop folder"
    # Each named once, as any file a stop leaves: most as their commits failing, one not
    # yet read when the stop came (and rescans during the drain do not name it again).
    assert sorted(re.findall(r"deferred (\S+) reason=", svc.text())) == left, svc.text()
    assert re.search(r"deferred \S+ reason=\"its commit kept failing until drain_s ran out",
                     svc.text()), svc.text()

    _grow(small_disk)
    again = folder.ingest("once")
    assert again.returncode == 0, again.stderr
    assert not list(folder.drop.glob("*.csv"))
    check_exactly_once(folder, expected, set())


def test_a_streamed_file_whose_blocks_find_the_disk_full_waits_then_is_ingested_once(
    folder: Folder, small_disk: Path, service: type[Service]
) -> None:
    """Its workers write its blocks' parts straight to the output disk: a block that
    cannot be written there leaves the file for a later run, never in quarantine."""
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1}, pipeline={"workers": 2, "memory_mb": 1},
        output={"flush_s": 0.1, "compression": "none"},
    )
    big_csv(folder.drop / "big.csv", 40_000)
    whole = pa_csv.read_csv(folder.drop / "big.csv")
    svc = service()
    wait_for(lambda: "could not stage" in svc.text() or _quarantined(folder), 60,
             "a block to find the disk full")

    assert not _quarantined(folder), "a full disk is not the file's fault"
    assert (folder.drop / "big.csv").exists()

    _grow(small_disk)
    wait_for(lambda: not (folder.drop / "big.csv").exists(), 90, "the file to be committed")
    assert svc.stop() == 0
    check_exactly_once(folder, {"big.csv": whole.num_rows}, set())


def _quarantined(folder: Folder) -> list[Path]:
    return list(folder.quarantine.iterdir()) if folder.quarantine.exists() else []


def test_a_compaction_that_does_not_fit_waits_longer_each_time_and_says_so_in_one_line(
    folder: Folder, small_disk: Path, service: type[Service]
) -> None:
    # Tried again after every commit, each time with a traceback: about one a second in
    # the log of a service left running on a full disk.
    subprocess.run(["mount", "-o", "remount,size=12m", str(small_disk)], check=True)
    # Today's partition: twelve zstd parts, due for a merge that, written without
    # compression (16 MB), needs more than the disk has; each commit beside it fits.
    seeded = seed_parts(folder, 12, 170_000)
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1},
        output={"flush_s": 0.05, "compression": "none"}, pipeline={"workers": 1},
    )
    svc = service()
    svc.wait_ready()
    expected: dict[str, int] = {}
    started = time.monotonic()
    for i in range(16):
        (folder.drop / f"t{i:02d}.csv").write_text(f"v\n{-i}\n{-i - 100}\n")  # its columns
        expected[f"t{i:02d}.csv"] = 2
        time.sleep(0.25)
    wait_for(lambda: not list(folder.drop.glob("*.csv")), 60, "every input to be committed")
    window = time.monotonic() - started
    assert svc.stop() == 0
    text = svc.text()

    tries = text.count("compaction failed: ")
    assert tries >= 1, text
    assert "Traceback" not in text, "a full disk is the machine's: one line, no traceback"
    # Pauses of 0.5, 1, 2, 4 s... after each failure: far fewer tries than commits.
    assert tries <= 1 + math.log2(1 + window / 0.5), (tries, window, text)
    assert "No space left on device" in text
    assert folder.rows_per_file() == {**seeded, **expected}  # (seeded parts have no features)
