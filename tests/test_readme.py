"""The README's reader one-liners run, as written, against real output."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, SAMPLE_DATA, Folder


def _one_liners() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Reading the output", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^python -c .+$", section, flags=re.MULTILINE)


def test_readme_reader_one_liners_run_against_the_output(folder: Folder) -> None:
    # The demo config, which routes the samples into tables of their own.
    shutil.copy(ROOT / "config.toml", folder.config)
    for sample in SAMPLE_DATA.iterdir():
        shutil.copy(sample, folder.drop / sample.name)
    assert folder.ingest("once").returncode == 3

    lines = _one_liners()
    assert len(lines) == 3, "DuckDB, Polars and pandas"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in lines:
        args = shlex.split(line)
        args[0] = sys.executable
        result = subprocess.run(args, cwd=folder.root, capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        assert "sensor_" in result.stdout, f"{line}\n{result.stdout}"


def test_readme_documents_every_config_key() -> None:
    from ingest.config import Config

    text = (ROOT / "README.md").read_text()
    config = Config()
    for section in ("paths", "watch", "pipeline", "features", "output", "metrics"):
        assert f"[{section}]" in text
        for key in vars(getattr(config, section)):
            assert re.search(rf"^{key} = ", text, flags=re.MULTILINE), f"[{section}] {key}"
