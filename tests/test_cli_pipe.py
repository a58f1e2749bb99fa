"""A reader that closes stdout early (`ingest status | head`) ends the command quietly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from .conftest import Folder, write_csv


@pytest.mark.parametrize("command", [("status",), ("status", "--json"), ("explain", "a.csv")])
def test_a_closed_stdout_ends_the_command_quietly(
    folder: Folder, command: tuple[str, ...]
) -> None:
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    assert folder.ingest("once").returncode == 0
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first byte is written
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ingest", *command, "--config", str(folder.config)],
            cwd=folder.root, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
        )
    finally:
        os.close(writer)

    assert result.stderr == "", "no traceback, no 'ingest failed'"
    assert result.returncode == 128 + signal.SIGPIPE


def test_an_open_stdout_still_gets_everything(folder: Folder) -> None:
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    assert folder.ingest("once").returncode == 0
    result = folder.ingest("status")
    assert result.returncode == 0
    assert "ingested:    1" in result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith("last ingest: 20") for line in lines), result.stdout
    # The last thing status prints, the tables, sorted by name.
    assert lines[-1].startswith("table records: schema v1"), result.stdout
