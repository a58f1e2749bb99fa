"""Opening an input only while it is a regular file.

A file is found to be a regular file when it settles, and opened later, by the service
or by a worker: by then a FIFO or a device may stand at its path. Opening a FIFO to
read waits for a writer, for ever (a commit's thread, or a worker, with it); a device's
bytes may never end. These open without waiting (O_NONBLOCK), refuse whatever is not a
regular file, as an OSError, and give back a descriptor that blocks as any other.

A file that looks settled may still be open in its writer, silent for longer than
`settle_ms`: `settled_opener` refuses one (`BeingWritten`) where Linux can tell, for
the reads that ingest it (`being_written`).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import signal
import stat
from pathlib import Path


class NotRegular(OSError):
    """What stands at an input's path is not a regular file (any more)."""


def opener(path: str, flags: int) -> int:
    """For `open(path, mode, opener=opener)`: a descriptor of the regular file at `path`."""
    flags |= os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags | os.O_NONBLOCK)
    except BlockingIOError:
        # A regular file under another process's lease (a Samba oplock, an NFS
        # delegation): opened without O_NONBLOCK, the open waits for the lease to be let
        # go, as it did before. A FIFO opened to read never answers so.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise NotRegular(errno.EINVAL, "not a regular file", path) from None
        fd = os.open(path, flags)
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if regular:
            # Reads of a regular file ignore O_NONBLOCK on a local disk; a FUSE mount's
            # daemon is told of it, and could answer EAGAIN, which no reader here expects.
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise NotRegular(errno.EINVAL, "not a regular file", path)
    return fd


def open_fd(path: str | Path) -> int:
    """A descriptor to read the regular file at `path`. Raises OSError (NotRegular)."""
    return opener(os.fspath(path), os.O_RDONLY)


class BeingWritten(OSError):
    """Another process holds the input open for writing: a writer that pauses longer
    than `settle_ms` between writes. Its file is looked at again later (`changed`)."""


BEING_WRITTEN = "it is open for writing by another process"


# Inputs whose format ends in a footer or declares its own size: whole, or refused as
# damaged, whatever holds them open. Not asked about writers: pyarrow's
# `ipc.new_file(path)` keeps its file open for writing until the writer is collected,
# long after the file is whole. A file written by appending (CSV, JSON Lines) is the one
# a writer's pause makes look whole.
SELF_BOUNDED = (".npy", ".npz", ".parquet", ".arrow")


def appended(path: str) -> bool:
    """Is `path` an input a writer may append to, whose open writer is asked about?"""
    return not path.lower().endswith(SELF_BOUNDED)


def settled_opener(path: str, flags: int) -> int:
    """`opener`, refusing (BeingWritten) an input written by appending (`appended`) that
    another process holds open for writing."""
    fd = opener(path, flags)
    try:
        if appended(path) and being_written(fd):
            raise BeingWritten(errno.EBUSY, BEING_WRITTEN, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_settled(path: str | Path) -> int:
    """`open_fd`, refusing (BeingWritten) a file another process holds open for writing."""
    return settled_opener(os.fspath(path), os.O_RDONLY)


def being_written(fd: int) -> bool:
    """Does another process hold the file open for writing? Linux refuses a read lease
    on such a file (EAGAIN); the lease, when given, is let go at once. False where that
    cannot be told: a file of another owner without CAP_LEASE (root has it), a file
    system not local (`_local`: an NFS or SMB client refuses a lease whenever its server
    has given it no delegation, writer or not), not Linux. Settling by time covers those
    alone."""
    try:
        if not _local(os.fstat(fd).st_dev):
            return False
        # A writer's open while the lease is held signals the holder: SIGIO by default,
        # which ends a process; SIGURG is ignored unless handled.
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except (OSError, AttributeError) as exc:  # AttributeError: no leases on this platform
        return isinstance(exc, OSError) and exc.errno == errno.EAGAIN
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError:  # broken, and timed out, while this thread was held up: a writer came
        return True
    return False


# File systems whose leases say only whether a file is open for writing on this machine.
LOCAL_FILE_SYSTEMS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "jfs",
    "reiserfs", "bcachefs", "ramfs",
})


@functools.cache
def _local(device: int) -> bool:
    """Is the file system of `device` (a stat's st_dev) one of LOCAL_FILE_SYSTEMS? Asked
    of /proc/self/mountinfo once per device for the life of the process."""
    return file_system_of(device, _mount_info()) in LOCAL_FILE_SYSTEMS


def _mount_info() -> str:
    try:
        with open("/proc/self/mountinfo") as info:
            return info.read()
    except OSError:
        return ""


def file_system_of(device: int, mount_info: str) -> str | None:
    """The type of the file system mounted from `device`, from mountinfo's text."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    for line in mount_info.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == wanted and " - " in line:
            return line.split(" - ", 1)[1].split()[0]
    return None
