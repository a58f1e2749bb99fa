"""kill -9 at every named point of the commit path, then restart: nothing lost, nothing twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.store.crashpoints import COMMIT_POINTS, COMPACT_POINTS

from ..conftest import Folder, write_csv
from ..invariants import check_exactly_once

BAD = "a,b\n1,2\n3,4,5\n"


def _populate(
    folder: Folder, start: int, count: int, bad: int = 0, rows: int = 5
) -> tuple[dict[str, int], set[str]]:
    expected = {}
    for i in range(start, start + count):
        name = f"f{i:04d}.csv"
        expected[name] = len(write_csv(folder.drop / name, rows=rows + i % 13, seed=i))
    bad_names = set()
    for i in range(start, start + bad):
        name = f"bad{i:04d}.csv"
        (folder.drop / name).write_text(BAD + f"# {i}\n")
        bad_names.add(name)
    return expected, bad_names


def _run(folder: Folder, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", "run", "--config", str(folder.config)],
        cwd=folder.root, env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _children_gone(pid: int, children: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"workers outlived the killed service {pid}: {alive}"


def _nothing_left_running_in(folder: Folder) -> None:
    """The forkserver and its workers carry the service's folder in their command line."""

    def leftovers() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if str(folder.root) in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        return found

    _, alive = psutil.wait_procs(leftovers(), timeout=15)
    assert not alive, f"processes outlived the killed service: {alive}"


def killed_at_then_restarted(folder: Folder, point: str) -> None:
    """`ingest run` kills itself with SIGKILL the second time it reaches `point` (at least
    one batch has committed by then); nothing of it is left running, and a restart
    finishes, exiting 0, or 3 if bad files were left to quarantine."""
    proc = _run(folder, {"INGEST_CRASH_AT": f"{point}:2"})
    try:
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        proc.kill()
    _nothing_left_running_in(folder)
    restarted = folder.ingest("once")
    assert restarted.returncode in (0, 3), restarted.stderr


@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_kill_9_at_each_commit_point_then_restart_is_exactly_once(
    folder: Folder, point: str
) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1}, pipeline={"workers": 2, "memory_mb": 2},
        output={"flush_s": 0.05, "target_file_mb": 1},
    )
    # About 3 MB of input in 1 MB tasks: several commits, each of many files.
    expected, bad = _populate(folder, 0, 300, bad=4, rows=100)
    # And one file over a quarter of memory_mb, read in blocks of 64 KB.
    expected["stream.csv"] = len(write_csv(folder.drop / "stream.csv", rows=60_000, seed=999))

    killed_at_then_restarted(folder, point)
    check_exactly_once(folder, expected, bad)
    assert not list(folder.drop.iterdir()), "every input archived or quarantined"


@pytest.mark.parametrize(
    ("rounds", "send"),
    [
        pytest.param(4, "auto", id="4-rounds"),
        pytest.param(4, "bytes", id="4-rounds-bytes"),  # files in shared memory at the kill
        pytest.param(20, "auto", id="20-rounds", marks=pytest.mark.slow),
    ],
)
def test_kill_9_at_random_moments_over_a_growing_drop_folder(
    folder: Folder, rounds: int, send: str
) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1}, pipeline={"workers": 2, "send": send},
        output={"flush_s": 0.1},
    )
    rng = random.Random(1234)
    expected: dict[str, int] = {}
    bad: set[str] = set()
    for round_ in range(rounds):
        good, worse = _populate(folder, round_ * 40, 40, bad=1 if round_ % 5 == 0 else 0)
        expected.update(good)
        # and a file large enough to reach its worker through shared memory (send = "bytes")
        big = folder.drop / f"big{round_:04d}.csv"
        expected[big.name] = len(write_csv(big, rows=40_000, seed=10_000 + round_))
        bad |= worse
        proc = _run(folder)
        time.sleep(rng.uniform(0.3, 2.0))
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _children_gone(proc.pid, children)

    final = folder.ingest("once")
    assert final.returncode in (0, 3), final.stderr
    check_exactly_once(folder, expected, bad)


@pytest.mark.parametrize("point", COMPACT_POINTS)
def test_kill_9_at_each_compaction_step_then_restart_is_exactly_once(
    folder: Folder, point: str
) -> None:
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 2}, output={"flush_s": 0},
    )
    expected: dict[str, int] = {}
    for batch in range(3):  # a run per batch: several parts per table
        good, _ = _populate(folder, batch * 10, 10)
        expected.update(good)
        assert folder.ingest("once").returncode == 0
    before = {t: len(folder.parts(t)) for t in ("records", "features")}
    assert min(before.values()) >= 3

    killed = subprocess.run(
        [sys.executable, "-m", "ingest", "compact", "--config", str(folder.config)],
        cwd=folder.root, env={**os.environ, "INGEST_CRASH_AT": point}, capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL
    # Before any repair, a reader sees every row once: the swap is all or nothing.
    counts = dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1"))
    assert counts == expected

    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, expected, set())
    _catalog_matches_the_files(folder)
    assert not list((folder.output / "_ingest").glob("swap-*"))

    again = folder.ingest("compact")
    assert again.returncode == 0, again.stderr
    check_exactly_once(folder, expected, set())
    _catalog_matches_the_files(folder)
    assert [len(folder.parts(t)) for t in ("records", "features")] == [1, 1]


def _catalog_matches_the_files(folder: Folder) -> None:
    from ingest.store.ledger import Ledger

    ledger = Ledger(folder.output / "_ingest" / "ledger.sqlite")
    try:
        on_disk = {p.relative_to(folder.output).as_posix()
                   for t in ("records", "features") for p in folder.parts(t)}
        assert ledger.committed_paths() == on_disk
        assert not ledger.swaps()
        for name in expected_names(folder):
            (sha,) = ledger._db.execute(
                "SELECT sha256 FROM files WHERE path = ?", (name,)).fetchone()
            held = ledger.parts_of(name, sha)
            assert {p.split("/")[0] for p in held} == {"records", "features"}, (name, held)
            assert set(held) <= on_disk
    finally:
        ledger.close()


def expected_names(folder: Folder) -> list[str]:
    return [name for (name,) in folder.query("SELECT DISTINCT source_file FROM records")]


@pytest.mark.parametrize("point", ["compact-swapped", "compact-committed", "compact-removed"])
def test_kill_9_in_a_widenings_rewrite_then_restart_records_the_parts_schema(
    folder: Folder, point: str
) -> None:
    """A wider column set rewrites the table's committed parts before the ledger records
    the new schema. Killed in between, the ledger no longer says its schemas were checked
    against the parts, so start-up compares them: a narrow file's part, which the ledger's
    old schema would take by its bytes, is fitted to the parts' wider one."""
    from ingest.store.ledger import Ledger

    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 2}, output={"flush_s": 0})
    write_csv(folder.drop / "narrow.csv", rows=20, seed=1, columns=2)
    assert folder.ingest("once").returncode == 0
    write_csv(folder.drop / "wide.csv", rows=30, seed=2, columns=4)
    killed = subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, env={**os.environ, "INGEST_CRASH_AT": point}, capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL
    ledger_path = folder.output / "_ingest" / "ledger.sqlite"
    ledger = Ledger(ledger_path, read_only=True)
    try:
        assert not ledger.schemas_checked()
    finally:
        ledger.close()

    (folder.drop / "wide.csv").unlink()  # never committed; its writer took it back
    write_csv(folder.drop / "narrow2.csv", rows=25, seed=3, columns=2)

    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, {"narrow.csv": 20, "narrow2.csv": 25}, set())
    assert folder.query("SELECT count(ch3) FROM records") == [(0,)]
    ledger = Ledger(ledger_path, read_only=True)
    try:
        assert ledger.schemas_checked()
        recorded = ledger.schemas()["records"][1]
    finally:
        ledger.close()
    for part in folder.parts("records"):
        assert pq.read_schema(part).remove_metadata().serialize().to_pybytes() == recorded


def test_a_rewrite_the_ledgers_mark_does_not_know_of_has_start_up_compare_the_schemas(
    folder: Folder,
) -> None:
    """As a widening by an older release leaves the output when killed between its rewrite
    and its record of the new schema: the parts wider than the ledger says, and the mark
    this release left saying they were compared. Start-up sees the table's parts renamed
    by the rewrite and compares them again."""
    from ingest.config import load
    from ingest.store.compact import rewrite_table
    from ingest.store.crashpoints import CrashPlan
    from ingest.store.layout import Layout
    from ingest.store.ledger import Ledger
    from ingest.widen import merge_schemas

    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 2}, output={"flush_s": 0})
    write_csv(folder.drop / "narrow.csv", rows=20, seed=1, columns=2)
    assert folder.ingest("once").returncode == 0
    ledger = Ledger(folder.output / "_ingest" / "ledger.sqlite")
    try:
        assert ledger.schemas_checked()
        narrow = pq.read_schema(folder.parts("records")[0]).remove_metadata()
        wide = merge_schemas(narrow, pa.schema([("ch2", pa.float64()), ("ch3", pa.float64())]))
        rewrite_table(
            ledger, Layout.of(load(folder.config)), "records", wide, CrashPlan(),
            target_bytes=128 << 20, compression="zstd", schema_version=2,
        )
    finally:
        ledger.close()
    write_csv(folder.drop / "narrow2.csv", rows=25, seed=3, columns=2)

    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, {"narrow.csv": 20, "narrow2.csv": 25}, set())
    assert folder.query("SELECT count(ch3) FROM records") == [(0,)]
