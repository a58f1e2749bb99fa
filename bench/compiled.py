"""Byte-compile the code under test before it is timed, as installing a wheel does.

An editable install leaves `ingest` as sources; where Python may not write its
bytecode cache (PYTHONDONTWRITEBYTECODE, a read-only checkout), every process
of every run would compile each module again, about 50 ms of CPU in the
service's process and as much in its forkserver. Installed from a wheel, pip
has compiled them once. Called in the parent process.
"""

from __future__ import annotations

import compileall
from pathlib import Path


def byte_compile(*folders: Path) -> None:
    for folder in folders:
        compileall.compile_dir(folder, quiet=1)
