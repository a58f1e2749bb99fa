"""`ingest ledger rebuild`: a new ledger from what the output and quarantine folders hold.

Every complete part file names its inputs in its footer (`ingest.sources`), and
every quarantined input has its `<name>.error.json`; together they are enough
to know what was ingested, so nothing is ingested twice after a lost ledger. With
Delta tables, a part file no table's log names was never committed: it is set aside.
Inputs still in the drop folder are then recognised by content (sha256) and
known again: an input still in the drop folder with the content a part names
is recorded with its size and mtime, as the lost ledger had it, so the next run
skips it unread. The old ledger, if any, is kept beside the new one.

The new ledger is written beside the old one and put in its place only when whole, by
one rename (`_put_in_place`), so a rebuild stopped at any moment (Ctrl-C, SIGTERM,
kill -9) leaves the old ledger or the new one: a ledger half rebuilt would have the next
run set aside, as unknown, every part it had not reached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import sqlite3
import stat
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq

from .. import regular
from ..files import mtime_ns
from ..partfile import FOOTER_SOURCES
from ..progress import command_bar
from . import schema
from .fsync import fsync_path
from .layout import Layout, on_disk
from .ledger import FileRecord, Ledger
from .swap import unswap

log = logging.getLogger("ingest.rebuild")

PART_NAME = re.compile(r"^part-(?P<id>.+)-(?P<index>\d+)\.parquet$")


# A ledger is its file and, while in WAL mode, its write-ahead log and that log's index.
SUFFIXES = ("", "-wal", "-shm")


def _checkpoint(ledger: Path) -> None:
    """Fold the old ledger's write-ahead log into its file, if it opens: a run killed
    with kill -9 leaves commits in the log that the file alone lacks."""
    if not ledger.exists():
        return
    try:
        db = sqlite3.connect(ledger)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
    except sqlite3.DatabaseError:
        pass  # damaged, which may be why it is rebuilt: its log is kept aside with it


def _kept_name(layout: Layout) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    kept = layout.ledger.with_name(f"{layout.ledger.name}.before-rebuild-{stamp}")
    n = 1
    while any(Path(f"{kept}{suffix}").exists() for suffix in SUFFIXES):
        n += 1
        kept = kept.with_name(f"{layout.ledger.name}.before-rebuild-{stamp}-{n}")
    return kept


def _remove(ledger: Path) -> None:
    for suffix in SUFFIXES:
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)


def _put_in_place(layout: Layout, built: Path) -> Path | None:
    """The new ledger in place of the old one, which is kept under another name; returns
    that name. The old files are linked to it first and the old log removed (its commits
    are in the file since `_checkpoint`), so that the one rename that follows leaves, at
    every instant, one ledger or the other whole: never none, and never the new file
    beside the old file's log, which SQLite would read into it."""
    old = [suffix for suffix in SUFFIXES if Path(f"{layout.ledger}{suffix}").exists()]
    kept = _kept_name(layout) if old else None
    for suffix in old:
        source, target = Path(f"{layout.ledger}{suffix}"), Path(f"{kept}{suffix}")
        try:
            os.link(source, target)
        except OSError:  # a filesystem without hard links
            shutil.copy2(source, target)
    for suffix in SUFFIXES[1:]:
        Path(f"{layout.ledger}{suffix}").unlink(missing_ok=True)
    os.replace(built, layout.ledger)
    fsync_path(layout.state)
    return kept if "" in old else None


def _parts(layout: Layout) -> tuple[dict[str, list[Path]], list[Path]]:
    """Complete part files grouped by part id, and the files that are not complete parts."""
    parts: dict[str, list[Path]] = defaultdict(list)
    broken: list[Path] = []
    for table in layout.tables():
        for path in sorted((layout.output / table).rglob("*")):
            if not path.is_file() or "_delta_log" in path.parts:
                continue
            match = PART_NAME.match(path.name)
            try:
                if match is None:
                    raise ValueError("not a part file name")
                pq.read_metadata(path)
            except (OSError, ValueError):
                broken.append(path)
                continue
            parts[match["id"]].append(path)
    return parts, broken


Sources = dict[Path, list[tuple[str, str, int]]]


def _sources(paths: list[Path]) -> Sources:
    """The inputs each part file names in its footer: (path, sha256, rows)."""
    found: Sources = {}
    for path in paths:
        footer = pq.read_metadata(path).metadata or {}
        named = json.loads(footer.get(FOOTER_SOURCES, b"[]"))
        found[path] = [(str(rel), str(sha), int(rows)) for rel, sha, rows in named]
    return found


def _ingested(
    part_id: str, paths: list[Path], sources: Sources, seen: set[str]
) -> list[FileRecord]:
    # Records parts name every input; a features-only dataset names them in features parts.
    # A file read in blocks has several records parts in one commit, each naming its rows.
    tables = {p.parents[1].name for p in paths}
    records_tables = tables - {"features"} or {"features"}
    rows_of: dict[tuple[str, str], int] = defaultdict(int)
    table_of: dict[tuple[str, str], str] = {}
    done = 0.0
    for path in paths:
        table = path.parents[1].name
        if table not in records_tables:
            continue
        done = max(done, path.stat().st_mtime)
        for rel, sha256, rows in sources[path]:
            rows_of[(rel, sha256)] += rows
            table_of[(rel, sha256)] = "records" if table == "features" else table
    records: list[FileRecord] = []
    for (rel, sha256), rows in rows_of.items():
        if sha256 in seen:
            if table != "features":  # a compacted features file names inputs seen before
                log.warning("part %s: %s appears in more than one commit", part_id, rel)
            continue
        seen.add(sha256)
        records.append(FileRecord(
            rel, -1, -1, sha256, "ingested", rows, part_id, done_at=done,
            table=table_of[(rel, sha256)],
        ))
    return records


def _records_first(item: tuple[str, list[Path]]) -> tuple[bool, str]:
    part_id, paths = item
    return all(p.parents[1].name == "features" for p in paths), part_id


def _holds(
    rels: list[str], paths: list[Path], sources: Sources
) -> dict[str, list[tuple[str, str]]]:
    """The inputs each part file holds, from its footer, for the ledger's catalog."""
    return {rel: [(f, sha) for f, sha, _ in sources[path]]
            for rel, path in zip(rels, paths, strict=True)}


def _in_drop(layout: Layout, record: FileRecord) -> FileRecord:
    """The record with the size and mtime of its input, if that is still in the drop folder
    with the same content; else as it was (-1: matched by content alone)."""
    # The name on disk: the ledger holds a name that is not UTF-8 as shown (`layout.shown`).
    names = on_disk(record.path)
    path = layout.drop / next((n for n in names if os.path.exists(layout.drop / n)), names[0])
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            return record  # never open a FIFO or a device
        with open(path, "rb", opener=regular.opener) as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        after = os.stat(path)
    except OSError:
        return record
    same = (before.st_size, mtime_ns(before)) == (after.st_size, mtime_ns(after))
    if digest != record.sha256 or not same:
        return record
    return replace(record, size=after.st_size, mtime_ns=mtime_ns(after))


def _quarantined(layout: Layout) -> list[FileRecord]:
    records: list[FileRecord] = []
    for report in sorted(layout.quarantine.rglob("*.error.json")):
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError):
            continue
        # The quarantined copy keeps the input's mtime (moved, or copied with copy2), so
        # the input, if still in the drop folder, is known again by its (path, size, mtime).
        copy = report.with_name(report.name.removesuffix(".error.json"))
        size, mtime = int(data.get("size", -1)), -1
        if copy.exists():
            size, mtime = copy.stat().st_size, mtime_ns(copy.stat())
        records.append(FileRecord(
            str(data.get("file")), size, mtime, str(data.get("sha256", "")),
            "quarantined", error=str(data.get("error")), message=str(data.get("message")),
            attempts=int(data.get("attempts", 1)), done_at=report.stat().st_mtime,
        ))
    return records


def _not_in_delta_logs(layout: Layout, parts: dict[str, list[Path]]) -> list[Path]:
    """With Delta, the log says which parts were committed: a part none of whose files a
    table's log names was interrupted before its Delta commit, and is set aside. (One the
    log names for one table but not another is kept; start-up adds it to the other log.)"""
    from . import delta

    logged = {t: delta.files(layout, t) for t in layout.tables()
              if delta.open_table(layout, t) is not None}
    dropped: list[Path] = []
    for part_id, paths in list(parts.items()):
        rels = [p.relative_to(layout.output).as_posix() for p in paths]
        judged = [rel for rel in rels if rel.split("/", 1)[0] in logged]
        if judged and not any(rel in logged[rel.split("/", 1)[0]] for rel in judged):
            dropped += parts.pop(part_id)
            log.warning("part %s is in no Delta log: set aside", part_id)
    return dropped


def _undo_unlogged_swaps(layout: Layout) -> None:
    """With Delta: a compaction cut short after its swap and before its Delta commit (a
    kill -9) left its partition holding the merged parts, which no log names, and its
    staging folder holding the old ones, which the log names. The ledger's record of the
    swap would finish it at the next start, log included; without it, the merged parts
    would be set aside here and the staging folder removed at that start, and the rows
    with them. The old parts go back in place instead, as the log has them."""
    from . import delta

    missing: list[str] = []  # parts the logs name, not on disk
    for table in layout.tables():
        if delta.open_table(layout, table) is not None:
            missing += [rel for rel in sorted(delta.files(layout, table))
                        if not (layout.output / rel).exists()]
    if not missing:
        return
    for root in sorted(layout.state.glob("swap-*")):
        for held in sorted(p for p in root.iterdir() if p.is_dir()):
            live = next((found for rel in missing
                         if (found := _swapped_out(layout, held, rel)) is not None), None)
            if live is None:
                continue
            if live.exists():
                unswap(live, root / live.name, held)
            else:  # cut short between the fallback's two renames
                os.rename(held, live)
            fsync_path(live.parent)
            shutil.rmtree(root)
            log.warning(
                "a compaction of %s was cut short before its Delta commit: its parts put"
                " back as the log names them", live,
            )
            break


def _swapped_out(layout: Layout, held: Path, rel: str) -> Path | None:
    """The live folder a swap's staging folder `held` was in the place of, if it holds
    the part `rel`: a day's folder (a compaction), or its table's (a rewrite to a wider
    schema, which swaps every day at once)."""
    table, _, below = rel.partition("/")
    if (held / posixpath.basename(rel)).is_file():
        return (layout.output / rel).parent
    if (held / below).is_file():
        return layout.output / table
    return None


def rebuild(layout: Layout) -> dict[str, int]:
    """Write a fresh ledger; return what it now holds."""
    layout.make_dirs()
    built = layout.ledger.with_name(f"{layout.ledger.name}.rebuilding")
    _remove(built)  # what a rebuild stopped before left
    _checkpoint(layout.ledger)
    if layout.delta:
        _undo_unlogged_swaps(layout)
    parts, broken = _parts(layout)
    if layout.delta:
        broken += _not_in_delta_logs(layout, parts)
    for path in broken:
        layout.orphans.mkdir(parents=True, exist_ok=True)
        shutil.move(path, layout.orphans / f"{path.parent.parent.name}-{path.name}")
    ledger: Ledger | None = None
    seen: set[str] = set()
    ingested = 0
    try:
        ledger = Ledger(built)
        # Commits first, then the files compaction made of features alone: an input is
        # recorded from its records part, where there is one.
        held: dict[str, list[tuple[str, str]]] = {}  # inputs not recorded when met
        # A part reads its footers and hashes its inputs still in the drop folder, and a
        # large output has tens of thousands.
        with command_bar("rebuild", "commits") as bar:
            for part_id, paths in bar.track(
                sorted(parts.items(), key=_records_first), total=len(parts)
            ):
                rels = [p.relative_to(layout.output).as_posix() for p in paths]
                sources = _sources(paths)
                ledger.begin_part(part_id, rels, [p.stat().st_size for p in paths])
                files = [_in_drop(layout, record)
                         for record in _ingested(part_id, paths, sources, seen)]
                holds = _holds(rels, paths, sources)
                ledger.finish_part(part_id, files, holds)
                ingested += len(files)
                # A part file may hold an input recorded from a later part (its records
                # file, which a compaction of that table alone made anew): placed once all are.
                for rel, inputs in holds.items():
                    if later := [(f, sha) for f, sha in inputs if sha not in seen]:
                        held[rel] = later
        if held:
            ledger.index_digests()
            ledger.hold(held)
        quarantined = _quarantined(layout)
        ledger.record(quarantined)
        schema.adopt(ledger, layout)  # each table's schema, as `status` shows it
        ledger.seal()
    except BaseException:  # a signal's exception too: nothing of it may stay
        if ledger is not None:
            ledger.close()
        _remove(built)
        raise
    fsync_path(built)
    kept = _put_in_place(layout, built)
    if kept is not None:
        log.info("the previous ledger is kept as %s", kept)
    return {
        "commits": len(parts), "part files": sum(len(paths) for paths in parts.values()),
        "ingested": ingested, "quarantined": len(quarantined), "set aside": len(broken),
    }
