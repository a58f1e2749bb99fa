"""The four folders of a config: distinct, none inside another, and usable.

Called by the command line in the main process, before anything is created or
moved. An output folder inside the drop folder would have its own part files
read back as inputs (and, in archive mode, moved away from under the ledger);
a drop folder inside the archive would see archived inputs again. So each pair
is checked with symlinks resolved, and a clash is a config error naming both keys.
"""

from __future__ import annotations

import os
import stat
from itertools import combinations
from pathlib import Path

from .config import Config
from .errors import ConfigError
from .store.layout import STATE_DIR

# What the output folder's state holds, and whether each is a folder: one of the other
# kind (made by hand, or by a sync tool) stopped every writing command with a traceback.
STATE_ENTRIES = (
    (STATE_DIR, True), (f"{STATE_DIR}/tmp", True), (f"{STATE_DIR}/orphans", True),
    (f"{STATE_DIR}/writer.lock", False), (f"{STATE_DIR}/ledger.sqlite", False),
)


def _real(path: Path) -> Path:
    # Resolves every symlink of the part that exists; the rest is kept as written.
    return Path(os.path.realpath(path))


def check_distinct(config: Config) -> None:
    """Raise ConfigError, naming both keys, if two of the four folders are one or nest."""
    p = config.paths
    named = [(key, getattr(p, key)) for key in ("drop", "output", "quarantine", "archive")]
    for (key_a, path_a), (key_b, path_b) in combinations(named, 2):
        real_a, real_b = _real(path_a), _real(path_b)
        a, b = f'[paths] {key_a} = "{path_a}"', f'[paths] {key_b} = "{path_b}"'
        if real_a == real_b:
            raise ConfigError(f"{a} is the same folder as {b}; the four folders must be distinct")
        if real_a.is_relative_to(real_b):
            raise ConfigError(f"{a} is inside {b}; the four folders must not nest")
        if real_b.is_relative_to(real_a):
            raise ConfigError(f"{b} is inside {a}; the four folders must not nest")


def check_usable(config: Config, only: tuple[str, ...] | None = None) -> None:
    """Fail early, naming the key, if a folder cannot be made or used: the service's, or
    `only` these (`compact` and `ledger rebuild` write to the output folder alone)."""
    p = config.paths
    writable = config.watch.on_success != "keep"
    folders = [("drop", p.drop, writable), ("output", p.output, True),
               ("quarantine", p.quarantine, True)]
    if config.watch.on_success == "archive":  # else every ingested file stays, unarchived
        folders.append(("archive", p.archive, True))
    for key, folder, write in folders:
        if only is not None and key not in only:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"[paths] {key} = {str(folder)!r}: not a folder") from None
        except OSError as exc:
            raise ConfigError(
                f"[paths] {key} = {str(folder)!r}: cannot create: {exc.strerror}"
            ) from None
        mode = os.R_OK | os.X_OK | (os.W_OK if write else 0)
        if not os.access(folder, mode):
            need = "read and write" if write else "read"
            raise ConfigError(f"[paths] {key} = {str(folder)!r}: no {need} permission")
        if key == "output":
            _check_state(folder)


def _check_state(output: Path) -> None:
    for name, is_folder in STATE_ENTRIES:
        try:
            found = os.stat(output / name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(
                f"[paths] output = {str(output)!r}: {name}: {exc.strerror}"
            ) from None
        if stat.S_ISDIR(found.st_mode) != is_folder:
            kind = "not a folder" if is_folder else "a folder"
            raise ConfigError(
                f"[paths] output = {str(output)!r}: {name} is {kind}, where ingest keeps its"
                " state; move it away"
            )


def holds_anything(folder: Path) -> bool:
    """Whether `folder` has an entry whose name is not hidden; it reads up to the first such.
    A hidden name is never an input, nor a hidden folder entered: a canary file a killed
    `ingest run` left, `.DS_Store`, an uploader's `.part` folder. A folder that cannot be
    read is said to hold something: the scan reports what is wrong with it."""
    try:
        with os.scandir(folder) as entries:
            return any(not entry.name.startswith(".") for entry in entries)
    except OSError:
        return True
