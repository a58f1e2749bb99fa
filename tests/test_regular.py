"""Every reader of an input refuses what is no longer a regular file, at once.

A file is a regular file when it settles and is opened later; a FIFO put in its place
would make an open to read wait for a writer for ever (the commit's thread with it),
a device would give bytes without end. Real FIFOs and devices in tmp_path and /dev.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import regular
from ingest.aio import read
from ingest.footprint import footprint
from ingest.inflate import plain_size
from ingest.store.dispose import sha256_of
from ingest.store.explain import _same_version
from ingest.store.ledger import FileRecord


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "swapped.csv"
    os.mkfifo(path)
    return path


@pytest.mark.timeout(20)
def test_the_service_readers_refuse_a_fifo_without_waiting_for_a_writer(
    fifo: Path, tmp_path: Path
) -> None:
    [got] = read._read_all([fifo], [10])
    assert isinstance(got, regular.NotRegular) and got.strerror == "not a regular file"
    buffer = memoryview(bytearray(10))
    [got] = read._read_all_into([fifo], buffer, [10])
    assert isinstance(got, regular.NotRegular)
    out = os.open(tmp_path / "segment", os.O_RDWR | os.O_CREAT)
    [got] = read._send_all([fifo], out, [10])
    assert isinstance(got, regular.NotRegular)
    with pytest.raises(regular.NotRegular):
        asyncio.run(read.read_bytes(fifo))
    with pytest.raises(regular.NotRegular):
        asyncio.run(read.sha256_of_file(fifo))
    # Sizing a compressed file, and the commit's hash of a file no worker hashed.
    with pytest.raises(regular.NotRegular):
        plain_size(fifo, 100)
    with pytest.raises(regular.NotRegular):
        footprint(fifo, "swapped.npz", 10, 100)
    assert sha256_of(fifo) == ""


@pytest.mark.parametrize("where", ["/dev/zero", "directory"])
def test_a_device_or_a_directory_is_not_a_regular_file(where: str, tmp_path: Path) -> None:
    path = tmp_path if where == "directory" else Path(where)
    with pytest.raises(regular.NotRegular):
        regular.open_fd(path)


def _read_whole(path: Path) -> bytes:
    """The file through `open_fd`, whose descriptor blocks as any other."""
    fd = regular.open_fd(path)
    try:
        assert os.get_blocking(fd)
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def test_a_regular_file_opens_and_reads_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,b\n1,2\n")
    assert _read_whole(path) == b"a,b\n1,2\n"
    with open(path, "rb", opener=regular.opener) as fh:
        assert fh.read() == b"a,b\n1,2\n"
    with pytest.raises(FileNotFoundError):
        regular.open_fd(tmp_path / "gone.csv")


@pytest.mark.timeout(20)
def test_explain_compares_a_version_known_by_content_alone_without_opening_a_fifo(
    fifo: Path, tmp_path: Path
) -> None:
    """A rebuilt ledger knows no size or mtime: `ingest explain` hashes what stands at the
    path to tell the version, and a FIFO or a folder there is simply not it."""
    record = FileRecord(fifo.name, size=-1, mtime_ns=-1, sha256="0" * 64, state="ingested")
    assert _same_version(fifo, record) is False
    assert _same_version(tmp_path, record) is False  # a folder: not a traceback


def _hold_a_lease(path: Path) -> subprocess.Popen[str]:
    """A process holding a write lease on `path` (as Samba's oplocks and NFS delegations
    do), which lets go a moment after another process opens the file."""
    code = (
        "import fcntl, os, signal, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR)\n"
        "def let_go(*_):\n"
        "    time.sleep(0.3)\n"
        "    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGIO, let_go)\n"
        "try:\n"
        "    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)\n"
        "except OSError as exc:\n"
        "    print('no lease', exc, flush=True)\n"
        "    sys.exit(0)\n"
        "print('held', flush=True)\n"
        "time.sleep(30)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


@pytest.mark.timeout(60)
def test_a_file_under_another_process_lease_is_opened_once_the_lease_is_let_go(
    tmp_path: Path,
) -> None:
    """Opened without waiting, a file under a lease is refused at once (EWOULDBLOCK); it is
    opened as a plain open would, once the holder lets go."""
    path = tmp_path / "leased.csv"
    path.write_bytes(b"a,b\n1,2\n")
    with _hold_a_lease(path) as holder:
        assert holder.stdout is not None
        said = holder.stdout.readline().strip()
        if said != "held":
            holder.wait(10)
            pytest.skip(f"this file system gives no lease: {said}")

        assert _read_whole(path) == b"a,b\n1,2\n"
        assert holder.wait(10) == 0
