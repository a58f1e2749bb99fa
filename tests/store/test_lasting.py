"""Which commit failures are the machine's (retried for ever) and which a batch's own."""

from __future__ import annotations

import errno
import sqlite3

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


@pytest.mark.parametrize("error", [
    InjectedFailure("INGEST_FAIL_AT=ledger-commit:poison.csv"),
    ValueError("Invalid data type for Delta Lake"),
    KeyError("temp"),
    sqlite3.IntegrityError("UNIQUE constraint failed: files.path"),
    _raised_from(TypeError("unhashable type")),
])
def test_a_batch_s_own_faults_are_not_the_machine_s(error: BaseException) -> None:
    assert not the_machines(error)
