"""What `ingest once` prints on a terminal: the bar, the warnings and the summary, not a line
per file. Elsewhere (a pipe, a log file, JSON, DEBUG) every file keeps its line."""

from __future__ import annotations

import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable

import pytest

from .conftest import ROOT, Folder, write_csv
from .plugin_sets import SLOW_MARK
from .store.seed import seed_parts

FILES = 30
PER_FILE = re.compile(r"INFO\s+ingested f\d+\.csv")


def _populate(folder: Folder) -> None:
    for i in range(FILES):
        write_csv(folder.drop / f"f{i}.csv", rows=10, seed=i)
    (folder.drop / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")


def _start_on_a_terminal(folder: Folder, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """`ingest <args>` with stdout and stderr on a pseudo-terminal; the terminal's other end."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", *args, "--config", str(folder.config)],
        cwd=folder.root, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", "TERM": "xterm"},
    )
    os.close(follower)
    return proc, leader


def _shown_to_the_end(proc: subprocess.Popen[bytes], leader: int) -> tuple[int, str]:
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    code = proc.wait(60)
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


def _on_a_terminal(folder: Folder, *args: str) -> tuple[int, str]:
    """Run `ingest <args>` (`once`, if none) on a pseudo-terminal; return what it showed."""
    return _shown_to_the_end(*_start_on_a_terminal(folder, *(args or ("once",))))


def test_on_a_terminal_once_shows_the_bar_warnings_and_summary_not_a_line_per_file(
    folder: Folder,
) -> None:
    _populate(folder)

    code, shown = _on_a_terminal(folder)

    assert code == 3, shown
    assert "━" in shown, "rich draws its bar on a terminal"
    assert f"{FILES + 1}/{FILES + 1}" in shown, "the bar counts every file"
    assert not PER_FILE.search(shown), shown
    assert re.search(r"WARNING quarantined bad\.csv .*reason=", shown), shown
    assert f"ingested {FILES} files" in shown


@pytest.mark.parametrize("args", [("--log-format", "json"), ("--log-level", "DEBUG")])
def test_on_a_terminal_json_and_debug_keep_a_line_per_file(
    folder: Folder, args: tuple[str, ...]
) -> None:
    _populate(folder)

    code, shown = _on_a_terminal(folder, "once", *args)

    assert code == 3, shown
    if args[1] == "json":
        assert shown.count('"event": "ingested"') == FILES, shown
    else:
        assert len(PER_FILE.findall(shown)) == FILES, shown


def test_off_a_terminal_every_file_has_its_line_and_there_is_no_bar(folder: Folder) -> None:
    _populate(folder)

    result = folder.ingest("once")

    assert result.returncode == 3, result.stderr
    assert len(PER_FILE.findall(result.stderr)) == FILES
    assert "━" not in result.stderr


def test_on_a_terminal_a_ledger_rebuild_counts_the_parts_it_reads(folder: Folder) -> None:
    for batch in range(3):  # a commit or more each
        for i in range(5):
            write_csv(folder.drop / f"b{batch}_{i}.csv", rows=10, seed=batch * 10 + i)
        assert folder.ingest("once").returncode == 0
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        commits = db.execute("SELECT count(*) FROM parts").fetchone()[0]
    assert commits >= 3
    files = len(list(folder.output.glob("*/ingest_date=*/part-*.parquet")))

    code, shown = _on_a_terminal(folder, "ledger", "rebuild")

    assert code == 0, shown
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "━" in plain, shown
    assert f"{commits}/{commits} commits" in plain, shown
    assert f"rebuilt the ledger: {commits} commits, {files} part files" in plain, shown


def _signalled_twice(
    proc: subprocess.Popen[bytes], leader: int, ready: Callable[[bytes], bool]
) -> tuple[int, str]:
    """Once what the terminal shows is `ready`, SIGINT and SIGTERM, delivered together;
    the exit code and all that was shown."""
    shown = b""
    while not ready(shown):
        chunk = os.read(leader, 65536)
        assert chunk, shown
        shown += chunk
    for sig in (signal.SIGSTOP, signal.SIGINT, signal.SIGTERM, signal.SIGCONT):
        proc.send_signal(sig)  # both at once on waking: the second exits at once
    code, rest = _shown_to_the_end(proc, leader)
    return code, shown.decode(errors="replace") + rest


def test_on_a_terminal_compact_ended_by_a_second_signal_shows_the_cursor_again(
    folder: Folder,
) -> None:
    """The bar hides the cursor while it runs; an exit at once must not leave it hidden."""
    for t in range(60):
        seed_parts(folder, 3, 20, table=f"t{t:02d}", start=t * 3)
    proc, leader = _start_on_a_terminal(folder, "compact")

    code, text = _signalled_twice(proc, leader, lambda shown: b"compacted t" in shown)

    assert code in (128 + signal.SIGINT, 128 + signal.SIGTERM), text  # either may come second
    assert "\x1b[?25l" in text, "rich hides the cursor while its bar is live"
    assert text.rfind("\x1b[?25h") > text.rfind("\x1b[?25l"), text


def test_on_a_terminal_once_ended_by_a_second_signal_shows_the_cursor_again(
    folder: Folder, monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy = folder.root / "busy"
    monkeypatch.setenv(SLOW_MARK, str(busy))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # for the feature set of the tests
    folder.write_config(
        watch={"settle_ms": 0}, features={"sets": ["summary", "tests.plugin_sets:slow"]},
    )
    for i in range(100):
        write_csv(folder.drop / f"f{i:03d}.csv", rows=10, seed=i)
    proc, leader = _start_on_a_terminal(folder, "once")

    code, text = _signalled_twice(  # the bar drawn, a worker busy
        proc, leader, lambda shown: b"\x1b[?25l" in shown and busy.exists()
    )

    assert code in (128 + signal.SIGINT, 128 + signal.SIGTERM), text
    assert "exiting now" in text
    assert text.rfind("\x1b[?25h") > text.rfind("\x1b[?25l"), text


def test_on_a_terminal_a_file_gone_before_it_settles_is_counted_by_the_bar(
    folder: Folder,
) -> None:
    folder.write_config(watch={"settle_ms": 3000})
    for seed, name in enumerate(("a.csv", "b.csv", "gone.csv")):
        write_csv(folder.drop / name, rows=10, seed=seed)
    proc, leader = _start_on_a_terminal(folder, "once")
    shown = b""
    while b"0/3" not in shown:  # the bar drawn over the three files found at start-up
        chunk = os.read(leader, 65536)
        assert chunk, shown
        shown += chunk
    (folder.drop / "gone.csv").unlink()  # while it settles
    code, rest = _shown_to_the_end(proc, leader)
    text = shown.decode(errors="replace") + rest

    assert code == 0, text
    assert "WARNING vanished gone.csv" in text
    assert "3/3" in text, text
    assert "ingested=2 vanished=1" in text, text
