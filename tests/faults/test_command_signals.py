"""SIGINT and SIGTERM to the commands other than the service: status, explain, ledger
rebuild and compact stop when asked, and leave the output as exactly once as they found it."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import ROOT, Folder, fifo_writer, write_csv
from ..store.seed import seed_parts


def _start(folder: Folder, *args: str, config: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", *args, "--config", str(config or folder.config)],
        cwd=folder.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", [("status",), ("explain", "a.csv"), ("ledger", "rebuild")])
def test_a_reading_command_stops_on_a_signal(
    folder: Folder, command: tuple[str, ...], sig: signal.Signals
) -> None:
    folder.write_config(watch={"settle_ms": 0, "on_success": "keep"})
    write_csv(folder.drop / "a.csv", 10, 1)
    assert folder.ingest("once").returncode == 0
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    before = ledger.read_bytes()
    # The config comes through a FIFO (as from `--config <(...)`): the command waits
    # in its read for as long as the test likes.
    fifo = folder.root / "config.fifo"
    os.mkfifo(fifo)
    proc = _start(folder, *command, config=fifo)
    writer = fifo_writer(fifo, proc)
    try:
        proc.send_signal(sig)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:  # it held the signal: let it finish, and fail
            os.write(writer, folder.config.read_bytes())
            os.close(writer)
            writer = -1
            code = proc.wait(60)
        _, err = proc.communicate()
    finally:
        if writer >= 0:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 128 + sig, err
    assert err.strip().splitlines()[-1] == f"ingest: stopped by {sig.name}", err
    assert "Traceback" not in err
    assert ledger.read_bytes() == before
    assert not list(ledger.parent.glob("ledger.sqlite.*")), "a rebuild left its files"


def test_a_ledger_rebuild_killed_at_any_moment_leaves_the_output_whole(folder: Folder) -> None:
    """The inputs are gone (archived): a ledger that knew only some of the parts would have
    the next run set the others aside as unknown, and their rows leave the tables."""
    expected = seed_parts(folder, 600, 5)
    started = time.monotonic()
    assert folder.ingest("ledger", "rebuild").returncode == 0
    whole = time.monotonic() - started
    rng = random.Random(11)
    for round_ in range(4):
        proc = _start(folder, "ledger", "rebuild")
        time.sleep(whole * rng.uniform(0.4, 0.95))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert proc.returncode in (-signal.SIGKILL, 0), f"round {round_}: {proc.returncode}"
    again = folder.ingest("once")
    assert again.returncode == 0, again.stderr
    assert "unknown parts moved" not in again.stderr, again.stderr
    assert folder.rows_per_file() == expected
    status = folder.ingest("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["counts"]["ingested"] == len(expected)


def test_a_ledger_rebuild_stopped_half_way_leaves_the_old_ledger_and_nothing_of_its_own(
    folder: Folder,
) -> None:
    seed_parts(folder, 600, 5)
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    before = ledger.read_bytes()
    proc = _start(folder, "ledger", "rebuild")
    building = ledger.with_name("ledger.sqlite.rebuilding")
    deadline = time.monotonic() + 60
    while not building.exists():  # the new ledger is being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert err.strip().splitlines()[-1] == "ingest: stopped by SIGINT", err
    assert ledger.read_bytes() == before
    assert sorted(p.name for p in ledger.parent.glob("ledger.sqlite*")) == ["ledger.sqlite"]


def _left_in_the_log(ledger: Path) -> None:
    """A commit left in the ledger's write-ahead log, as a writer killed with kill -9
    leaves it: a table `marker` the file alone does not have."""
    code = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        "db.execute('CREATE TABLE marker (x)')\n"
        "db.execute('INSERT INTO marker VALUES (1)')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(ledger)], check=True)
    assert Path(f"{ledger}-wal").stat().st_size > 0


def _tables(ledger: Path) -> set[str]:
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master")}


@pytest.mark.parametrize("moved", [False, True], ids=["in-place", "file-moved-aside-alone"])
def test_a_ledger_rebuilt_over_a_write_ahead_log_is_whole_and_the_old_one_is_kept_whole(
    folder: Folder, moved: bool
) -> None:
    """`moved`: the ledger's file was moved aside by hand, its log left where it was."""
    expected = seed_parts(folder, 20, 5)
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    _left_in_the_log(ledger)
    if moved:
        os.rename(ledger, ledger.with_name("by-hand.sqlite"))

    rebuilt = folder.ingest("ledger", "rebuild")

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "marker" not in _tables(ledger), "the old log was read into the new ledger"
    if not moved:
        [kept] = ledger.parent.glob("ledger.sqlite.before-rebuild-*[0-9]")
        assert "marker" in _tables(kept), "the kept ledger lost its log's commits"
    again = folder.ingest("once")
    assert again.returncode == 0, again.stderr
    assert folder.rows_per_file() == expected
    assert json.loads(folder.ingest("status", "--json").stdout)["counts"]["ingested"] == 20


# Enough that a signal sent at the first partition's log line finds the command in its
# loop: some 3 s of compaction on a loaded 2-core machine.
PARTITIONS = 100


def _many_partitions(folder: Folder, tables: int) -> dict[str, dict[str, int]]:
    """`tables` tables of three small parts each: a partition each to compact."""
    return {f"t{t:02d}": seed_parts(folder, 3, 20, table=f"t{t:02d}", start=t * 3)
            for t in range(tables)}


def _compacted(text: str) -> int:
    return sum(1 for line in text.splitlines() if "compacted t" in line)


def _compacting(folder: Folder) -> tuple[subprocess.Popen[str], str]:
    """`ingest compact` started, once it has compacted a first partition; and its log so far."""
    proc = _start(folder, "compact")
    assert proc.stderr is not None
    seen = ""
    while not _compacted(seen):
        line = proc.stderr.readline()
        assert line, f"it ended before a first partition was compacted: {seen}"
        seen += line
    return proc, seen


def _rest_of_stderr(proc: subprocess.Popen[str]) -> str:
    """What the command writes to stderr till it exits, read through the file object that
    `_compacting` read its first lines with: `communicate()` reads the pipe itself, and
    misses the lines that object read ahead (a partition or more compacted, untold)."""
    assert proc.stderr is not None
    rest = proc.stderr.read()
    proc.communicate(timeout=60)
    return rest


def _check_rows(folder: Folder, expected: dict[str, dict[str, int]]) -> None:
    for table, rows in expected.items():
        assert folder.rows_per_file(table) == rows, table


def _compact_again(folder: Folder, expected: dict[str, dict[str, int]]) -> str:
    """The next `ingest compact` finishes the job: every row once, one part a partition."""
    again = folder.ingest("compact")
    assert again.returncode == 0, again.stderr
    _check_rows(folder, expected)
    for table in expected:
        assert len(folder.parts(table)) == 1, table
    return again.stderr


def test_compact_stops_after_the_partition_under_way_and_a_second_run_finishes(
    folder: Folder,
) -> None:
    expected = _many_partitions(folder, PARTITIONS)
    proc, seen = _compacting(folder)
    proc.send_signal(signal.SIGTERM)
    err = seen + _rest_of_stderr(proc)
    assert proc.returncode == 0, err
    assert "stopped by a signal after" in err and "wait for the next `ingest compact`" in err, err
    first = _compacted(err)
    assert 1 <= first < PARTITIONS, err
    _check_rows(folder, expected)
    assert first + _compacted(_compact_again(folder, expected)) == PARTITIONS


def test_a_second_signal_ends_compact_at_once_and_the_next_command_repairs(
    folder: Folder,
) -> None:
    expected = _many_partitions(folder, PARTITIONS)
    proc, _ = _compacting(folder)
    # Stopped, it gets both signals at once on waking, wherever it was; which of the two
    # its handlers see first depends on the threads the kernel gives them to.
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    err = _rest_of_stderr(proc)
    assert proc.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM), err
    second = signal.Signals(proc.returncode - 128).name
    assert f"a second signal ({second}): exiting now" in err, err
    _compact_again(folder, expected)


def test_two_signals_that_land_in_one_partitions_write_end_compact_at_once(
    folder: Folder,
) -> None:
    # Python runs a signal's handler between bytecodes: two that landed during one long
    # call into C (a large partition's Parquet write) ran it once, and the command went on
    # to stop after the partition and exit 0, the second signal lost.
    expected = {f"t{t}": seed_parts(folder, 3, 1_000_000, table=f"t{t}", start=t * 3)
                for t in range(3)}
    proc, _ = _compacting(folder)
    time.sleep(0.2)  # into the next partition's merge
    proc.send_signal(signal.SIGTERM)
    _delivered(proc.pid, signal.SIGTERM)  # else the kernel would merge the second into it
    proc.send_signal(signal.SIGTERM)
    err = _rest_of_stderr(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "a second signal (SIGTERM): exiting now" in err, err
    _compact_again(folder, expected)


def _delivered(pid: int, sig: signal.Signals) -> None:
    """Wait until `sig`, sent to the process, is no longer pending: a thread of it took it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        pending = int(next(
            line.split()[1] for line in status.splitlines() if line.startswith("ShdPnd:")
        ), 16)
        if not pending & (1 << (sig - 1)):
            return
        time.sleep(0.0005)
    raise AssertionError(f"{sig.name} still pending after 10 s")


# Run as `python -m ingest`, with a SIGINT sent to itself as the command line's modules
# load (when `ingest.config` is first looked for): a time no signal sent from outside
# can be sure to hit.
_INTERRUPTED_AT_IMPORT = """
import os, runpy, signal, sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "ingest.config":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = ["ingest", "status"]
runpy.run_module("ingest", run_name="__main__", alter_sys=True)
"""


def test_a_sigint_while_the_command_line_loads_exits_130_without_a_traceback(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_AT_IMPORT], cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 128 + signal.SIGINT, result.stderr
