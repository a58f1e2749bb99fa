"""`ingest explain PATH`: the life of one input, every version of it the ledger knows.

Runs in the command's main thread, beside a running service if there is one: it
opens the ledger read-only and never takes the writer lock, so it can neither
block nor be blocked by a writer. Where an input went is not all in the ledger:
the archived or quarantined copy is found on disk by its name and recognised by
its size and mtime (kept by a move), or by its content, or its `.error.json`.

A version is `ingested`, `duplicate` or `quarantined` once the ledger records its
fate; `vanished` if it was seen and gone before it was read (deleted or moved away by
someone else: nothing of it was read, so it went nowhere of ours); `pending` if it is
in the drop folder now and the ledger has not recorded it yet (waiting to settle, in
flight, or waiting for the next run).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import posixpath
import stat
import time
from pathlib import Path
from typing import Any

from .. import regular
from ..config import Config
from ..files import mtime_ns
from ..selection import TEMP_SUFFIXES, matches, regular_file
from .dispose import FOLDER_TAG, REPORT_SUFFIX
from .layout import Layout, on_disk, shown
from .ledger import FileRecord, Ledger, check_not_lost
from .vanished import STATE as VANISHED

# What a vanished version's input became: nothing we did.
GONE = {"disposal": None, "disposed_to": None, "error_json": None}


def _iso(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp else None


def _inside(layout: Layout, path: Path) -> str | None:
    # The drop folder as named (through a symlink, maybe), and where it is now.
    for drop in (layout.drop, Path(os.path.realpath(layout.drop))):
        for candidate in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
            if candidate.is_relative_to(drop):
                return shown(candidate.relative_to(drop).as_posix())
    return None


def names(layout: Layout, given: str) -> list[str]:
    """What the input may be called below the drop folder: PATH taken relative to the
    drop folder, or absolute; failing that, relative to the working directory, for the
    user who typed `drop/a.csv` beside it."""
    path = Path(given)
    if path.is_absolute():
        rel = _inside(layout, path)
        return [rel] if rel is not None else []
    found: list[str] = []
    rel = shown(posixpath.normpath(path.as_posix()))
    if rel != "." and rel != ".." and not rel.startswith("../"):
        found.append(rel)
    rel_cwd = _inside(layout, path)
    if rel_cwd is not None and rel_cwd not in found:
        found.append(rel_cwd)
    return found


def _candidates(root: Path, rel: str, suffix: str = "") -> list[Path]:
    """Files at `rel` below `root` (plus `suffix`), under its own name or with a tag
    before its suffixes, as `dispose` names a copy when the plain name is taken; in its
    own folders, or with one of them under the free name `dispose.free_folders` gives a
    folder that an input of its name held already."""
    folder, name = posixpath.split(rel)
    stem, dot, rest = name.partition(".")
    last = glob.escape(stem) + "*" + glob.escape(dot + rest + suffix)
    folders = [glob.escape(part) for part in folder.split("/")] if folder else []
    patterns = ["/".join([*folders, last])]
    for i, part in enumerate(folder.split("/") if folder else []):
        part_stem, part_dot, part_rest = part.partition(".")
        free = f"{glob.escape(part_stem)}-{FOLDER_TAG}*{glob.escape(part_dot + part_rest)}"
        patterns.append("/".join([*folders[:i], free, *folders[i + 1:], last]))
    return sorted({path for pattern in patterns for path in root.glob(pattern)})


def _same_version(path: Path, record: FileRecord) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if record.size >= 0 and record.mtime_ns >= 0:
        return (st.st_size, mtime_ns(st)) == (record.size, record.mtime_ns)
    # A rebuilt ledger knows no size or mtime: the content decides.
    try:
        with open(path, "rb", opener=regular.opener) as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest() == record.sha256
    except OSError:  # gone, not a regular file any more, or not readable
        return False


def _archived(layout: Layout, record: FileRecord) -> Path | None:
    # archive/<day>/<rel>: the day is that of the disposal, which start-up may finish later.
    if not layout.archive.is_dir():
        return None
    for day in sorted(layout.archive.iterdir()):
        for name in on_disk(record.path):
            for path in _candidates(day, name):
                if _same_version(path, record):
                    return path
    return None


def _quarantined(layout: Layout, record: FileRecord) -> tuple[Path | None, Path | None]:
    """The quarantined copy and its `.error.json`, matched by the report's file and sha256;
    of two versions with the same bytes, the one whose copy has the version's size and
    mtime (a move keeps it)."""
    reports = (r for name in on_disk(record.path) for r in _candidates(
        layout.quarantine, name, REPORT_SUFFIX))
    found: tuple[Path | None, Path | None] = (None, None)
    for report in reports:
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError):
            continue
        if data.get("file") == record.path and data.get("sha256", "") == record.sha256:
            copy = report.with_name(report.name.removesuffix(REPORT_SUFFIX))
            if copy.exists() and _same_version(copy, record):
                return copy, report
            if found == (None, None):
                found = (copy if copy.exists() else None), report
    return found


def _disposal(config: Config, layout: Layout, record: FileRecord) -> dict[str, Any]:
    """Where the input went: archived, quarantined (with its report), kept or deleted."""
    if record.state == "quarantined":
        copy, report = _quarantined(layout, record)
        return {
            "disposal": "quarantined", "disposed_to": shown(str(copy)) if copy else None,
            "error_json": shown(str(report)) if report else None,
        }
    archived = _archived(layout, record)
    if archived is not None:
        return {"disposal": "archived", "disposed_to": shown(str(archived)), "error_json": None}
    if any(_same_version(layout.drop / name, record) for name in on_disk(record.path)):
        return {"disposal": "kept", "disposed_to": None, "error_json": None}
    deleted = config.watch.on_success == "delete"
    return {"disposal": "deleted" if deleted else None, "disposed_to": None, "error_json": None}


def _version(
    config: Config, layout: Layout, ledger: Ledger, record: FileRecord, table: str
) -> dict[str, Any]:
    ingested = record.state == "ingested"
    quarantined = record.state == "quarantined"
    gone = record.state == VANISHED
    return {
        "sha256": record.sha256 or None,  # a vanished file may never have been hashed
        "state": record.state,
        "rows": record.rows if ingested else None,
        "table": table if ingested else None,
        "reason": record.message if quarantined else None,
        "error": record.error if quarantined else None,
        "parts": ledger.parts_of(record.path, record.sha256) if ingested else [],
        "duplicate_of": record.duplicate_of,
        "size": record.size if record.size >= 0 else None,
        "first_seen": _iso(record.seen_at),
        "committed_at": _iso(record.done_at),
        "dialect": record.dialect,
        # A vanished version's size and mtime may be a later file's: never look for it.
        **(GONE if gone else _disposal(config, layout, record)),
    }


def _pending(config: Config, layout: Layout, rel: str, known: set[tuple[int, int]]) -> Any:
    """The version in the drop folder, if the ledger has not recorded it yet."""
    for name in on_disk(rel):
        path = layout.drop / name
        try:
            if matches(path.name, config.watch.patterns) and regular_file(
                path, layout.drop
            ) is not None:
                break
        except OSError:  # a name too long once shown, say
            continue
    else:
        return None
    try:
        st = path.stat()
        if (st.st_size, mtime_ns(st)) in known:
            return None
        with open(path, "rb", opener=regular.opener) as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:  # gone since, not a regular file any more, or not readable
        return None
    return {
        "sha256": digest, "state": "pending", "rows": None, "table": None, "reason": None,
        "error": None, "parts": [], "duplicate_of": None, "size": st.st_size,
        "first_seen": None, "committed_at": None, "disposal": None, "disposed_to": None,
        "error_json": None,
    }


def passed_by(config: Config, given: str) -> str | None:
    """What the input's name is in the drop folder when the service passes it by, having
    nothing of it in the ledger: not a regular file ("a FIFO", say), or a file no
    `[watch] patterns` entry matches. None: there is nothing under that name."""
    layout = Layout.of(config)
    for rel in names(layout, given):
        for name in on_disk(rel):
            try:
                mode = os.stat(layout.drop / name).st_mode
            except (OSError, ValueError):
                continue
            if not stat.S_ISREG(mode):
                return _KINDS.get(stat.S_IFMT(mode), "not a file")
            if regular_file(layout.drop / name, layout.drop) is None:
                return OUTSIDE
            base = posixpath.basename(name)
            if base.startswith(".") or base.endswith(TEMP_SUFFIXES):
                return UNFINISHED
            if not matches(base, config.watch.patterns):
                return UNMATCHED
    return None


OUTSIDE = "a symlink to a file outside the drop folder"
UNMATCHED = "a file no [watch] patterns entry matches"
UNFINISHED = "a file named as hidden or still being written (.name, *.tmp, *.part, ...)"
_KINDS = {
    stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device", stat.S_IFBLK: "a device",
}


def collect(config: Config, given: str) -> dict[str, Any] | None:
    """Every version of the input, oldest first; None if nothing is known of it."""
    layout = Layout.of(config)
    check_not_lost(layout, "no input's history can be told")
    for rel in names(layout, given):
        report = _report(config, layout, rel)
        if report is not None:
            return report
    return None


def _report(config: Config, layout: Layout, rel: str) -> dict[str, Any] | None:
    versions: list[dict[str, Any]] = []
    known: set[tuple[int, int]] = set()
    if layout.ledger.exists():
        ledger = Ledger(layout.ledger, read_only=True)
        try:
            for record, table in ledger.history(rel):
                versions.append(_version(config, layout, ledger, record, table))
                if record.state != VANISHED:  # the same size and mtime again is a new file
                    known.add((record.size, record.mtime_ns))
        finally:
            ledger.close()
    pending = _pending(config, layout, rel, known)
    if pending is not None:
        versions.append(pending)
    return {"path": rel, "versions": versions} if versions else None


def _fate(version: dict[str, Any]) -> str:
    where = version["disposed_to"]
    return {
        "archived": f"archived to {where}",
        "quarantined": f"in quarantine: {where}" if where else "quarantined copy not found",
        "kept": "kept in the drop folder",
        "deleted": "deleted",
    }.get(version["disposal"] or "", "not found (moved or removed by someone else?)")


def _lines(number: int, version: dict[str, Any]) -> list[str]:
    state = version["state"]
    lines = [
        f"version {number}: {state}",
        f"  sha256:       {version['sha256'] or 'unknown: never read'}",
        f"  size:         {version['size'] if version['size'] is not None else 'unknown'} bytes",
    ]
    if version["first_seen"] or version["committed_at"]:
        lines.append(f"  first seen:   {version['first_seen'] or 'unknown'}")
        lines.append(f"  recorded:     {version['committed_at']}")
    if state == "ingested":
        lines.append(f"  table:        {version['table']}, {version['rows']} rows")
        if version.get("dialect"):
            lines.append(f"  read as:      {version['dialect']}")
        parts = version["parts"] or ["none found"]
        lines.extend(f"  {'parts:' if i == 0 else '':<14}{p}" for i, p in enumerate(parts))
    if state == "quarantined":
        lines.append(f"  reason:       {version['error']}: {version['reason']}")
        lines.append(f"  report:       {version['error_json'] or 'not found'}")
    if state == "duplicate":
        lines.append(f"  duplicate of: {version['duplicate_of']}")
    if state == VANISHED:
        lines.append("  input:        gone before it was read (deleted or moved by someone else)")
    elif state != "pending":
        lines.append(f"  input:        {_fate(version)}")
    return lines


def render(report: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(report, indent=2)
    lines = [report["path"]]
    for number, version in enumerate(report["versions"], 1):
        lines.extend(_lines(number, version))
    return "\n".join(lines)
