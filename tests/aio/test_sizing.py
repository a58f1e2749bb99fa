"""A settled file is read whole, in blocks or not at all, by what it becomes in memory."""

from __future__ import annotations

import asyncio
import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.aio.sizing import BLOCKS, REFUSED, WHOLE, Plan, plan
from ingest.config import Config, parse
from ingest.files import DropFile

LIMIT = 4 << 20  # memory_mb = 4: read in blocks past 1 MB


def plan_for(path: Path, config: Config | None = None) -> Plan:
    config = config or parse({"pipeline": {"memory_mb": 4}})
    st = path.stat()
    file = DropFile(path, path.name, st.st_size, st.st_mtime_ns, time.time(), time.monotonic())
    return asyncio.run(plan(config, file, LIMIT), debug=True)


def test_a_gzipped_csv_is_charged_its_compressed_and_plain_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"x\n" + b"1\n" * 300_000))

    found = plan_for(path)

    assert found == Plan(WHOLE, path.stat().st_size + 600_002)


def test_a_gzipped_csv_that_expands_past_a_quarter_of_memory_mb_is_read_in_blocks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"x\n" + b"1\n" * (1 << 20)))
    assert path.stat().st_size < 16 << 10

    assert plan_for(path).how == BLOCKS


def test_a_gzipped_csv_past_memory_mb_that_cannot_be_streamed_is_refused_saying_why(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"x\n" + b"1\n" * (3 << 20)))
    windows = parse({"pipeline": {"memory_mb": 4}, "features": {"window": 100}})

    found = plan_for(path, windows)

    assert found.how == REFUSED
    assert "once decompressed" in found.reason and "memory_mb = 4" in found.reason
    assert "windows" in found.reason


def test_an_npz_that_expands_past_memory_mb_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, x=np.zeros(1 << 20))

    found = plan_for(path)

    assert found.how == REFUSED
    assert f"{path.stat().st_size} bytes on disk" in found.reason
    assert "read in blocks" in found.reason


def test_a_plain_csv_is_charged_its_size_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"x\n1\n")

    assert plan_for(path) == Plan(WHOLE, 4)


def test_a_compressed_file_gone_before_it_is_measured_is_an_os_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.npz"
    np.savez(path, x=np.zeros(3))
    config = parse({"pipeline": {"memory_mb": 4}})
    file = DropFile(path, path.name, 100, 1, time.time(), time.monotonic())
    path.unlink()

    with pytest.raises(FileNotFoundError):
        asyncio.run(plan(config, file, LIMIT))
