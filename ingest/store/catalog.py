"""The ledger's catalog of part files: one row per file, its table, partition and inputs.

Runs wherever the ledger runs: a thread of the main process, or a command. The
functions take the ledger's connection, inside a transaction the ledger opened;
`Ledger` is their only caller.

A part file is *pending* from before its rename until its commit, then *committed*.
A compaction or a rewrite (`compact.py`) replaces committed files by new ones: it
records a *swap* with the old and the new paths while the new ones are staged, and
in one transaction, once the swap is done, drops the old files' rows and commits
the new ones. Which part holds an input's rows (`part_inputs`) moves with it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS part_files (
    path TEXT PRIMARY KEY,          -- relative to the output folder, "/"-separated
    part_id TEXT NOT NULL,          -- the commit or the swap that made it
    table_name TEXT NOT NULL,
    day TEXT NOT NULL,              -- the ingest_date partition
    state TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS part_files_partition ON part_files (table_name, day, state);
CREATE INDEX IF NOT EXISTS part_files_part ON part_files (part_id);
CREATE TABLE IF NOT EXISTS part_inputs (
    path TEXT NOT NULL,
    source_file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (path, source_file, sha256)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS part_inputs_source ON part_inputs (source_file, sha256);
CREATE TABLE IF NOT EXISTS swaps (
    id TEXT PRIMARY KEY,
    table_name TEXT NOT NULL,
    day TEXT,                       -- NULL: the whole table is swapped
    stage TEXT NOT NULL,            -- the staging folder, relative to the output folder
    old TEXT NOT NULL,              -- JSON list of the part files it replaces
    new TEXT NOT NULL,              -- JSON list of the part files it brings
    state TEXT NOT NULL CHECK (state IN ('staged', 'committed')),
    created REAL NOT NULL
);
"""
MIGRATED = "catalog"

Holds = Mapping[str, Iterable[tuple[str, str]]]  # part path -> its inputs (source_file, sha256)


@dataclass(frozen=True)
class PartFile:
    path: str
    table: str
    day: str
    bytes: int


@dataclass(frozen=True)
class Swap:
    """A compaction or rewrite between staging and the removal of what it replaced."""

    id: str
    table: str
    day: str | None
    stage: str
    old: list[str]
    new: list[str]
    state: str


def split(path: str) -> tuple[str, str]:
    """`<table>/ingest_date=<day>/<name>` -> (table, day)."""
    table, partition, _ = path.split("/", 2)
    return table, partition.removeprefix("ingest_date=")


def migrate(db: sqlite3.Connection) -> None:
    """Fill the catalog of a ledger written before it existed, from its `parts` and `files`:
    each input is taken to be in every file of its commit (a part's footer is exact; a
    compaction reads footers, so it makes the catalog exact again)."""
    if db.execute("SELECT 1 FROM meta WHERE key = ?", (MIGRATED,)).fetchone():
        return
    rows = db.execute("SELECT id, state, paths FROM parts").fetchall()
    paths_of = {part_id: json.loads(paths) for part_id, _, paths in rows}
    add_files(db, [(part_id, path, state, 0) for part_id, state, _ in rows
                   for path in paths_of[part_id]])
    db.executemany(
        "INSERT OR IGNORE INTO part_inputs VALUES (?, ?, ?)",
        [
            (path, source_file, sha256)
            for part_id, source_file, sha256 in db.execute(
                "SELECT part, path, sha256 FROM files WHERE state = 'ingested' AND part IS NOT NULL"
            ).fetchall()
            for path in paths_of.get(part_id, [])
        ],
    )
    db.execute("INSERT INTO meta (key, value) VALUES (?, '1')", (MIGRATED,))


def add_files(db: sqlite3.Connection, rows: Iterable[tuple[str, str, str, int]]) -> None:
    """Rows of (part_id, path, state, bytes)."""
    db.executemany(
        "INSERT OR REPLACE INTO part_files (path, part_id, table_name, day, state, bytes)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(path, part_id, *split(path), state, size) for part_id, path, state, size in rows],
    )


def commit_files(db: sqlite3.Connection, part_id: str, holds: Holds) -> None:
    db.execute("UPDATE part_files SET state = 'committed' WHERE part_id = ?", (part_id,))
    db.executemany(
        "INSERT OR IGNORE INTO part_inputs VALUES (?, ?, ?)",
        [(path, f, sha) for path, inputs in holds.items() for f, sha in inputs],
    )


def hold_recorded(db: sqlite3.Connection, part_id: str, paths: Iterable[str], last: int) -> None:
    """Each of `paths` holds every input recorded for `part_id` in rows of `files` after
    row `last`: copied inside SQLite, not bound row by row, for a part of two thousand."""
    db.executemany(
        "INSERT OR IGNORE INTO part_inputs SELECT ?, path, sha256 FROM files"
        " WHERE id > ? AND part = ?",
        [(path, last, part_id) for path in paths],
    )


def paths_of(db: sqlite3.Connection, part_id: str) -> list[str]:
    return [p for (p,) in db.execute(
        "SELECT path FROM part_files WHERE part_id = ? ORDER BY path", (part_id,))]


def begin_swap(db: sqlite3.Connection, swap: Swap, sizes: Mapping[str, int]) -> None:
    db.execute(
        "INSERT INTO swaps VALUES (?, ?, ?, ?, ?, ?, 'staged', ?)",
        (swap.id, swap.table, swap.day, swap.stage, json.dumps(swap.old), json.dumps(swap.new),
         time.time()),
    )
    add_files(db, [(swap.id, path, "pending", sizes.get(path, 0)) for path in swap.new])


def finish_swap(db: sqlite3.Connection, swap_id: str, holds: Holds) -> None:
    """The new files take the old ones' place, in the catalog as on disk."""
    (old,) = db.execute("SELECT old FROM swaps WHERE id = ?", (swap_id,)).fetchone()
    gone = [(path,) for path in json.loads(old)]
    db.executemany("DELETE FROM part_files WHERE path = ?", gone)
    db.executemany("DELETE FROM part_inputs WHERE path = ?", gone)
    commit_files(db, swap_id, holds)
    db.execute("UPDATE swaps SET state = 'committed' WHERE id = ?", (swap_id,))


def drop_swap(db: sqlite3.Connection, swap_id: str) -> None:
    """Forget a swap: undone (its new files' rows go), or finished (only the record goes)."""
    db.execute("DELETE FROM part_files WHERE part_id = ? AND state = 'pending'", (swap_id,))
    db.execute("DELETE FROM swaps WHERE id = ?", (swap_id,))


def swaps(db: sqlite3.Connection) -> list[Swap]:
    rows = db.execute(
        "SELECT id, table_name, day, stage, old, new, state FROM swaps ORDER BY id"
    ).fetchall()
    return [Swap(i, t, d, s, json.loads(o), json.loads(n), st) for i, t, d, s, o, n, st in rows]


def committed(db: sqlite3.Connection, table: str, day: str | None) -> list[PartFile]:
    """A partition's committed files (every partition of the table if `day` is None)."""
    query = (
        "SELECT path, table_name, day, bytes FROM part_files"
        " WHERE table_name = ? AND state = 'committed'"
    )
    args: tuple[str, ...] = (table,)
    if day is not None:
        query, args = query + " AND day = ?", (table, day)
    return [PartFile(*row) for row in db.execute(query + " ORDER BY path", args)]


def partitions(db: sqlite3.Connection) -> list[tuple[str, str, int, int]]:
    """(table, day, committed files, their bytes), every partition with a committed file."""
    return [tuple(row) for row in db.execute(
        "SELECT table_name, day, count(*), sum(bytes) FROM part_files"
        " WHERE state = 'committed' GROUP BY table_name, day ORDER BY table_name, day"
    )]


def parts_of(db: sqlite3.Connection, source_file: str, sha256: str) -> list[str]:
    return [p for (p,) in db.execute(
        "SELECT i.path FROM part_inputs i JOIN part_files f ON f.path = i.path"
        " WHERE i.source_file = ? AND i.sha256 = ? AND f.state = 'committed' ORDER BY i.path",
        (source_file, sha256),
    )]
