"""The version is written once, in the package, and the installed metadata agrees."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import ingest


def test_the_command_and_the_installed_metadata_give_the_package_version() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "ingest", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert shown == f"ingest {ingest.__version__}"
    assert importlib.metadata.version("ingest") == ingest.__version__
