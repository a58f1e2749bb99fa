"""Logging never stalls the service: a reader that does not drain stderr cannot block the loop."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from ingest import logs

from .conftest import Folder, full_pipe, stderr_stuck, wait_for, write_csv


def _committed(folder: Folder) -> int:
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_stderr_pipe_nobody_reads_does_not_stop_ingestion(folder: Folder) -> None:
    # 1,000 outcome lines are far more than a 64 KiB pipe holds.
    for i in range(1000):
        write_csv(folder.drop / f"f{i:04d}.csv", rows=3, seed=i)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: _committed(folder) == 1000, 120, "every file to be committed")
    finally:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0
    # Every outcome line written, none twice: "<time> INFO    ingested f0042.csv ...".
    named = re.findall(rb"^\S+ INFO +ingested (f\d{4}\.csv) ", stderr, re.MULTILINE)
    assert len(named) == len(set(named)) == 1000
    assert b"ingested 1000 files" in stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_files_logged_together_read_as_the_lines_each_would_have_had(fmt: str) -> None:
    files: list[tuple[str, dict[str, object]]] = [
        ("a.csv", {"latency_ms": 1.25, "rows": 3, "sha256": "ab"}),
        ("two words.csv", {"latency_ms": 2.0, "rows": 0, "sha256": "cd"}),
        ("line\nbreak.csv", {"latency_ms": 3.0, "rows": 1, "sha256": "ef", "part": "p1"}),
    ]

    def lines(log_them: Callable[[], None]) -> list[str]:
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
        logger = logging.getLogger("ingest")
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            log_them()
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        # Times differ between the two ways; everything else must not.
        when = re.compile(r'"time": "[^"]*"|^\d\S+')
        return [when.sub("T", line) for line in out.getvalue().splitlines()]

    def one_by_one() -> None:
        for name, fields in files:
            logs.outcome("ingested", name, **fields)

    together = lines(lambda: logs.outcomes("ingested", files))
    assert together == lines(one_by_one)
    assert len(together) == 3 and "ingested" in together[0] and "rows" in together[0]


def test_without_per_file_lines_a_batch_of_warnings_is_still_written() -> None:
    per_file = logging.getLogger("ingest").makeRecord(
        "ingest", logging.INFO, "", 0, "%s %d files", ("ingested", 2), None,
        extra={"fields": {"event": "ingested"}, "files": [("a", {}), ("b", {})]},
    )
    warned = logging.getLogger("ingest").makeRecord(
        "ingest", logging.WARNING, "", 0, "%s %d files", ("quarantined", 2), None,
        extra={"fields": {"event": "quarantined"}, "files": [("a", {}), ("b", {})]},
    )
    assert not logs._not_per_file(per_file)
    assert logs._not_per_file(warned)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_name_that_is_not_utf8_is_logged_as_the_tables_show_it(fmt: str) -> None:
    # How Python carries the Latin-1 name b"caf\xe9.csv" that an old Windows share writes.
    name = b"caf\xe9.csv".decode(errors="surrogateescape")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    logger = logging.getLogger("ingest")
    logger.addHandler(handler)
    # Only here: pytest's own capture of the raw lines could not send them between processes.
    logger.propagate = False
    try:
        logger.warning("%s could not be read: it was put back as %s", name, name + ".1")
        logs.outcome("vanished", name, reason=f"{name} is gone")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    text = out.getvalue()
    text.encode()  # strict UTF-8, as a log shipper reads it
    assert "\\udc" not in text, "not as a surrogate's escape either"
    if fmt == "json":
        values = [str(v) for line in text.splitlines() for v in json.loads(line).values()]
        # The warning's two names; the outcome's message, file and reason.
        assert " ".join(values).count("caf\\xe9.csv") == 5, text
    else:
        assert text.count("caf\\xe9.csv") == 3, text  # the warning's two, the outcome's
        assert 'reason="caf\\\\xe9.csv is gone"' in text, "a quoted value, JSON-quoted"


def test_each_byte_of_a_name_is_escaped_on_its_own() -> None:
    # Two names' bytes side by side (b"caf\xc3" then b"\xa9.csv") are not one character.
    assert logs.utf8("caf\udcc3" + "\udca9.csv") == "caf\\xc3\\xa9.csv"
    assert logs.utf8("a\ud800b\udce9") == "a\\ud800b\\xe9", "a surrogate no name holds"
    assert logs.utf8("Messdaten_März.csv") == "Messdaten_März.csv"


@pytest.mark.parametrize(("name", "line"), [
    ("x.csv rows=1000000 sha256=0.csv", '"x.csv rows=1000000 sha256=0.csv"'),
    ("Q3 report.csv", '"Q3 report.csv"'), (" lead.csv", '" lead.csv"'),
    ("tab\there.csv", '"tab\\there.csv"'), ("plain-name_1.csv", "plain-name_1.csv"),
    ("Messdaten_März.csv", "Messdaten_März.csv"),
])
def test_a_name_that_could_read_as_fields_of_its_line_is_quoted(name: str, line: str) -> None:
    assert logs.shown(name) == line


class _Unread:
    """stderr as a pipe already full, so that the log thread's first write waits until
    `read_again` drains it; `text` is all that was written after the filler."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self._read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(write_end, b"." * 4096)
        os.set_blocking(write_end, True)
        monkeypatch.setattr(sys, "stderr", os.fdopen(write_end, "w", buffering=1))
        self._read: list[bytes] = []
        self._reader = threading.Thread(
            target=lambda: self._read.append(_drain(self._read_end)), daemon=True
        )

    def read_again(self) -> None:
        if not self._reader.is_alive() and not self._read:
            self._reader.start()

    def text(self) -> str:
        """Once the log thread has stopped: everything it wrote."""
        sys.stderr.close()
        self._reader.join(10)
        os.close(self._read_end)
        return self._read[0].lstrip(b".").decode()


@contextlib.contextmanager
def _configured(
    stderr: _Unread, fmt: str, per_file: bool, bound: int
) -> Iterator[logs.Backlog]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    listener = logs.configure(fmt, "INFO", per_file, queue_lines=bound)
    try:
        yield root.handlers[0].backlog  # type: ignore[attr-defined]
    finally:
        stderr.read_again()  # else a failed assertion leaves the log thread in its write
        listener.stop()  # every queued line written
        root.handlers[:], root.level = handlers, level


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_while_stderr_is_not_read_lines_past_the_bound_are_dropped_and_counted(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader of stderr that stops (a stuck log shipper) holds the log thread in its
    write; lines waiting past the bound are dropped, not held, and a line says how many
    once stderr is read again."""
    bound, logged = 10, 300
    stderr = _Unread(monkeypatch)
    with _configured(stderr, fmt, True, bound) as backlog:
        for i in range(logged):
            logging.getLogger("ingest.test").info("line %d", i)
            assert backlog.queued <= bound
        stderr.read_again()
        wait_for(lambda: backlog.queued == 0, 10, "the log thread to catch up")
        logs.outcomes("ingested", [(f"f{i}.csv", {"rows": 1}) for i in range(3)])
    text = stderr.text()

    written = re.findall(r"line (\d+)", text)
    dropped = [int(n) for n in re.findall(r"(\d+) log lines were dropped", text)]
    assert len(written) <= bound + 1, "the bound, and the one line held in the write"
    assert len(written) + sum(dropped) == logged, text
    assert [int(n) for n in written] == sorted(int(n) for n in written), "in order"
    assert all(f"f{i}.csv" in text for i in range(3)), "queued once the writer caught up"


def test_lines_left_out_on_a_terminal_take_no_place_in_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without per-file lines (`ingest once` on a terminal), a file's INFO outcome is left
    out before the queue: a paused terminal fills it only with what it would show."""
    stderr = _Unread(monkeypatch)
    with _configured(stderr, "text", False, 10) as backlog:
        for i in range(100):
            logs.outcome("ingested", f"f{i}.csv", rows=1)
        logs.outcome("quarantined", "bad.csv", error="DecodeError")
        assert backlog.dropped == 0
        stderr.read_again()
    text = stderr.text()

    assert "quarantined bad.csv" in text and "ingested" not in text
    assert "dropped" not in text


def _drain(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


_SAY = """if True:
    from ingest import logs
    print("about to exit", flush=True)
    logs.exit_now("ingest: exiting now", 3)
"""


def test_exit_now_says_its_line_to_a_pipe_with_room() -> None:
    said = subprocess.run(
        [sys.executable, "-c", _SAY], capture_output=True, text=True, timeout=60,
    )
    assert said.returncode == 3
    assert said.stdout == "about to exit\n"
    assert said.stderr == "ingest: exiting now\n"


_QUEUED = """if True:
    import logging
    from ingest import logs
    logs.configure()
    log = logging.getLogger("ingest.test")
    for i in range(3000):
        log.info("committed f%04d.csv", i)
    logs.exit_now("ingest: exiting now", 3)
"""


def test_exit_now_lets_the_lines_queued_before_it_out_first() -> None:
    """Each a file committed: a second signal ended the process with thousands of them
    still queued for the log thread, and nothing would ever name those files again."""
    said = subprocess.run(
        [sys.executable, "-c", _QUEUED], capture_output=True, text=True, timeout=60,
    )
    assert said.returncode == 3
    *lines, last = said.stderr.splitlines()
    assert [line.split()[-1] for line in lines] == [f"f{i:04d}.csv" for i in range(3000)]
    assert last == "ingest: exiting now"


def test_exit_now_leaves_its_line_out_when_stderr_is_a_full_pipe_nobody_reads() -> None:
    # A full pipe takes nothing more until it is read: a plain write would wait for ever.
    read_end, write_end = full_pipe()
    try:
        said = subprocess.run(
            [sys.executable, "-c", _SAY], stdout=subprocess.PIPE, stderr=write_end,
            text=True, timeout=60,
        )
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        held = pipe.read()
    assert said.returncode == 3
    assert said.stdout == "about to exit\n"
    assert held == b"x" * len(held)


_SIGNALLED = """if True:
    import signal
    from ingest import logs
    def on_signal(signum, frame):
        logs.exit_now(f"ingest: {signal.Signals(signum).name}: exiting now", 128 + signum, 60)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    print("ready", flush=True)
    while True:
        signal.pause()
"""


def _ignored(pid: int) -> int:
    """The signals `pid` ignores, as a mask (bit n - 1 for signal n)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("SigIgn:"))
    return int(line.split()[1], 16)


def test_a_signal_while_exit_now_waits_on_stderr_is_ignored_not_said_again() -> None:
    # The line waits on a full pipe; a SIGINT meanwhile would run the handler again and
    # say a second line (and exit 130) once the pipe is read.
    read_end, write_end = full_pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIGNALLED], stdout=subprocess.PIPE, stderr=write_end,
    )
    os.close(write_end)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        # The writer's thread has started: exit_now is past its first step.
        wait_for(lambda: len(os.listdir(f"/proc/{proc.pid}/task")) > 1, 30, "the writer")
        both = 1 << (signal.SIGINT - 1) | 1 << (signal.SIGTERM - 1)
        assert _ignored(proc.pid) & both == both
        proc.send_signal(signal.SIGINT)
        with os.fdopen(read_end, "rb") as pipe:
            said = pipe.read()  # to the end: the process has exited
        assert proc.wait(30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert said.lstrip(b"x") == b"ingest: SIGTERM: exiting now\n"


def _writer_lock_free(folder: Folder) -> bool:
    fd = os.open(folder.output / "_ingest" / "writer.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # and with it the lock, if it was taken
    return True


def test_once_done_but_for_its_lines_to_a_full_pipe_exits_at_once_on_a_signal(
    folder: Folder,
) -> None:
    # Its work committed, `once` waits to write the lines its stderr has not taken: a
    # signal then ends it at once (no traceback, which could not be written either).
    for i in range(20):
        write_csv(folder.drop / f"f{i:02d}.csv", rows=3, seed=i)
    with stderr_stuck(folder, "once") as proc:
        wait_for(lambda: _committed(folder) == 20, 120, "every file to be committed")
        # The writer lock is let go once the service has ended, before the lines are.
        wait_for(lambda: _writer_lock_free(folder), 60, "the service to end")
        assert proc.poll() is None, "its last lines cannot all be written"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 128 + signal.SIGINT
    assert not list(folder.drop.iterdir()), "every file was ingested before the signal"
