"""The malloc arena cap reaches every process of the service."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from ingest import memory

from .conftest import Folder, Service, wait_for


def test_the_service_and_every_worker_run_with_the_arena_cap(
    folder: Folder, service: Callable[..., Service]
) -> None:
    env_before = os.environ.pop("MALLOC_ARENA_MAX", None)
    try:
        svc = service()
        svc.wait_ready()
        main = psutil.Process(svc.proc.pid)
        wait_for(lambda: len(main.children(recursive=True)) >= 3, 30, "forkserver and 2 workers")
        children = main.children(recursive=True)
        for proc in children:
            assert proc.environ().get("MALLOC_ARENA_MAX") == str(memory.ARENAS), proc.cmdline()
        assert svc.stop() == 0
    finally:
        if env_before is not None:
            os.environ["MALLOC_ARENA_MAX"] = env_before


@pytest.mark.parametrize("arenas", ["", "abc", "99999999999999999999", "-1"])
def test_an_arena_cap_in_the_environment_that_is_no_count_is_passed_over(
    tmp_path: Path, arenas: str
) -> None:
    # It was read as an int before anything else: a traceback for every command.
    result = subprocess.run(
        [sys.executable, "-m", "ingest", "status", "--output", str(tmp_path / "out"),
         "--drop", str(tmp_path / "drop")],
        env={**os.environ, "MALLOC_ARENA_MAX": arenas}, capture_output=True, text=True,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0 and "ingested:    0" in result.stdout, result.stderr
