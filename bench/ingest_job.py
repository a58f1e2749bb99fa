"""How the benchmark drives `ingest`: a generated config.toml and the command line.

Called in the parent process. Every path in the config is absolute, so the
config can live anywhere; the drop folder is the cached corpus itself, kept
read-only by `on_success = "keep"`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

TomlValue = str | int | float | bool | list[str]
Sections = Mapping[str, Mapping[str, TomlValue]]


def _toml(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string.
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return repr(value)


def write_config(path: Path, drop: Path, state: Path, overrides: Sections | None = None) -> Path:
    """Write a config.toml that reads `drop` and keeps output, quarantine and archive in `state`."""
    sections: dict[str, dict[str, TomlValue]] = {
        "paths": {
            "drop": str(drop.resolve()),
            "output": str((state / "output").resolve()),
            "quarantine": str((state / "quarantine").resolve()),
            "archive": str((state / "archive").resolve()),
        },
        "watch": {"on_success": "keep"},
    }
    for section, values in (overrides or {}).items():
        sections.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def drop_for(corpus: Path, state: Path, on_success: str) -> Path:
    """The drop folder of a run: the corpus itself when it is kept; else hard links to it
    under `state`, which the run archives or deletes while the corpus keeps its own."""
    if on_success == "keep":
        return corpus
    return Path(shutil.copytree(corpus, state / "drop", copy_function=os.link))


def command(*args: str) -> list[str]:
    """The `ingest` console script beside this interpreter, else `python -m ingest`."""
    script = Path(sys.executable).parent / "ingest"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "ingest", *args]


def available() -> bool:
    """True when `ingest --help` runs and exits 0."""
    try:
        done = subprocess.run(command("--help"), capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def reset(state: Path) -> None:
    """Forget a previous run: output, ledger, quarantine and archive all go."""
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
