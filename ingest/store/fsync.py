"""fsync for a file or a folder: a rename is durable only once its folder is synced.

Called in threads of the main process, like all of `ingest.store`.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
