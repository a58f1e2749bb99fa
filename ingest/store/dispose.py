"""What happens to an input after its fate is recorded: archive, delete, keep, quarantine.

Called in a thread of the main process. Each step runs after the ledger
commit, so a crash in between leaves a known file in the drop folder, and the
next start-up finishes the step instead of ingesting it again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .. import regular
from ..files import DropFile, mtime_ns
from ..jobs import Failure
from .layout import Layout, shown, today

log = logging.getLogger("ingest.dispose")


NAME_MAX = 255  # bytes in one directory entry
REPORT_SUFFIX = ".error.json"


def _named(stem: str, suffix: str, rest: str, reserve: int) -> str:
    """stem + suffix + rest, the stem cut short if the whole (plus `reserve`) would not fit."""
    room = NAME_MAX - reserve - len(os.fsencode(f"{suffix}{rest}"))
    raw = os.fsencode(stem)
    if len(raw) > room:
        cut = raw[: max(room, 1)]
        # A UTF-8 name loses the character cut in two; one that is not UTF-8 keeps its bytes.
        stem = cut.decode(errors="ignore") if shown(stem) == stem else os.fsdecode(cut)
    return f"{stem}{suffix}{rest}"


def _free_name(path: Path, tag: str, reserve: int = 0) -> Path:
    """`path`, or `path` with a tag before its suffixes if the name is taken; cut short
    where the name (plus `reserve` bytes that will be appended) would be too long."""
    stem, dot, rest = path.name.partition(".")
    rest = dot + rest
    if _named(stem, "", rest, reserve) == path.name and not _taken(path):
        return path
    for n in range(1, 10_000):
        suffix = f"-{tag}" if n == 1 else f"-{tag}-{n}"
        candidate = path.with_name(_named(stem, suffix, rest, reserve))
        if not _taken(candidate):
            return candidate
    raise FileExistsError(path)


def _taken(path: str | Path) -> bool:
    """Whether a name is taken, by a file, a folder or a symlink (even a broken one)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True


def _archive_name(layout: Layout, file: DropFile, tag: str, clear: bool = False) -> str:
    """Where an input goes in the archive: its path below the day's folder, or a free name
    beside it. Made as text: two pathlib joins a file cost more than the move itself.
    `clear`: a folder on the way is a file there (`free_folders`)."""
    day = f"{layout.archive}/{today()}"
    below = layout.below_drop(file.path)
    path = f"{day}/{free_folders(day, below) if clear else below}"
    if len(os.fsencode(os.path.basename(path))) <= NAME_MAX and not _taken(path):
        return path
    return str(_free_name(Path(path), tag))


# The tag of a folder's free name: one for every file of the folder, not each file's own.
FOLDER_TAG = "folder"


def free_folders(base: str | Path, below: str) -> str:
    """`below`, a path to make under `base`, with each folder of it that is there already
    as something else (an input of that name, archived or quarantined before a folder of
    the name came) given the first name beside it that is free or such a folder already:
    `y.csv/a.csv` goes to `y-folder.csv/a.csv`, and so does `y.csv/b.csv`."""
    *folders, name = below.split("/")
    at = str(base)
    for i, folder in enumerate(folders):
        path = os.path.join(at, folder)
        if _taken(path) and not os.path.isdir(path):
            stem, dot, rest = folder.partition(".")
            for n in range(1, 10_000):
                suffix = f"-{FOLDER_TAG}" if n == 1 else f"-{FOLDER_TAG}-{n}"
                path = os.path.join(at, _named(stem, suffix, dot + rest, 0))
                if not _taken(path) or os.path.isdir(path):
                    break
            folders[i] = os.path.basename(path)
        at = path
    return "/".join([*folders, name])


T = TypeVar("T")


def _clearing(place: Callable[[bool], T]) -> T:
    """`place(False)`; if a folder on its way is a file there, `place(True)`, which gives
    such folders free names (`free_folders`)."""
    try:
        return place(False)
    except (NotADirectoryError, FileExistsError):
        return place(True)


def _move(source: str | Path, target: str | Path, made: set[str] | None = None) -> None:
    """Move `source` to `target`, a free name; `made`: folders known to exist, which a
    batch's moves share, so that each is made once, not once per file."""
    folder = os.path.dirname(target)
    if made is None or folder not in made:
        os.makedirs(folder, exist_ok=True)
        if made is not None:
            made.add(folder)
    try:
        _rename(source, target)
    except FileNotFoundError:
        if made is None or not os.path.lexists(source):
            raise
        # The folder was removed since this flush made it (a sync job tidying the archive).
        made.discard(folder)
        os.makedirs(folder, exist_ok=True)
        _rename(source, target)


def _rename(source: str | Path, target: str | Path) -> None:
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # On another device: shutil.move copies, then deletes.
        shutil.move(source, target)


def _copy_input(source: str | Path, target: Path) -> None:
    """Copy an input, with its times, only while it is a regular file: a device put in
    its place (a symlink to /dev/zero) would be copied until the disk is full."""
    with open(source, "rb", opener=regular.opener) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copystat(source, target)


def _is_version(path: str | Path, file: DropFile) -> bool:
    """`path` still holds the version of `file` that was read (same size and mtime)."""
    st = os.stat(path)
    return (st.st_size, mtime_ns(st)) == (file.size, file.mtime_ns)


def after_success(
    layout: Layout, file: DropFile, sha256: str, on_success: str, made: set[str] | None = None
) -> None:
    """Archive, delete or keep an input whose rows are committed (or a duplicate's).

    Only the version that was read is disposed of: a file appended to, or replaced
    by a new version, since it was read stays in the drop folder to be read again.
    `made`: the archive's folders this caller has made, shared over a batch.
    """
    if on_success == "keep":
        return
    try:
        if not _is_version(file.path, file):
            log.info("%s changed since it was read; its new version stays", file.rel)
            return
        if on_success == "delete":
            os.unlink(file.path)
            return
        target = _archive(layout, file, sha256[:8], made)
        if target is not None and not _is_version(target, file):
            # It changed between the look and the move: give the new version back.
            back = _free_name(Path(file.path), "changed")
            _move(target, back)
            log.warning("%s changed as it was archived; put back as %s", file.rel, back.name)
    except FileNotFoundError:
        pass  # already disposed of, by us before a crash or by someone else
    except OSError as exc:
        log.error("could not %s %s: %s", on_success, file.rel, exc)


def _quarantine_name(layout: Layout, file: DropFile, tag: str) -> Path:
    """Where a bad input goes in the quarantine, its folder made: its path there, or a
    free name beside it."""
    below = layout.below_drop(file.path)

    def place(clear: bool) -> Path:
        where = free_folders(layout.quarantine, below) if clear else below
        target = _free_name(layout.quarantine / where, tag, len(REPORT_SUFFIX + ".tmp"))
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    return _clearing(place)


def _archive(layout: Layout, file: DropFile, tag: str, made: set[str] | None) -> str | None:
    """Move an input to the archive: where it went, or None for a symlink, whose file is
    copied there (`_archive_link`)."""

    def place(clear: bool) -> str | None:
        target = _archive_name(layout, file, tag, clear)
        if os.path.islink(file.path):
            _archive_link(file, target)
            return None
        _move(file.path, target, made)
        return target

    return _clearing(place)


def _archive_link(file: DropFile, target: str) -> None:
    """An input that is a symlink (to a file in the drop folder): its bytes are what was
    ingested, and the link, moved to the archive, would point nowhere from there. The
    file it names is copied there (through a temporary name), and the link removed; but
    a copy that is not the version read is dropped, and the link stays to be read again."""
    folder, name = os.path.split(target)
    os.makedirs(folder, exist_ok=True)
    part = os.path.join(folder, f".{name}.part")
    shutil.copy2(file.path, part)  # its mtime too, for the check
    if not _is_version(part, file):
        os.unlink(part)
        log.info("%s changed since it was read; its new version stays", file.rel)
        return
    os.rename(part, target)
    os.unlink(file.path)


def sha256_of(path: str | Path) -> str:
    """The sha256 of an input no worker returned one for (it killed or hung the worker);
    "" if it is gone or unreadable by now."""
    try:
        with open(path, "rb", opener=regular.opener) as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return ""


def error_report(file: DropFile, sha256: str, failure: Failure, attempts: int) -> dict[str, object]:
    report: dict[str, object] = {
        "file": file.rel,
        "error": failure.error,
        "message": failure.message,
        "attempts": attempts,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sha256": sha256,
        "size": file.size,
    }
    if failure.line is not None:
        report["line"] = failure.line
    if failure.offset is not None:
        report["offset"] = failure.offset
    return report


def quarantine(
    layout: Layout, file: DropFile, sha256: str, failure: Failure, attempts: int, keep: bool
) -> Path | None:
    """Move (or, in keep mode, copy) a bad input to quarantine/ beside <name>.error.json.

    Never raises: the ledger already holds the verdict, and a failure here is logged
    and finished at the next start-up, when the file is found still in the drop folder.
    """
    try:
        target = _quarantine_name(layout, file, sha256[:8] or "nohash")
        report = target.with_name(target.name + REPORT_SUFFIX)
        temp = report.with_name(report.name + ".tmp")
        temp.write_text(
            json.dumps(error_report(file, sha256, failure, attempts), indent=2) + "\n"
        )
        os.replace(temp, report)
        if keep:
            _copy_input(file.path, target)
        elif _is_version(file.path, file):
            _move(file.path, target)
        else:
            log.info("%s changed since it was read; its new version stays", file.rel)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("could not quarantine %s: %s", file.rel, exc)
        return None
    return target
