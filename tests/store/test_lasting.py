"""Which commit failures are the machine's (retried for ever) and which a batch's own."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from ingest.store.crashpoints import InjectedFailure
from ingest.store.lasting import the_machines


def _raised_from(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError("the commit failed") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    PermissionError(errno.EACCES, "Permission denied"),
    sqlite3.OperationalError("database or disk is full"),
    sqlite3.OperationalError("database is locked"),
    # deltalake's text for a full disk under its log (tests/faults/test_delta_disk_full.py)
    Exception("Generic LocalFileSystem error\n  Unable to copy data to file\n"
              "  No space left on device (os error 28)"),
    _raised_from(OSError(errno.EIO, "Input/output error")),
])
def test_the_machine_s_faults_are_told_apart(error: BaseException) -> None:
    assert the_machines(error)


def _sqlite_error(tmp_path: Path, statement: str, *, lock: bool = False) -> sqlite3.Error:
    path = tmp_path / "ledger.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS files (path TEXT)")
    if lock:
        holder.execute("BEGIN IMMEDIATE")
    db = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        db.execute(statement)
    except sqlite3.Error as exc:
        return exc
    finally:
        db.close()
        holder.close()
    raise AssertionError(f"{statement!r} did not fail")


def test_sqlite_s_own_codes_tell_a_locked_ledger_from_a_statement_s_bug(tmp_path: Path) -> None:
    locked = _sqlite_error(tmp_path, "INSERT INTO files VALUES ('a')", lock=True)
    assert isinstance(locked, sqlite3.OperationalError)
    assert "locked" in str(locked)
    assert the_machines(locked)
    # A statement's own error fails every commit alike, and no retry mends it.
    for statement in ("SELECT sha256 FROM files", "INSERT INTO nowhere VALUES (1)"):
        bug = _sqlite_error(tmp_path, statement)
        assert isinstance(bug, sqlite3.OperationalError)
        assert not the_machines(bug), bug
        assert not the_machines(_raised_from(bug))


@pytest.mark.parametrize("error", [
    InjectedFailure("INGEST_FAIL_AT=ledger-commit:poison.csv"),
    ValueError("Invalid data type for Delta Lake"),
    KeyError("temp"),
    sqlite3.IntegrityError("UNIQUE constraint failed: files.path"),
    _raised_from(TypeError("unhashable type")),
])
def test_a_batch_s_own_faults_are_not_the_machine_s(error: BaseException) -> None:
    assert not the_machines(error)


def test_another_writers_commit_to_a_delta_log_is_not_the_batchs_fault() -> None:
    # A VACUUM, or another writer, committed to the log first: counted as the batch's
    # fault, good files were quarantined after three such tries.
    exceptions = pytest.importorskip("deltalake.exceptions")
    lost = exceptions.CommitFailedError("Failed to commit transaction: 0")
    assert the_machines(lost)
    assert the_machines(_raised_from(lost))
