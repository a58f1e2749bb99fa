"""Swap a folder of the dataset with a staged one, atomically for readers.

Runs in a thread of the main process (or in `ingest compact`), never on the loop.

On Linux, `renameat2(RENAME_EXCHANGE)` exchanges two directory entries in one step:
a reader that lists the folder gets either the old entries or the new ones. It is
called through ctypes: glibc's wrapper if it has one (2.28 and later), else the raw
system call.

Where the exchange is missing (another kernel, or a filesystem without it, such as
some network or FUSE mounts), the swap falls back to two renames: the live folder
is renamed aside, then the staged one in. For that instant the folder is missing, and
a reader listing it then sees neither set (an error, or no rows from that folder);
never both. A crash between the two renames is finished at start-up (`repair_swaps`).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .layout import Layout
    from .ledger import Ledger

log = logging.getLogger("ingest.swap")

AT_FDCWD = -100
RENAME_EXCHANGE = 1 << 1
# renameat2's number, for a libc without the wrapper (by `uname -m`).
SYSCALL = {"x86_64": 316, "aarch64": 276, "riscv64": 276, "ppc64le": 357, "s390x": 347}


def _renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    function = getattr(libc, "renameat2", None)
    if function is not None:
        function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                             ctypes.c_uint)
        wrapper: Callable[..., int] = function
        return wrapper
    number = SYSCALL.get(os.uname().machine)
    if number is None or not hasattr(libc, "syscall"):
        return None

    def syscall(a: int, old: bytes, b: int, new: bytes, flags: int) -> int:
        return int(libc.syscall(number, a, old, b, new, flags))

    return syscall


def exchange(live: Path, staged: Path) -> bool:
    """Swap two existing folders in one step; False if this system cannot."""
    function = _renameat2() if os.uname().sysname == "Linux" else None
    if function is None:
        return False
    if function(AT_FDCWD, os.fsencode(live), AT_FDCWD, os.fsencode(staged), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(live), None, str(staged))


def swap(live: Path, staged: Path, aside: Path) -> None:
    """Put `staged` in the place of `live`. The old folder ends at `staged` (exchanged)
    or at `aside` (renamed: the fallback)."""
    if exchange(live, staged):
        return
    log.warning("%s: RENAME_EXCHANGE is not available here; renaming aside, then in", live)
    os.rename(live, aside)
    os.rename(staged, live)


def unswap(live: Path, staged: Path, aside: Path) -> None:
    """Undo `swap`: the old folder back in `live`'s place, the new one at `staged`. Cut
    short in the fallback's two renames, `repair_swaps` finds the new folder at `staged`
    and the live one missing, and rolls the swap forward."""
    if staged.exists() and exchange(live, staged):
        return
    os.rename(live, staged)
    os.rename(aside, live)


def repair_swaps(ledger: Ledger, layout: Layout) -> int:
    """Start-up repair: finish each swap the exchange made visible, undo the others, and
    remove staging folders no swap record names. Returns how many swaps it settled."""
    settled = 0
    for record in ledger.swaps():
        root = layout.output / record.stage
        live = layout.output / record.table
        if record.day is not None:
            live = live / f"ingest_date={record.day}"
        if record.state == "staged":
            from .merge import footer_of, sources_of  # pyarrow: only for a swap cut short

            if not live.exists() and (root / live.name).exists():
                os.rename(root / live.name, live)  # the fallback's rename-in, interrupted
            if record.new and (layout.output / record.new[0]).exists():
                ledger.finish_swap(record.id, {
                    rel: [(f, sha) for f, sha, _ in sources_of(footer_of(layout.output / rel))]
                    for rel in record.new
                })
        shutil.rmtree(root, ignore_errors=True)
        ledger.drop_swap(record.id)
        settled += 1
    named = {layout.output / record.stage for record in ledger.swaps()}
    for root in layout.state.glob("swap-*"):
        if root not in named:
            shutil.rmtree(root, ignore_errors=True)
            settled += 1
    return settled
