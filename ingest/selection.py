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


Skipped = Callable[[Path, str], None]


def _debug(path: Path, reason: str) -> None:
    log.debug("skip %s: %s", path, reason)


def regular_file(path: Path, drop: Path, skipped: Skipped = _debug) -> os.stat_result | None:
    """The stat of `path` if it is a regular file inside `drop` (through any symlink), else None.

    A FIFO is never opened: a read would block until a writer came along.
    Each refusal with a name that looks like an input is passed to `skipped`.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        skipped(path, f"cannot stat it ({exc.strerror})")
        return None
    if stat.S_ISDIR(st.st_mode):
        _debug(path, "a directory")
        return None
    if not stat.S_ISREG(st.st_mode):
        skipped(path, "not a regular file (a FIFO, socket or device is never opened)")
        return None
    if path.is_symlink() and not path.resolve().is_relative_to(drop.resolve()):
        skipped(path, "a symlink to a file outside the drop folder")
        return None
    return st


def scan(
    drop: Path, patterns: tuple[str, ...], skipped: Skipped = _debug
) -> Iterator[tuple[Path, os.stat_result]]:
    """Every input below `drop`, with its stat. Blocking: call it from a thread."""
    for folder, dirs, names in os.walk(drop):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not matches(name, patterns):
                continue
            path = Path(folder, name)
            st = regular_file(path, drop, skipped)
            if st is not None:
                yield path, st
