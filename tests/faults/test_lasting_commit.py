"""A commit that keeps failing for one file's sake: the rest commit, that file is set aside.

`INGEST_FAIL_AT=ledger-commit:<file>` makes every commit holding the named file raise
at the ledger's commit, after its part files are renamed into place (and its Delta
log entry written), as a bug that the file's values bring out would: each time the
commit is undone. A full disk, the machine's fault, is retried instead
(tests/faults/test_disk_full.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable

import pytest

from ingest.store.lasting import LASTING_AFTER

from ..conftest import (
    Folder,
    Service,
    appended_to,
    drop_by_rename,
    drop_csv,
    wait_for,
    write_csv,
)
from ..invariants import check_delta, check_exactly_once


def _once(folder: Folder, fail_at: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if fail_at:
        env["INGEST_FAIL_AT"] = fail_at
    return subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, capture_output=True, text=True, timeout=180, env=env,
    )


def _committed(folder: Folder) -> set[str]:
    return {str(name) for (name,) in folder.query("SELECT DISTINCT source_file FROM records")}


@pytest.mark.parametrize("output_format", ["parquet", "delta"])
def test_a_batch_failing_for_one_file_commits_the_others_and_quarantines_that_one(
    folder: Folder, output_format: str,
) -> None:
    if output_format == "delta":
        pytest.importorskip("deltalake")
    # One worker: the eleven small files are read, and committed, as one task.
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 1, "drain_s": 60},
        output={"flush_s": 0.2, "format": output_format},
    )
    expected = {
        f"good{i:02d}.csv": len(write_csv(folder.drop / f"good{i:02d}.csv", 20 + i, i))
        for i in range(10)
    }
    write_csv(folder.drop / "poison.csv", 20, 99)
    shutil.copy(folder.drop / "good03.csv", folder.drop / "copy.csv")  # its duplicate

    done = _once(folder, "ledger-commit:poison.csv")

    assert done.returncode == 3, done.stderr  # a file was quarantined
    assert "in two halves, to find what fails" in done.stderr
    # Of two files with the same bytes, the one claimed first is committed.
    if "copy.csv" in _committed(folder):
        expected["copy.csv"] = expected.pop("good03.csv")
        check_exactly_once(folder, expected, {"poison.csv"}, {"good03.csv"})
    else:
        check_exactly_once(folder, expected, {"poison.csv"}, {"copy.csv"})
    report = json.loads((folder.quarantine / "poison.csv.error.json").read_text())
    assert report["error"] == "InjectedFailure"
    assert "INGEST_FAIL_AT=ledger-commit:poison.csv" in str(report["message"])
    assert "failed 3 times" in str(report["message"])
    assert (folder.quarantine / "poison.csv").exists()
    assert not list(folder.drop.iterdir())
    assert not list((folder.output / "_ingest" / "tmp").iterdir()), "a half's part was left"
    if output_format == "delta":
        check_delta(folder)


def test_a_file_whose_commit_fails_while_no_other_commits_waits_for_the_next_run(
    folder: Folder,
) -> None:
    """Alone, the file cannot show that the fault is its own and not the service's: it
    is not quarantined, but left in the drop folder, and the next run ingests it."""
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 1, "drain_s": 6},
        output={"flush_s": 0.2},
    )
    rows = len(write_csv(folder.drop / "poison.csv", 20, 99))

    failed = _once(folder, "ledger-commit:poison.csv")

    assert failed.returncode == 1, failed.stderr
    assert "uncommitted poison.csv" in failed.stderr
    assert "1 failing to commit" in failed.stderr
    assert (folder.drop / "poison.csv").exists()
    assert not (folder.quarantine / "poison.csv").exists()

    again = _once(folder, None)

    assert again.returncode == 0, again.stderr
    check_exactly_once(folder, {"poison.csv": rows}, set())


def test_once_gives_up_a_failing_commit_beside_a_file_still_being_written(
    folder: Folder,
) -> None:
    """A file appended to for ever is no other commit to wait for: the failing file is
    given up as when it is alone, the other left for the next run, and `once` ends."""
    folder.write_config(
        watch={"settle_ms": 1000, "once_unsettled_s": 1}, pipeline={"workers": 1},
        output={"flush_s": 0.2},
    )
    rows = len(write_csv(folder.drop / "poison.csv", 20, 99))
    growing = folder.drop / "growing.csv"
    with appended_to(growing):
        failed = _once(folder, "ledger-commit:poison.csv")

    assert failed.returncode == 1, failed.stderr
    assert "uncommitted poison.csv" in failed.stderr, failed.stderr
    assert "deferred growing.csv" in failed.stderr, failed.stderr
    appended = growing.read_text().count("\n") - 1
    again = _once(folder, None)
    assert again.returncode == 0, again.stderr
    check_exactly_once(folder, {"poison.csv": rows, "growing.csv": appended}, set())


def test_a_service_keeps_retrying_a_lone_failing_file_until_another_commits(
    folder: Folder, service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ingest run`: with no other commit to show that the fault is the file's own, the
    file is neither quarantined nor given up; once another file commits, it is
    quarantined, and the service goes on."""
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 1},
                        output={"flush_s": 0.2})
    monkeypatch.setenv("INGEST_FAIL_AT", "ledger-commit:poison.csv")
    write_csv(folder.drop / "poison.csv", 20, 99)
    svc = service()
    failed = "commit of poison.csv failed"
    wait_for(lambda: svc.text().count(failed) > LASTING_AFTER, 60, "its commits to fail")
    assert (folder.drop / "poison.csv").exists()
    assert not list(folder.quarantine.iterdir())
    assert "uncommitted" not in svc.text()

    rows = len(drop_csv(folder, "good.csv", 30, 1))
    wait_for(lambda: (folder.quarantine / "poison.csv").exists(), 60, "poison.csv quarantined")
    wait_for(lambda: not (folder.drop / "good.csv").exists(), 60, "good.csv committed")
    assert svc.stop() == 0
    check_exactly_once(folder, {"good.csv": rows}, {"poison.csv"})


def _ledger_states(folder: Folder) -> dict[str, str]:
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        return dict(db.execute("SELECT path, state FROM files"))


def test_a_file_whose_record_fails_alone_is_left_and_the_files_set_aside_with_it_are_not(
    folder: Folder,
) -> None:
    """`aside-recorded:bad.csv` raises at every record of files set aside that holds
    bad.csv, as a bug its values bring out would: retried together, the files set aside
    with it would wait as long; recorded in halves, the others are recorded, which shows
    the ledger can record, and bad.csv, failing alone, is left unrecorded for the next run."""
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 1, "drain_s": 6},
                        output={"flush_s": 0.2})
    expected = {
        f"good{i}.csv": len(write_csv(folder.drop / f"good{i}.csv", 20, i)) for i in range(4)
    }
    assert _once(folder, None).returncode == 0
    # Set aside in one task, and so recorded in one flush: a duplicate and two bad files.
    shutil.copy(folder.archive / _archived(folder, "good1.csv"), folder.drop / "copy.csv")
    (folder.drop / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    (folder.drop / "bad2.csv").write_text("x,y\n1,2\n3,4,5\n")

    failed = _once(folder, "aside-recorded:bad.csv")

    assert failed.returncode == 1, failed.stderr
    assert "recording 3 files set aside failed" in failed.stderr
    assert "uncommitted bad.csv" in failed.stderr
    assert "its record failed: INGEST_FAIL_AT=aside-recorded:bad.csv" in failed.stderr
    recorded = {**dict.fromkeys(expected, "ingested"), "copy.csv": "duplicate",
                "bad2.csv": "quarantined"}
    assert _ledger_states(folder) == recorded, "all but bad.csv"
    assert [p.name for p in folder.drop.iterdir()] == ["bad.csv"]
    assert not (folder.quarantine / "bad.csv").exists()

    again = _once(folder, None)

    assert again.returncode == 3, again.stderr
    check_exactly_once(folder, expected, {"bad.csv", "bad2.csv"}, {"copy.csv"})


def _archived(folder: Folder, name: str) -> str:
    [path] = folder.archive.rglob(name)
    return str(path.relative_to(folder.archive))


def test_a_service_goes_on_committing_past_a_file_whose_record_fails(
    folder: Folder, service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ingest run`: a record that fails alone is retried, with backoff, until a commit of
    the same flush goes through, which shows the fault is the file's own; then it is
    left, and the files after it commit without waiting on it."""
    folder.write_config(watch={"settle_ms": 0, "rescan_s": 3600}, pipeline={"workers": 1},
                        output={"flush_s": 0.2})
    monkeypatch.setenv("INGEST_FAIL_AT", "aside-recorded:bad.csv")
    svc = service()
    svc.wait_ready()
    drop_by_rename(folder, "bad.csv", b"a,b\n1,2\n3,4,5\n")
    wait_for(lambda: "recording bad.csv as quarantined failed" in svc.text(), 30, "a retry")
    assert "uncommitted" not in svc.text(), "alone, nothing shows the fault is its own"
    rows = {"good0.csv": len(drop_csv(folder, "good0.csv", 20, 0))}
    wait_for(lambda: "uncommitted bad.csv" in svc.text(), 60, "bad.csv left")
    retries = svc.text().count("recording bad.csv as quarantined failed")
    for i in range(1, 4):
        name = f"good{i}.csv"
        rows[name] = len(drop_csv(folder, name, 20, i))
        wait_for(lambda path=folder.drop / name: not path.exists(), 10, f"{name} committed")
    assert svc.stop() == 0, svc.text()
    assert svc.text().count("recording bad.csv as quarantined failed") == retries, "left"
    assert (folder.drop / "bad.csv").exists(), "left, unrecorded, for a later look"
    assert folder.rows_per_file() == rows
    assert _ledger_states(folder) == dict.fromkeys(rows, "ingested")
