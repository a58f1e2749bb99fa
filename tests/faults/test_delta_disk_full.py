"""A disk that fills between the part files and the Delta log entry: no half commit.

The table's `_delta_log/` is put on a tiny tmpfs of its own and filled, so the part
files and the ledger have room but the log entry has none: each commit fails at the
Delta step, is undone, and is retried once space returns.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("deltalake")

from ingest.store.lasting import LASTING_AFTER
from ingest.store.ledger import Ledger

from ..conftest import Folder, Service, wait_for, write_csv
from ..invariants import check_delta, check_exactly_once
from .test_disk_full import _can_mount


@pytest.fixture
def full_log(folder: Folder) -> Iterator[Path]:
    """records' `_delta_log/` on a full 64 KiB tmpfs, holding the log as it was; yields
    the filler file whose removal frees the space."""
    if not _can_mount():
        pytest.skip("needs root to mount a tmpfs")
    log = folder.output / "records" / "_delta_log"
    kept = log.with_name("kept-log")
    log.rename(kept)
    log.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(log)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        for entry in kept.iterdir():
            shutil.copy2(entry, log / entry.name)
        shutil.rmtree(kept)
        filler = log / ".filler"
        try:
            with filler.open("wb") as fh:
                while True:
                    fh.write(b"x" * 4096)
                    fh.flush()
        except OSError:
            pass
        yield filler
    finally:
        subprocess.run(["umount", "-l", str(log)], check=False)


@pytest.fixture
def one_commit(folder: Folder) -> dict[str, int]:
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1}, pipeline={"workers": 2},
        output={"flush_s": 0.1, "format": "delta"},
    )
    expected = {"first.csv": len(write_csv(folder.drop / "first.csv", 50, 99))}
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    return expected


@pytest.fixture
def three_parts(folder: Folder) -> dict[str, int]:
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 1}, output={"format": "delta"},
    )
    expected = {}
    for i in range(3):
        expected[f"p{i}.csv"] = len(write_csv(folder.drop / f"p{i}.csv", 40, i))
        done = folder.ingest("once")
        assert done.returncode == 0, done.stderr
    return expected


def test_a_full_disk_at_a_compactions_log_entry_puts_the_old_parts_back(
    folder: Folder, three_parts: dict[str, int], full_log: Path
) -> None:
    # The swap was rolled forward: the old parts deleted, the new ones in the ledger, and
    # the log still naming the old ones: no Delta reader opened the table until a restart.
    before = sorted(folder.parts("records"))
    assert len(before) == 3
    failed = folder.ingest("compact")
    assert failed.returncode == 1, failed.stderr
    # One log line says why, after that of the features partition, compacted first.
    lines = failed.stderr.strip().splitlines()
    assert all(line.startswith("20") for line in lines), failed.stderr  # no traceback
    line = lines[-1]
    assert "ERROR   compaction stopped: " in line, failed.stderr
    assert "No space left on device" in line or "os error 28" in line, line
    assert sorted(folder.parts("records")) == before
    assert not list((folder.output / "_ingest").glob("swap-*"))
    check_delta(folder)
    check_exactly_once(folder, three_parts, set())

    full_log.unlink()
    done = folder.ingest("compact")
    assert done.returncode == 0, done.stderr
    assert len(folder.parts("records")) == 1
    check_delta(folder)
    check_exactly_once(folder, three_parts, set())


def test_a_commit_left_half_in_a_delta_log_stops_the_service_for_a_restart_to_repair(
    folder: Folder, one_commit: dict[str, int], service: type[Service]
) -> None:
    """A full disk that refuses a commit's second log entry, and then its revert of the
    first, leaves the part half in the logs, pending in the ledger: only a start-up repair
    settles it. The service retried every commit after it for ever, failing each, until
    restarted by hand. The state is made here as that disk leaves it: the part pending in
    the ledger, written by this process into the running service's ledger."""
    expected = dict(one_commit)
    svc = service()
    svc.wait_ready()
    ledger = Ledger(folder.output / "_ingest" / "ledger.sqlite")
    try:
        ledger.begin_part("20000101T000000-half", ["records/ingest_date=2000-01-01/x.parquet"])
    finally:
        ledger.close()
    expected["after.csv"] = len(write_csv(folder.drop / "after.csv", 30, 5))

    code = svc.proc.wait(60)

    text = svc.text()
    assert code == 1, text
    last = text.strip().splitlines()[-1]
    assert last.endswith(
        "ingest stopped: an earlier commit is half in a Delta log; the next start finishes or"
        " undoes it"
    ), text
    assert "Traceback" not in text and "commit failed" not in text, text
    assert "drain_s" not in text, "it did not wait for drain_s"
    assert 'deferred after.csv reason="the service stopped on a failure before its commit' in text
    assert (folder.drop / "after.csv").exists(), "left for the next run"
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    assert "1 interrupted parts removed" in restarted.stderr, restarted.stderr
    check_exactly_once(folder, expected, set())
    check_delta(folder)


def test_a_full_disk_at_the_log_entry_undoes_the_commit_and_retries(
    folder: Folder, one_commit: dict[str, int], full_log: Path, service: type[Service]
) -> None:
    expected = dict(one_commit)
    for i in range(20):
        expected[f"f{i:02d}.csv"] = len(write_csv(folder.drop / f"f{i:02d}.csv", 100, i))
    svc = service()
    # More failures than a batch's own fault is given before it is split (store/lasting.py),
    # each told as the machine's: "commit failed: ...", not "commit of <files> failed: ...".
    wait_for(lambda: svc.text().count("commit failed: ") > LASTING_AFTER, 60,
             "commits to fail at the log")
    assert "commit of " not in svc.text(), "a full disk is not the batch's fault"
    assert "two halves" not in svc.text(), "a full disk is not the batch's fault"
    assert not list(folder.quarantine.iterdir()), "a full disk is not the files' fault"
    assert list(folder.drop.glob("f*.csv")), "uncommitted inputs stay in the drop folder"
    # While it fails: the log, the ledger and the folder agree, on the first commit alone.
    assert check_delta(folder)["records"] == 1
    assert "No space left on device" in svc.text() or "os error 28" in svc.text(), svc.text()

    full_log.unlink()
    wait_for(lambda: not list(folder.drop.glob("*.csv")), 90, "every input to be committed")
    assert svc.stop() == 0
    check_exactly_once(folder, expected, set())
    check_delta(folder)
