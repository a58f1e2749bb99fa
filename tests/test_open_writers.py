"""Whether another process holds an input open for writing: asked of Linux as a read
lease, on local file systems only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest import regular

MOUNT_INFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "29 27 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "31 29 0:45 / /mnt/share rw,relatime shared:7 master:3 - nfs4 srv:/export rw,vers=4.2\n"
)


def test_a_devices_file_system_is_read_from_mountinfo() -> None:
    assert regular.file_system_of(os.makedev(254, 0), MOUNT_INFO) == "ext4"
    assert regular.file_system_of(os.makedev(0, 45), MOUNT_INFO) == "nfs4"  # optional fields
    assert regular.file_system_of(os.makedev(9, 9), MOUNT_INFO) is None


def test_a_file_open_for_writing_is_told_and_once_closed_is_not(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("a\n1\n")
    fd = regular.open_fd(path)
    try:
        with path.open("a"):
            assert regular.being_written(fd)
        assert not regular.being_written(fd)
    finally:
        os.close(fd)


def test_on_a_network_file_system_no_lease_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An NFS or SMB client refuses a read lease whenever its server gave it no delegation,
    writer or not: every file there would wait for ever."""
    path = tmp_path / "a.csv"
    path.write_text("a\n1\n")
    device = path.stat().st_dev
    line = f"40 29 {os.major(device)}:{os.minor(device)} / {tmp_path} rw - nfs4 srv:/x rw\n"
    monkeypatch.setattr(regular, "_mount_info", lambda: line)
    regular._local.cache_clear()
    fd = regular.open_fd(path)
    try:
        with path.open("a"):
            assert not regular.being_written(fd)  # not asked: time alone settles it
    finally:
        os.close(fd)
        regular._local.cache_clear()
