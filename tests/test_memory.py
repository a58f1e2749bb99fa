"""The malloc arena cap reaches every process of the service."""

from __future__ import annotations

import os
from collections.abc import Callable

import psutil

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
