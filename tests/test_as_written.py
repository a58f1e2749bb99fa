"""A CSV whose task left before another task's file made a column text is read again
at commit, its values as written, and committed once: as a later run would read it."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable

import pytest

from .conftest import Folder, Service, drop_by_rename, wait_for
from .invariants import check_exactly_once
from .plugin_sets import WAIT_MARK

ROWS = 100_000


def _typed(rows: int) -> bytes:
    body = b"".join(b"%d,2024-01-01T10:00:%02d,1.10\n" % (i + 1, i % 60) for i in range(rows))
    return b"id,t,v\n" + body


def _latency(log: str, line: str) -> float:
    found = re.search(rf"{re.escape(line)} latency_ms=([0-9.]+)", log)
    assert found, log
    return float(found[1])


def _second_task_waits_for(folder: Folder, monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    # Two files, two workers: a task each. The large one's task, which holds the value
    # `wait_on_sentinel` waits at, is held until the small one is committed and archived
    # (gone from the drop folder), as it would usually be anyway, but not always on a busy
    # machine.
    folder.write_config(
        watch={"settle_ms": 50, "patterns": ["*.csv", "*.jsonl", "*.jsonl.gz"]},
        pipeline={"workers": 2}, output={"flush_s": 0},
        features={"sets": ["summary", "tests.plugin_sets:wait_on_sentinel"]},
    )
    monkeypatch.setenv(WAIT_MARK, str(folder.drop / first))


def test_a_csv_of_another_task_is_read_again_with_its_values_as_written(
    folder: Folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The small file's part makes `t` and `v` text; the large one's task, read against
    # the table before that, holds them as times and numbers.
    _second_task_waits_for(folder, monkeypatch, "a.csv")
    (folder.drop / "a.csv").write_bytes(b"id,t,v\n0,x,abc\n")
    (folder.drop / "b.csv").write_bytes(_typed(ROWS))

    done = folder.ingest("once")

    assert done.returncode == 0, done.stderr
    assert "reread b.csv" in done.stderr, done.stderr
    assert "ingested 2 files" in done.stderr
    # The same version read again: its latency runs from when it was first seen.
    assert _latency(done.stderr, "ingested b.csv") > _latency(done.stderr, "reread b.csv")
    check_exactly_once(folder, {"a.csv": 1, "b.csv": ROWS}, set())
    _check_as_written(folder)


@pytest.mark.parametrize("name", ["b.jsonl", "b.jsonl.gz"])
def test_a_json_lines_file_of_another_task_is_read_again_with_its_times_as_written(
    folder: Folder, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _second_task_waits_for(folder, monkeypatch, "a.jsonl")
    (folder.drop / "a.jsonl").write_bytes(b'{"id": 0, "t": "x"}\n')
    lines = b"".join(
        b'{"id": %d, "t": "2024-01-01T10:00:%02d+05:00"}\n' % (i + 1, i % 60)
        for i in range(ROWS)
    )
    (folder.drop / name).write_bytes(gzip.compress(lines) if name.endswith(".gz") else lines)

    done = folder.ingest("once")

    assert done.returncode == 0, done.stderr
    assert f"reread {name}" in done.stderr, done.stderr
    check_exactly_once(folder, {"a.jsonl": 1, name: ROWS}, set())
    assert folder.query(
        "SELECT count(DISTINCT t), min(t), max(t), count(_rescued_data)"
        f" FROM records WHERE source_file = '{name}'"
    ) == [(60, "2024-01-01T10:00:00+05:00", "2024-01-01T10:00:59+05:00", 0)]


def _check_as_written(folder: Folder) -> None:
    assert folder.query(
        "SELECT count(DISTINCT t), min(t), max(t), min(v), max(v), count(_rescued_data)"
        " FROM records WHERE source_file = 'b.csv'"
    ) == [(60, "2024-01-01T10:00:00", "2024-01-01T10:00:59", "1.10", "1.10", 0)]
    assert folder.query(
        "SELECT DISTINCT source_column FROM features WHERE source_file = 'b.csv'"
    ) == [("id",)]


def test_a_csv_read_in_blocks_is_read_again_so_with_its_values_as_written(
    folder: Folder, service: Callable[..., Service]
) -> None:
    # Over a quarter of memory_mb, b.csv is read in blocks, against the table as it was
    # when its first block was read; a.csv, dropped then, is committed first.
    folder.write_config(
        watch={"settle_ms": 50}, pipeline={"workers": 2, "memory_mb": 8},
        output={"flush_s": 0},
    )
    rows = 2 * ROWS
    svc = service()
    svc.wait_ready()
    drop_by_rename(folder, "b.csv", _typed(rows))
    wait_for(lambda: "b.csv: 6.3 MB, over a quarter of memory_mb" in svc.text(), 30, "blocks")
    drop_by_rename(folder, "a.csv", b"id,t,v\n0,x,abc\n")
    wait_for(lambda: folder.rows_per_file() == {"a.csv": 1, "b.csv": rows}, 60, "both files")
    assert svc.stop() == 0
    assert "reread b.csv" in svc.text(), svc.text()
    check_exactly_once(folder, {"a.csv": 1, "b.csv": rows}, set())
    _check_as_written(folder)
