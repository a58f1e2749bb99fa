"""The ledger: one SQLite database that says what happened to every input.

Called from a thread, never on the event loop. Every change is one
transaction, and the order of those transactions is what makes a crash at
any instant safe (see `parts.py` for the protocol):

1. `begin_part` records a part's final paths as *pending* before any rename;
2. the part files are renamed into place;
3. `finish_part` marks the part *committed* and records its input files, at once.

At start-up `pending_parts` lists what a crash interrupted between 1 and 3; the
caller removes those parts' files, and their inputs, unrecorded, are read again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from ..errors import LedgerError

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ingested', 'duplicate', 'quarantined')),
    rows INTEGER,
    part TEXT,
    duplicate_of TEXT,
    error TEXT,
    message TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    seen_at REAL,
    done_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_key ON files (path, size, mtime_ns);
CREATE INDEX IF NOT EXISTS files_sha ON files (sha256);
CREATE INDEX IF NOT EXISTS files_state ON files (state);
CREATE TABLE IF NOT EXISTS parts (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
    paths TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class FileRecord:
    """One input's final state, as the ledger stores it."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    state: str
    rows: int | None = None
    part: str | None = None
    duplicate_of: str | None = None
    error: str | None = None
    message: str | None = None
    attempts: int = 1
    seen_at: float | None = None
    done_at: float = 0.0


@dataclass(frozen=True)
class Known:
    """What the ledger knows, loaded once at start-up for O(1) checks on the loop."""

    keys: dict[tuple[str, int, int], str]  # (path, size, mtime_ns) -> state
    ingested: dict[str, str]  # sha256 -> the path first ingested with it


class Ledger:
    """A SQLite ledger in WAL mode; one connection, used by one thread at a time."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit that returned is on disk, so the ledger never lags the parts.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"{path}: the ledger is unreadable ({exc}); move it aside and run "
                f"`ingest ledger rebuild` to rebuild it from the Parquet footers"
            ) from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """End a failed transaction, whether in a statement or in COMMIT itself. SQLite has
        often rolled it back already (a full disk), and then a ROLLBACK would fail and hide
        the real error; if it is still open, every later BEGIN would fail."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def begin_part(self, part_id: str, paths: list[str]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO parts (id, state, paths, created) VALUES (?, 'pending', ?, ?)",
                (part_id, json.dumps(paths), time.time()),
            )

    def finish_part(self, part_id: str | None, files: Iterable[FileRecord]) -> None:
        """Mark a part committed and record its inputs (and any others) in one transaction."""
        with self._transaction() as db:
            if part_id is not None:
                db.execute("UPDATE parts SET state = 'committed' WHERE id = ?", (part_id,))
            db.executemany(
                "INSERT INTO files (path, size, mtime_ns, sha256, state, rows, part,"
                " duplicate_of, error, message, attempts, seen_at, done_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.path, f.size, f.mtime_ns, f.sha256, f.state, f.rows, f.part,
                        f.duplicate_of, f.error, f.message, f.attempts, f.seen_at, f.done_at,
                    )
                    for f in files
                ],
            )

    def record(self, files: Iterable[FileRecord]) -> None:
        self.finish_part(None, files)

    def pending_parts(self) -> list[tuple[str, list[str]]]:
        rows = self._db.execute("SELECT id, paths FROM parts WHERE state = 'pending'").fetchall()
        return [(part_id, json.loads(paths)) for part_id, paths in rows]

    def committed_paths(self) -> set[str]:
        rows = self._db.execute("SELECT paths FROM parts WHERE state = 'committed'").fetchall()
        return {path for (paths,) in rows for path in json.loads(paths)}

    def forget_part(self, part_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM parts WHERE id = ? AND state = 'pending'", (part_id,))

    def known(self) -> Known:
        keys: dict[tuple[str, int, int], str] = {}
        ingested: dict[str, str] = {}
        for path, size, mtime_ns, sha256, state in self._db.execute(
            "SELECT path, size, mtime_ns, sha256, state FROM files ORDER BY id"
        ):
            keys[(path, size, mtime_ns)] = state
            if state == "ingested":
                ingested.setdefault(sha256, path)
        return Known(keys, ingested)

    def lookup(self, path: str, size: int, mtime_ns: int) -> FileRecord | None:
        row = self._db.execute(
            "SELECT path, size, mtime_ns, sha256, state, rows, part, duplicate_of, error,"
            " message, attempts, seen_at, done_at FROM files"
            " WHERE path = ? AND size = ? AND mtime_ns = ? ORDER BY id DESC LIMIT 1",
            (path, size, mtime_ns),
        ).fetchone()
        return FileRecord(*row) if row else None

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    def last_ingest(self) -> float | None:
        row = self._db.execute(
            "SELECT MAX(done_at) FROM files WHERE state = 'ingested'"
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def quarantined(self) -> list[FileRecord]:
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, sha256, state, rows, part, duplicate_of, error,"
            " message, attempts, seen_at, done_at FROM files"
            " WHERE state = 'quarantined' ORDER BY id"
        ).fetchall()
        return [FileRecord(*row) for row in rows]
