"""The ledger's record of files that vanished: seen in the drop folder, gone before read.

Runs wherever the ledger runs: a thread of the main process, or a command. The
functions take the ledger's connection, inside a transaction the ledger opened;
`Ledger` is their only caller.

A vanished version is a fact for `ingest explain`, never a fate of an input: the
file was deleted or moved away before it settled or before it was read, so no row
of it was read and nothing was disposed of. It has a table of its own, apart from
`files`, so that what the service knows at start-up (`Ledger.known`), the counts of
`ingest status` and every lookup by (path, size, mtime) never see it: a file dropped
later under the same name, even with the same size and mtime, is a new input.
`ingest ledger rebuild` cannot find these again (nothing of them is on disk), and
starts the table empty.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS vanished (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,          -- as last seen
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,           -- '' when it vanished before it was hashed
    seen_at REAL,
    done_at REAL NOT NULL           -- when it was found gone
);
CREATE INDEX IF NOT EXISTS vanished_path ON vanished (path);
"""
STATE = "vanished"

Row = tuple[str, int, int, str, float | None, float]  # path, size, mtime_ns, sha256, seen, done


def add(db: sqlite3.Connection, rows: Iterable[Row]) -> None:
    db.executemany(
        "INSERT INTO vanished (path, size, mtime_ns, sha256, seen_at, done_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def of(db: sqlite3.Connection, path: str) -> list[Row]:
    """The vanished versions of `path`, oldest first; none in a ledger from before them
    (opened read-only, so without the table)."""
    try:
        return db.execute(
            "SELECT path, size, mtime_ns, sha256, seen_at, done_at FROM vanished"
            " WHERE path = ? ORDER BY id",
            (path,),
        ).fetchall()
    except sqlite3.OperationalError:
        return []


def count(db: sqlite3.Connection) -> int:
    try:
        return int(db.execute("SELECT COUNT(*) FROM vanished").fetchone()[0])
    except sqlite3.OperationalError:  # a ledger from before them, opened read-only
        return 0
