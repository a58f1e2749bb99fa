"""The ledger's catalog of part files: one row per file, its table, partition and inputs.

Runs wherever the ledger runs: a thread of the main process, or a command. The
functions take the ledger's connection, inside a transaction the ledger opened;
`Ledger` is their only caller.

A part file is *pending* from before its rename until its commit, then *committed*.
A compaction or a rewrite (`compact.py`) replaces committed files by new ones: it
records a *swap* with the old and the new paths while the new ones are staged, and
in one transaction, once the swap is done, drops the old files' rows and commits
the new ones. Which part holds an input's rows (`part_holds`) moves with it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PART_FILES = (
    """CREATE TABLE IF NOT EXISTS part_files (
    -- What part_holds names it by; never given again, so that no new file is taken to
    -- hold what a removed one held.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,      -- relative to the output folder, "/"-separated
    part_id TEXT NOT NULL,          -- the commit or the swap that made it
    table_name TEXT NOT NULL,
    day TEXT NOT NULL,              -- the ingest_date partition
    state TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
    bytes INTEGER NOT NULL DEFAULT 0
)""",
    "CREATE INDEX IF NOT EXISTS part_files_partition ON part_files (table_name, day, state)",
    "CREATE INDEX IF NOT EXISTS part_files_part ON part_files (part_id)",
)
# Which part file holds which input, by their rows' ids: a row for each part file and
# input, kept for ever, so it is two integers (about 40 bytes with its index, where the
# paths and the sha256 took 400; `python -m bench.ledger_rows`).
SCHEMA = ";\n".join(PART_FILES) + """;
CREATE TABLE IF NOT EXISTS part_holds (
    part INTEGER NOT NULL,          -- part_files.id
    input INTEGER NOT NULL,         -- files.id: the input's row as ingested
    PRIMARY KEY (part, input)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS part_holds_input ON part_holds (input);
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
# A part file holds an input, named by its path and sha256, whose row id its caller does
# not know. Found by its path, this reads every version of the name recorded (a device's
# `readings.csv`, dropped again each minute), or by its sha256 once a ledger is large
# enough to index them; `+state`: the state index matches most rows, and the planner
# would take it over either.
HOLD = (
    "INSERT OR IGNORE INTO part_holds SELECT p.id, f.id FROM part_files p, files f"
    " WHERE p.path = ? AND f.path = ? AND f.sha256 = ? AND +f.state = 'ingested'"
)
# The inputs recorded after a row of `files`, by path and sha256: a commit's own.
RECORDED_SINCE = "SELECT path, sha256, id FROM files WHERE id > ? AND state = 'ingested'"
# The inputs a part file holds, by path and sha256.
HELD_BY = (
    "SELECT f.path, f.sha256, f.id FROM part_files p JOIN part_holds h ON h.part = p.id"
    " JOIN files f ON f.id = h.input WHERE p.path = ?"
)
# A part file holds every input recorded with its part after a row of `files`.
HOLD_RECORDED = (
    "INSERT OR IGNORE INTO part_holds SELECT p.id, f.id FROM part_files p, files f"
    " WHERE p.path = ? AND f.id > ? AND f.part = ?"
)
# What a part file holds, let go of as it is replaced.
LET_GO = "DELETE FROM part_holds WHERE part = (SELECT id FROM part_files WHERE path = ?)"
# The committed part files that hold an input, by its path and sha256.
PARTS_OF = (
    "SELECT DISTINCT p.path FROM files f JOIN part_holds h ON h.input = f.id"
    " JOIN part_files p ON p.id = h.part"
    " WHERE f.path = ? AND f.sha256 = ? AND p.state = 'committed' ORDER BY p.path"
)

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
    """Bring a ledger written by an earlier release to this catalog: one from before the
    catalog is filled from its `parts` and `files` (each input is taken to be in every
    file of its commit: a part's footer is exact, and a compaction reads footers, so it
    makes the catalog exact again); one whose catalog named part files and inputs by
    their paths and sha256 (`part_inputs`) has them named by their rows' ids."""
    _number_part_files(db)
    _hold_by_ids(db)
    if db.execute("SELECT 1 FROM meta WHERE key = ?", (MIGRATED,)).fetchone():
        return
    rows = db.execute("SELECT id, state, paths FROM parts").fetchall()
    add_files(db, [(part_id, path, state, 0) for part_id, state, paths in rows
                   for path in json.loads(paths)])
    db.execute(
        "INSERT OR IGNORE INTO part_holds SELECT p.id, f.id FROM files f"
        " JOIN part_files p ON p.part_id = f.part"
        " WHERE f.state = 'ingested' AND f.part IS NOT NULL"
    )
    db.execute("INSERT INTO meta (key, value) VALUES (?, '1')", (MIGRATED,))


def _number_part_files(db: sqlite3.Connection) -> None:
    """`part_files` keyed by its path alone, as it was made before `part_holds`, is made
    again with an id for each file."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(part_files)")}
    if "id" in columns:
        return
    db.execute("ALTER TABLE part_files RENAME TO part_files_by_path")
    table, *indexes = PART_FILES
    db.execute(table)
    db.execute(
        "INSERT INTO part_files (path, part_id, table_name, day, state, bytes)"
        " SELECT path, part_id, table_name, day, state, bytes FROM part_files_by_path"
    )
    db.execute("DROP TABLE part_files_by_path")  # and its indexes, whose names are reused
    for index in indexes:
        db.execute(index)


def _hold_by_ids(db: sqlite3.Connection) -> None:
    """`part_inputs` (part path, input path, sha256), as earlier releases wrote it, into
    `part_holds`; an input is its ingested row."""
    if not _exists(db, "part_inputs"):
        return
    db.execute(
        "INSERT OR IGNORE INTO part_holds SELECT p.id, f.id FROM part_inputs i"
        " JOIN part_files p ON p.path = i.path"
        " JOIN files f ON f.path = i.source_file AND f.sha256 = i.sha256"
        " WHERE f.state = 'ingested'"
    )
    db.execute("DROP TABLE part_inputs")
    # An earlier release run on a ledger this one made removes part files' rows and not
    # what they held, which then names no file.
    db.execute("DELETE FROM part_holds WHERE part NOT IN (SELECT id FROM part_files)")


def add_files(db: sqlite3.Connection, rows: Iterable[tuple[str, str, str, int]]) -> None:
    """Rows of (part_id, path, state, bytes). A path recorded already keeps its id, and
    with it the inputs it holds."""
    db.executemany(
        "INSERT INTO part_files (path, part_id, table_name, day, state, bytes)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
        " part_id = excluded.part_id, table_name = excluded.table_name, day = excluded.day,"
        " state = excluded.state, bytes = excluded.bytes",
        [(path, part_id, *split(path), state, size) for part_id, path, state, size in rows],
    )


Ids = Mapping[tuple[str, str], int]  # (source_file, sha256) -> its ingested row's id


def recorded_since(db: sqlite3.Connection, last: int) -> dict[tuple[str, str], int]:
    """The ids of the inputs recorded after row `last` (read by the rows' ids alone)."""
    return {(path, sha): row for path, sha, row in db.execute(RECORDED_SINCE, (last,))}


def commit_files(db: sqlite3.Connection, part_id: str, holds: Holds, ids: Ids) -> None:
    """Commit a part's files, and record that each file named in `holds` holds those
    inputs: by the row ids in `ids`, where the caller knows them (a commit's own inputs,
    a compaction's of the files it replaces); else each is looked for (`HOLD`)."""
    db.execute("UPDATE part_files SET state = 'committed' WHERE part_id = ?", (part_id,))
    if not holds:
        return
    numbers = dict(db.execute("SELECT path, id FROM part_files WHERE part_id = ?", (part_id,)))
    known: list[tuple[int, int]] = []
    sought: list[tuple[str, str, str]] = []
    for path, inputs in holds.items():
        for f, sha in inputs:
            row = ids.get((f, sha))
            if row is not None and path in numbers:
                known.append((numbers[path], row))
            else:
                sought.append((path, f, sha))
    db.executemany("INSERT OR IGNORE INTO part_holds VALUES (?, ?)", known)
    db.executemany(HOLD, sought)


def hold(db: sqlite3.Connection, holds: Holds) -> None:
    """Record that each file named in `holds` holds those inputs, each looked for by its
    path and sha256 (`ingest ledger rebuild`, once every input is recorded)."""
    db.executemany(HOLD, [(path, f, sha) for path, inputs in holds.items() for f, sha in inputs])


def hold_recorded(db: sqlite3.Connection, part_id: str, paths: Iterable[str], last: int) -> None:
    """Each of `paths` holds every input recorded for `part_id` in rows of `files` after
    row `last`: copied inside SQLite, not bound row by row, for a part of two thousand."""
    db.executemany(HOLD_RECORDED, [(path, last, part_id) for path in paths])


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
    # The new files hold the old ones' inputs, whose ids these rows already give.
    ids = {(f, sha): row for (path,) in gone for f, sha, row in db.execute(HELD_BY, (path,))}
    db.executemany(LET_GO, gone)
    db.executemany("DELETE FROM part_files WHERE path = ?", gone)
    commit_files(db, swap_id, holds, ids)
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


def _exists(db: sqlite3.Connection, table: str) -> bool:
    return bool(db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone())


def parts_of(db: sqlite3.Connection, source_file: str, sha256: str) -> list[str]:
    # An earlier release's catalog, opened read only: before, while or after its move
    # failed (which drops `part_inputs` as it commits), or written by that release again.
    if _exists(db, "part_inputs"):
        return [p for (p,) in db.execute(
            "SELECT i.path FROM part_inputs i JOIN part_files f ON f.path = i.path"
            " WHERE i.source_file = ? AND i.sha256 = ? AND f.state = 'committed'"
            " ORDER BY i.path",
            (source_file, sha256),
        )]
    return [p for (p,) in db.execute(PARTS_OF, (source_file, sha256))]
