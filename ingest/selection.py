"""Which paths in the drop folder are inputs. Plain, synchronous, cheap.

Used by the watcher (through a thread for full scans) and by `ingest status`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("ingest.watch")

# Names that writers use while a file is incomplete: they become inputs when renamed.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", "~", ".swp")


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """A name is an input if it matches a pattern and is neither hidden nor a temp name."""
    if name.startswith(".") or name.endswith(TEMP_SUFFIXES):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def regular_file(path: Path, drop: Path) -> os.stat_result | None:
    """The stat of `path` if it is a regular file inside `drop` (through any symlink), else None.

    A FIFO is never opened: a read would block until a writer came along.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.debug("skip %s: cannot stat (%s)", path, exc.strerror)
        return None
    if not stat.S_ISREG(st.st_mode):
        log.debug("skip %s: not a regular file", path)
        return None
    if path.is_symlink() and not path.resolve().is_relative_to(drop.resolve()):
        log.debug("skip %s: symlink to a file outside the drop folder", path)
        return None
    return st


def scan(drop: Path, patterns: tuple[str, ...]) -> Iterator[tuple[Path, os.stat_result]]:
    """Every input below `drop`, with its stat. Blocking: call it from a thread."""
    for folder, dirs, names in os.walk(drop):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not matches(name, patterns):
                continue
            path = Path(folder, name)
            st = regular_file(path, drop)
            if st is not None:
                yield path, st
