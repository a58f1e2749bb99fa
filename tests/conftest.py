"""Real folders in tmp_path, the real CLI, real Parquet read back."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pytest

from ingest import stacks

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = ROOT / "sample_data"


@dataclass
class Folder:
    """A project folder: config.toml beside drop/, output/, archive/, quarantine/."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def drop(self) -> Path:
        return self.root / "drop"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    def write_config(self, **sections: dict[str, object]) -> Path:
        lines: list[str] = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            for key, value in values.items():
                lines.append(f"{key} = {_toml(value)}")
        self.config.write_text("\n".join(lines) + "\n")
        return self.config

    def query(self, sql: str) -> list[tuple[object, ...]]:
        """Run SQL with a view per table over the dataset (`records`, `features`, ...),
        read as a reader would, with no options: every part of a table has one schema
        (retrying when a file it listed is compacted away before it opens it)."""
        return retrying_read(lambda: self._query(sql))

    def _query(self, sql: str) -> list[tuple[object, ...]]:
        con = duckdb.connect()
        for table in sorted(self.output.iterdir()) if self.output.is_dir() else []:
            if table.name.startswith(("_", ".")) or not list(table.glob("ingest_date=*/*.parquet")):
                continue
            # A view reads its table's footers as it is made: only those the query names.
            if not re.search(rf"\b{re.escape(table.name)}\b", sql, re.IGNORECASE):
                continue
            glob = (table / "ingest_date=*" / "*.parquet").as_posix()
            con.execute(
                f"CREATE VIEW {table.name} AS SELECT * FROM read_parquet('{glob}',"
                " hive_partitioning = true)"
            )
        return con.execute(sql).fetchall()

    def rows_per_file(self, table: str = "records") -> dict[str, int]:
        """source_file -> its rows in `table`, as a reader sees them now."""
        if not self.parts(table):
            return {}
        query = f"SELECT source_file, count(*) FROM {table} GROUP BY 1"
        return {str(name): int(count) for name, count in self.query(query)}  # type: ignore[call-overload]

    def parts(self, table: str) -> list[Path]:
        return sorted((self.output / table).glob("ingest_date=*/*.parquet"))

    def ingest(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ingest", *args, "--config", str(self.config)],
            cwd=self.root, capture_output=True, text=True, timeout=timeout,
            # Workers import test feature sets by name, as they would a user's own package.
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


T = TypeVar("T")


def retrying_read(read: Callable[[], T], attempts: int = 50) -> T:
    """A reader's retry: `ingest run` compacts as it goes, so a file listed may be gone
    (swapped for a merged one) when opened. Any other error, or a wrong result, is not retried."""
    for _ in range(attempts - 1):
        try:
            return read()
        except duckdb.IOException as exc:
            if "No such file" not in str(exc):
                raise
            time.sleep(0.02)
    return read()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


FAST = {
    "watch": {"settle_ms": 50, "rescan_s": 2},
    "pipeline": {"workers": 2},
    "output": {"flush_s": 0.2},
}


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Folder]:
    f = Folder(tmp_path)
    f.drop.mkdir()
    f.write_config(**FAST)
    yield f
    # After every test that wrote output: one schema per table.
    from .invariants import check_one_schema

    check_one_schema(f.output)


def write_csv(path: Path, rows: int, seed: int, columns: int = 3) -> np.ndarray:
    """A sensor-like CSV with a timestamp column and a few missing values; returns the values."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(10.0, 3.0, (rows, columns)), 4)
    values[rng.random((rows, columns)) < 0.01] = np.nan
    header = "timestamp," + ",".join(f"ch{i}" for i in range(columns))
    lines = [header]
    for i, row in enumerate(values):
        cells = ["" if np.isnan(v) else repr(float(v)) for v in row]
        lines.append(f"{1_700_000_000_000 + 10 * i}," + ",".join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return values


@contextlib.contextmanager
def appended_to(path: Path, every_s: float = 0.02) -> Iterator[None]:
    """A CSV (`timestamp,v`) that a thread appends a row to every `every_s` while the block
    runs, as a device writes its log: a file that never settles."""
    path.write_text("timestamp,v\n")
    stop = threading.Event()

    def append() -> None:
        with path.open("a") as out:
            for i in itertools.count():
                if stop.wait(every_s):
                    return
                out.write(f"{i},{i}.5\n")
                out.flush()

    writer = threading.Thread(target=append, daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


def drop_csv(folder: Folder, name: str, rows: int, seed: int) -> np.ndarray:
    """`write_csv` into a running service's drop folder, as a careful writer delivers: under
    a hidden temp name, then renamed into place. Written in place, a file may be read (with
    settle_ms = 0, or after a stall of the writer) before its bytes are all there, and
    that version quarantined: right of the service, and a second ledger row for the name."""
    target = folder.drop / name
    temp = _hidden(target)
    values = write_csv(temp, rows, seed)
    os.replace(temp, target)
    return values


def drop_by_rename(folder: Folder, name: str, content: bytes) -> Path:
    """How a careful writer delivers: write a hidden temp name, then rename into place."""
    target = folder.drop / name
    temp = _hidden(target)
    temp.write_bytes(content)
    os.replace(temp, target)
    return target


def _hidden(target: Path) -> Path:
    """A temp name beside `target` (in its own folder) that the service never reads."""
    return target.with_name(f".{target.name}.tmp")


def fifo_writer(fifo: Path, proc: subprocess.Popen[str]) -> int:
    """Open the FIFO's other end once the command has opened it to read its config:
    the command is then past its start and reading, where a signal must stop it."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never opened its config"
        time.sleep(0.01)


def full_pipe() -> tuple[int, int]:
    """A pipe of one page (4 KiB), filled: its writer's next write waits until the pipe is
    read, as a stderr does whose reader is stuck. Its two ends, read and write."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 512)
    os.set_blocking(write_end, True)
    return read_end, write_end


@contextlib.contextmanager
def stderr_stuck(folder: Folder, command: str) -> Iterator[subprocess.Popen[bytes]]:
    """`ingest <command>` whose stderr is a full pipe nobody reads (a log shipper stuck);
    killed with its process group if it still runs when the block ends."""
    read_end, write_end = full_pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", command, "--config", str(folder.config)],
        cwd=folder.root, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=write_end, start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        os.close(write_end)
        os.close(read_end)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric(port: int, name: str) -> float | None:
    """One unlabelled sample of a running service's /metrics; None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Service:
    """`ingest run` in a subprocess, with its stderr captured to a file."""

    def __init__(self, folder: Folder, *args: str):
        self.folder = folder
        self.log = folder.root / "service.log"
        self._log_fh = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run", "--config", str(folder.config), *args],
            cwd=folder.root, stdout=self._log_fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: "watching" in self.text() or self.proc.poll() is not None, timeout,
                 "the service to start watching")
        assert self.proc.poll() is None, self.text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{signal.Signals(sig).name} did not end the service within {timeout} s;"
                f" the end of its log, and its stacks:\n{self.stacks()[-20_000:]}"
            ) from None
        self._log_fh.close()
        return code

    def stacks(self, timeout: float = 10) -> str:
        """The log once the service has written its stacks to it (SIGUSR1)."""
        self.proc.send_signal(signal.SIGUSR1)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: stacks.END in self.text(), timeout, "the stacks")
        return self.text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log_fh.close()


@pytest.fixture
def service(folder: Folder) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(*args: str) -> Service:
        s = Service(folder, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()
