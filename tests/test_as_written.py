"""A CSV whose task left before another task's file made a column text is read again
at commit, its values as written, and committed once: as a later run would read it."""

from __future__ import annotations

import re

import pytest

from .conftest import Folder
from .invariants import check_exactly_once

ROWS = 100_000


def _latency(log: str, line: str) -> float:
    found = re.search(rf"{re.escape(line)} latency_ms=([0-9.]+)", log)
    assert found, log
    return float(found[1])


@pytest.mark.parametrize("memory_mb", [1024, 8], ids=["whole", "in-blocks"])
def test_a_csv_of_another_task_is_read_again_with_its_values_as_written(
    folder: Folder, memory_mb: int
) -> None:
    """`in-blocks`: the large file, over a quarter of memory_mb, is read in blocks, and
    read so again."""
    folder.write_config(
        watch={"settle_ms": 50}, pipeline={"workers": 2, "memory_mb": memory_mb},
        output={"flush_s": 0},
    )
    # Two files, two workers: a task each. The small one's part is committed first and
    # makes `t` and `v` text; the large one's task, read against the table before that,
    # holds them as times and numbers.
    (folder.drop / "a.csv").write_bytes(b"id,t,v\n0,x,abc\n")
    body = b"".join(b"%d,2024-01-01T10:00:%02d,1.10\n" % (i + 1, i % 60) for i in range(ROWS))
    (folder.drop / "b.csv").write_bytes(b"id,t,v\n" + body)

    done = folder.ingest("once")

    assert done.returncode == 0, done.stderr
    assert "reread b.csv" in done.stderr, done.stderr
    assert "ingested 2 files" in done.stderr
    assert ("b.csv: 3.1 MB, over a quarter of memory_mb" in done.stderr) == (memory_mb == 8)
    # The same version read again: its latency runs from when it was first seen.
    assert _latency(done.stderr, "ingested b.csv") > _latency(done.stderr, "reread b.csv")
    check_exactly_once(folder, {"a.csv": 1, "b.csv": ROWS}, set())
    assert folder.query(
        "SELECT count(DISTINCT t), min(t), max(t), min(v), max(v), count(_rescued_data)"
        " FROM records WHERE source_file = 'b.csv'"
    ) == [(60, "2024-01-01T10:00:00", "2024-01-01T10:00:59", "1.10", "1.10", 0)]
    assert folder.query(
        "SELECT DISTINCT source_column FROM features WHERE source_file = 'b.csv'"
    ) == [("id",)]
