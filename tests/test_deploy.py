"""The files for the schedulers: the systemd unit verifies, the cron line runs our cli."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.cli import _parser

from .conftest import ROOT, Folder, write_csv

UNIT = ROOT / "deploy" / "ingest.service"
CRON = ROOT / "deploy" / "ingest.cron"
INSTALLED = "/opt/ingest/.venv/bin/ingest"  # where the examples say ingest is installed
HOME = "/srv/ingest"  # ...and where config.toml and its folders are
SCRIPT = str(Path(sys.executable).parent / "ingest")


def _settings(section: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    text = UNIT.read_text().split(f"[{section}]", 1)[1].split("\n[", 1)[0]
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's console script.
    unit = tmp_path / "ingest.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, SCRIPT))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "no warning either (an unknown key is only a warning)"


def test_the_unit_stops_gracefully_and_is_sandboxed() -> None:
    service = _settings("Service")
    assert service["Restart"] == ["on-failure"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert float(service["TimeoutStopSec"][0]) > 30, "above the default drain_s"
    assert service["ProtectSystem"] == ["strict"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert sorted(service["ReadWritePaths"][0].split()) == sorted(
        f"{HOME}/{key}" for key in ("drop", "output", "quarantine", "archive")
    )
    args = shlex.split(service["ExecStart"][0])
    assert args[0] == INSTALLED
    parsed = _parser().parse_args(args[1:])
    assert (parsed.command, parsed.wait) == ("run", True)
    assert parsed.config == Path(f"{HOME}/config.toml")


def _cron_line() -> str:
    [line] = [
        line for line in CRON.read_text().splitlines()
        if line and not line.startswith("#") and not re.match(r"^\w+=", line)
    ]
    return line


def test_the_cron_line_runs_ingest_once_and_its_command_parses() -> None:
    fields = _cron_line().split(None, 5)
    assert all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5]), fields[:5]
    words = shlex.split(fields[5])
    args = words[words.index(INSTALLED) + 1:words.index(">>")]
    parsed = _parser().parse_args(args)
    assert parsed.command == "once"
    assert parsed.config == Path(f"{HOME}/config.toml")


def test_the_cron_command_ingests_for_real(folder: Folder) -> None:
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    command = _cron_line().split(None, 5)[5]
    command = command.replace(INSTALLED, SCRIPT).replace(HOME, str(folder.root))

    result = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, (folder.root / "ingest.log").read_text()
    assert '"event": "ingested"' in (folder.root / "ingest.log").read_text()
    assert folder.query("SELECT count(*) FROM records") == [(10,)]


def test_the_readme_shows_both_files_as_they_are() -> None:
    readme = (ROOT / "README.md").read_text()
    assert _cron_line() in readme.splitlines()
    unit = UNIT.read_text().splitlines()
    for key in ("ExecStart", "Restart", "KillSignal", "TimeoutStopSec", "ReadWritePaths"):
        [line] = [x for x in unit if x.startswith(f"{key}=")]
        assert line in readme.splitlines(), line
