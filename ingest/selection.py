"""Which paths in the drop folder are inputs. Plain, synchronous, cheap.

Used by the watcher (through a thread for full scans) and by `ingest status`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger("ingest.watch")

# Names that writers use while a file is incomplete: they become inputs when renamed.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", "~", ".swp")


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """A name is an input if it matches a pattern and is neither hidden nor a temp name."""
    if name.startswith(".") or name.endswith(TEMP_SUFFIXES):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


Skipped = Callable[[str, str], None]
# How the reasons for inputs that exist but cannot be read begin: an unlistable folder's
# files, a file that cannot be looked at, a symlink to nothing. `once` exits 1 for them.
CANNOT = "cannot "


def unreadable(reason: str) -> bool:
    return reason.startswith(CANNOT)


def _debug(path: str, reason: str) -> None:
    log.debug("skip %s: %s", path, reason)


def regular_file(
    path: str | Path, drop: Path, skipped: Skipped = _debug, entry: os.DirEntry[str] | None = None
) -> os.stat_result | None:
    """The stat of `path` if it is a regular file inside `drop` (through any symlink), else None.

    A FIFO is never opened: a read would block until a writer came along.
    Each refusal with a name that looks like an input is passed to `skipped`.
    `entry`: the path's entry in a directory listing, which knows a symlink without a
    system call.
    """
    try:
        st = entry.stat() if entry is not None else os.stat(path)
    except FileNotFoundError:
        try:  # not a file gone, but a link to nothing?
            target = os.readlink(path)
        except OSError:
            return None
        skipped(str(path), f"{CANNOT}follow it: a symlink to nothing ({target})")
        return None
    except OSError as exc:
        skipped(str(path), f"{CANNOT}stat it ({exc.strerror})")
        return None
    if stat.S_ISDIR(st.st_mode):
        _debug(str(path), "a directory")
        return None
    if not stat.S_ISREG(st.st_mode):
        skipped(str(path), "not a regular file (a FIFO, socket or device is never opened)")
        return None
    symlink = entry.is_symlink() if entry is not None else os.path.islink(path)
    if symlink and not Path(path).resolve().is_relative_to(drop.resolve()):
        skipped(str(path), "a symlink to a file outside the drop folder")
        return None
    return st


def scan(
    drop: Path, patterns: tuple[str, ...], skipped: Skipped = _debug
) -> Iterator[tuple[str, os.stat_result]]:
    """Every input below `drop`, as its path and its stat. Blocking: call it from a thread.

    Folders are listed with `os.scandir`, as `os.walk` does, but each entry is used as it
    comes: its name is checked before its path is asked for, and the path is the text
    the listing makes (no `Path`, which each system call on it would format back to
    text), which matters in a folder of a hundred thousand files. Hidden folders and
    symlinked ones are not entered.
    """
    folders: list[str | Path] = [drop]
    while folders:
        folder = folders.pop()
        try:
            listing = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone since it was listed, or a file in its place
        except OSError as exc:
            reason = f"{CANNOT}list the folder ({exc.strerror}): no input in it is read"
            skipped(str(folder), reason)
            continue
        with listing:
            for entry in listing:
                name = entry.name
                try:
                    is_folder = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_folder = False
                if is_folder:
                    if not name.startswith("."):
                        folders.append(entry.path)
                    continue
                if not matches(name, patterns):
                    continue
                path = entry.path
                st = regular_file(path, drop, skipped, entry)
                if st is not None:
                    yield path, st
