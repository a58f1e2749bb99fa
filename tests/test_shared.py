"""Large inputs reach local workers through shared memory, and no segment outlives its file.

A file sent whole goes through shared memory with `send = "bytes"`; by default the local
pool's workers read such files themselves (`send = "auto"`), and only a streamed file's
blocks take shared memory.
"""

from __future__ import annotations

import os
import subprocess
import threading
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np
import pyarrow.csv as pa_csv
import pytest

from ingest import shared

from .conftest import FAST, Folder, write_csv
from .test_stream import big_csv

pytestmark = pytest.mark.skipif(not shared.SHM_DIR.is_dir(), reason="no /dev/shm")


def segments_of(output: Path) -> list[Path]:
    return sorted(shared.SHM_DIR.glob(shared.prefix_for(output) + "*"))


def once_watching_segments(folder: Folder) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`ingest once`, and the names of the segments seen while it ran: a segment lives
    from its file's read until its file's result is final."""
    seen: set[str] = set()
    done = threading.Event()

    def watch_segments() -> None:
        while not done.is_set():
            seen.update(p.name for p in segments_of(folder.output))
            done.wait(0.002)

    watcher = threading.Thread(target=watch_segments)
    watcher.start()
    try:
        result = folder.ingest("once")
    finally:
        done.set()
        watcher.join()
    return result, seen


def test_a_segment_carries_the_bytes_to_a_reader_by_name(tmp_path: Path) -> None:
    prefix = shared.prefix_for(tmp_path)
    data = os.urandom(3 * shared.SHARED_MIN_BYTES // 2)
    segment = shared.create(prefix, len(data))
    assert segment is not None and segment.name.startswith(prefix)
    try:
        shared.view(segment)[:] = data
        assert shared.take(segment.name) == data
    finally:
        shared.remove(segment)
    assert segments_of(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        SharedMemory(name=segment.name)


def test_no_segment_when_shared_memory_cannot_hold_the_file(tmp_path: Path) -> None:
    stats = os.statvfs(shared.SHM_DIR)
    too_big = stats.f_blocks * stats.f_frsize + (1 << 30)
    assert shared.create(shared.prefix_for(tmp_path), too_big) is None
    assert segments_of(tmp_path) == []


def test_sweep_removes_only_the_segments_of_its_own_output_folder(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    left = [shared.create(shared.prefix_for(mine), 10) for _ in range(2)]
    other = shared.create(shared.prefix_for(theirs), 10)
    assert all(left) and other is not None
    try:
        assert shared.sweep(shared.prefix_for(mine)) == 2
        assert segments_of(mine) == [] and len(segments_of(theirs)) == 1
    finally:
        for segment in [*left, other]:
            assert segment is not None
            shared.remove(segment)


def test_large_files_are_ingested_through_shared_memory_exactly_once(folder: Folder) -> None:
    """Two copies of a large file, another large one and a small one: every row once,
    the copy a duplicate, and no segment left once `ingest once` has exited."""
    folder.write_config(**{**FAST, "pipeline": {"workers": 2, "send": "bytes"}})
    big = write_csv(folder.drop / "big.csv", rows=40_000, seed=1)
    assert (folder.drop / "big.csv").stat().st_size >= shared.SHARED_MIN_BYTES
    (folder.drop / "big_copy.csv").write_bytes((folder.drop / "big.csv").read_bytes())
    other = write_csv(folder.drop / "other.csv", rows=35_000, seed=2)
    small = write_csv(folder.drop / "small.csv", rows=10, seed=3)
    # A segment a killed run left behind, registered with no tracker: start-up removes it.
    stale = SharedMemory(shared.prefix_for(folder.output) + "stale", create=True, size=10)
    resource_tracker.unregister(stale._name, "shared_memory")  # type: ignore[attr-defined]
    stale.close()

    result, seen = once_watching_segments(folder)
    seen = {name for name in seen if "stale" not in name}

    assert result.returncode == 0, result.stderr
    assert len(seen) >= 2, "the two large files were read into shared memory"
    assert "1 shared memory segments of a stopped run removed" in result.stderr
    rows = dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1"))
    (first,) = {"big.csv", "big_copy.csv"} & set(rows)  # whichever was read first
    assert rows == {first: len(big), "other.csv": len(other), "small.csv": len(small)}
    (total,) = folder.query(f"SELECT sum(ch0) FROM records WHERE source_file = '{first}'")[0]
    assert total == pytest.approx(float(np.nansum(big[:, 0])))
    assert "duplicate" in result.stderr
    assert segments_of(folder.output) == []


def test_by_default_local_workers_read_whole_files_themselves(folder: Folder) -> None:
    """`send = "auto"` with the local pool: a large file, its copy and a small file are
    read by their workers, not put in shared memory; every row once, the copy a duplicate."""
    big = write_csv(folder.drop / "big.csv", rows=40_000, seed=1)
    assert (folder.drop / "big.csv").stat().st_size >= shared.SHARED_MIN_BYTES
    (folder.drop / "big_copy.csv").write_bytes((folder.drop / "big.csv").read_bytes())
    small = write_csv(folder.drop / "small.csv", rows=10, seed=3)

    result, seen = once_watching_segments(folder)

    assert result.returncode == 0, result.stderr
    assert seen == set()
    rows = dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1"))
    (first,) = {"big.csv", "big_copy.csv"} & set(rows)
    assert rows == {first: len(big), "small.csv": len(small)}
    assert "duplicate" in result.stderr


def test_small_files_read_together_share_a_segment_and_each_gets_its_own_bytes(
    folder: Folder,
) -> None:
    """Files under the group size, a megabyte and more of them, read into one segment per
    group: each file's rows are its own, a copy among them is a duplicate, an empty file
    is quarantined on its own, and no segment is left once `ingest once` has exited."""
    folder.write_config(pipeline={"workers": 2, "send": "bytes"}, watch={"settle_ms": 0})
    expected = {}
    for i in range(24):
        expected[f"f{i:02d}.csv"] = write_csv(folder.drop / f"f{i:02d}.csv", rows=1_600, seed=i)
    assert sum(p.stat().st_size for p in folder.drop.iterdir()) >= shared.SHARED_MIN_BYTES
    assert max(p.stat().st_size for p in folder.drop.iterdir()) < 256 * 1024
    (folder.drop / "copy.csv").write_bytes((folder.drop / "f03.csv").read_bytes())
    (folder.drop / "empty.csv").write_bytes(b"")

    result, seen = once_watching_segments(folder)

    assert result.returncode == 3, result.stderr  # the empty file
    assert seen, "the group was read into shared memory"
    sums = dict(folder.query("SELECT source_file, sum(ch1) FROM records GROUP BY 1"))
    (kept,) = {"f03.csv", "copy.csv"} & set(sums)  # whichever was committed first
    assert len(sums) == len(expected)
    for name, values in expected.items():
        source = kept if name == "f03.csv" else name
        assert sums[source] == pytest.approx(float(np.nansum(values[:, 1])))
    assert (folder.quarantine / "empty.csv").exists()
    assert "duplicate" in result.stderr
    assert segments_of(folder.output) == []


def test_files_under_a_megabyte_are_read_as_a_group_into_one_segment(folder: Folder) -> None:
    """Files of a few hundred KB, too small for a segment each, are read together: their
    bytes reach the workers through shared memory, not through the pool's pipe."""
    folder.write_config(pipeline={"workers": 2, "send": "bytes"}, watch={"settle_ms": 0})
    expected = {
        f"m{i}.csv": write_csv(folder.drop / f"m{i}.csv", rows=12_000, seed=i) for i in range(6)
    }
    sizes = [p.stat().st_size for p in folder.drop.iterdir()]
    assert min(sizes) > 256 * 1024 and max(sizes) < shared.SHARED_MIN_BYTES

    result, seen = once_watching_segments(folder)

    assert result.returncode == 0, result.stderr
    assert seen, "the files were read into shared memory, together"
    sums = dict(folder.query("SELECT source_file, sum(ch1) FROM records GROUP BY 1"))
    assert sums.keys() == expected.keys()
    for name, values in expected.items():
        assert sums[name] == pytest.approx(float(np.nansum(values[:, 1])))
    assert segments_of(folder.output) == []


def test_the_blocks_of_a_streamed_file_reach_local_workers_in_shared_memory(
    folder: Folder,
) -> None:
    folder.write_config(pipeline={"workers": 2, "memory_mb": 1}, watch={"settle_ms": 0})
    big_csv(folder.drop / "big.csv", 40_000)
    whole = pa_csv.read_csv(folder.drop / "big.csv")

    result, seen = once_watching_segments(folder)

    assert result.returncode == 0, result.stderr
    assert "reading it in blocks" in result.stderr
    assert seen, "its blocks went through shared memory"
    (rows,) = folder.query("SELECT count(*) FROM records")[0]
    assert rows == whole.num_rows
    assert segments_of(folder.output) == [], "kept segments are removed at exit"
