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

import heapq
import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LedgerError
from . import catalog, vanished
from .catalog import Holds, PartFile, Swap
from .known import KNOWN_FILES, Key, Known

if TYPE_CHECKING:
    from .layout import Layout

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
CREATE INDEX IF NOT EXISTS files_state ON files (state);
CREATE TABLE IF NOT EXISTS parts (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
    paths TEXT NOT NULL,
    created REAL NOT NULL
);
-- The parts left pending, read at every start and, with Delta, at every commit: parts
-- grows by a row a commit for ever, and this index holds only the pending ones.
CREATE INDEX IF NOT EXISTS parts_pending ON parts (state) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schemas (
    table_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (table_name, version)
);
CREATE TABLE IF NOT EXISTS dialects (
    table_name TEXT PRIMARY KEY,
    dialect TEXT NOT NULL,
    pinned_by TEXT NOT NULL,
    created REAL NOT NULL
);
"""
# The ledger's page cache (a fixed part of the overhead over `memory_mb`), and how
# many WAL pages (4 KB each) a commit may leave before it copies them into the database.
PAGE_CACHE_KB = 16 * 1024
WAL_CHECKPOINT_PAGES = 4000
# A WAL file keeps the size of the largest transaction it ever held (a widening that
# rewrites a table's catalog can leave a gigabyte), unless it is cut back once a
# checkpoint has copied it: to this, four times what a run of commits fills between
# checkpoints, so that the usual WAL is never cut and grown again.
WAL_LIMIT_BYTES = 4 * WAL_CHECKPOINT_PAGES * 4096
# A `meta` key: the schemas recorded are those of the committed parts (`Ledger.schemas_checked`).
SCHEMAS_CHECKED = "schemas_checked"

# The index dedupe by content reads once memory no longer holds every sha256 ingested
# (`known.py`). Made only then: it costs every commit a write per input at a random place.
SHA_INDEX = "CREATE INDEX IF NOT EXISTS files_sha ON files (sha256)"
# The parts a crash left pending (answered from the index `parts_pending`).
PENDING_PARTS = "SELECT id, paths FROM parts WHERE state = 'pending'"
# Inputs asked of the ledger in one query.
LOOKUP_BATCH = 500
# Columns added after the first release, with what an older ledger's rows hold.
MIGRATIONS = (
    ("files", "table_name", "TEXT NOT NULL DEFAULT 'records'"),
    ("files", "dialect", "TEXT"),
    ("parts", "intent", "TEXT"),  # with Delta: what finishes the part if the log has it
)


@dataclass  # not frozen: made for every input (`files.DropFile`)
class FileRecord:
    """One input's final state, as the ledger stores it; or, with state `vanished`, a file
    that was gone before it was read (`vanished.py`), whose sha256 is '' if never hashed."""

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
    table: str = "records"
    dialect: str | None = None  # how a CSV was read (`Dialect.describe()`)


_FILE_COLUMNS = (
    "path, size, mtime_ns, sha256, state, rows, part, duplicate_of, error, message,"
    " attempts, seen_at, done_at, table_name, dialect"
)


class Ledger:
    """A SQLite ledger in WAL mode; one connection, used by one thread at a time."""

    def __init__(self, path: Path, read_only: bool = False):
        """Open (and create) the ledger; `read_only` opens an existing one for a reader
        beside a running service (`ingest explain`), which never writes to it."""
        self.path = path
        try:
            if read_only:
                uri = f"{path.absolute().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
                self._db.execute("SELECT count(*) FROM files").fetchone()
                return
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit that returned is on disk, so the ledger never lags the parts.
            self._db.execute("PRAGMA synchronous=FULL")
            # A commit of a thousand small inputs dirties a page or more of each index per
            # input: with SQLite's 2 MB cache it spills pages into the WAL mid-transaction,
            # then writes them again; and a checkpoint every 1,000 pages copies the same
            # index pages back over and over. Both cost the committer's thread kernel time.
            self._db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KB}")
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self._db.executescript(SCHEMA + catalog.SCHEMA + vanished.SCHEMA)
            self._migrate()
            try:
                with self._transaction() as db:
                    catalog.migrate(db)
            except sqlite3.OperationalError as exc:  # a full disk, say: nothing was changed
                self._db.close()
                raise LedgerError(
                    f"{path}: the ledger could not be brought to this release's form ({exc});"
                    " it is as it was: mend the cause and start again"
                ) from None
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"{path}: the ledger is unreadable ({exc}); move it aside and run "
                f"`ingest ledger rebuild` to rebuild it from the Parquet footers"
            ) from None

    def _migrate(self) -> None:
        for table, column, declaration in MIGRATIONS:
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        self._db.close()

    def seal(self) -> None:
        """Fold the write-ahead log into the file and close: the file alone is then the
        whole ledger, to be renamed into place (`rebuild.py`)."""
        mode = self._db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        self._db.close()
        if mode != "delete" or Path(f"{self.path}-wal").exists():
            raise LedgerError(f"{self.path}: its write-ahead log could not be folded into it")

    def schemas(self) -> dict[str, tuple[int, bytes]]:
        """Each table's latest schema: name -> (version, Arrow IPC bytes)."""
        try:
            rows = self._db.execute(
                "SELECT table_name, version, schema FROM schemas s WHERE version ="
                " (SELECT MAX(version) FROM schemas WHERE table_name = s.table_name)"
            ).fetchall()
        except sqlite3.OperationalError:  # a ledger from before tables, opened read-only
            return {}
        return {name: (version, bytes(schema)) for name, version, schema in rows}

    def dialects(self) -> dict[str, str]:
        """Each table's pinned CSV dialect, as JSON."""
        try:
            rows = self._db.execute("SELECT table_name, dialect FROM dialects").fetchall()
        except sqlite3.OperationalError:  # a ledger from before tables, opened read-only
            return {}
        return {table: dialect for table, dialect in rows}

    def pin_dialects(self, pins: list[tuple[str, str, str]]) -> None:
        """(table, dialect JSON, the file that pinned it), in order; a table keeps its
        first pin, but one of a single column (`Dialect.delimited`), which a later pin
        replaces (`Schemas.pin` sends only such)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO dialects (table_name, dialect, pinned_by, created)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (table_name) DO UPDATE SET"
                " dialect = excluded.dialect, pinned_by = excluded.pinned_by,"
                " created = excluded.created"
                " WHERE json_extract(dialects.dialect, '$.delimited') = 0",
                [(table, dialect, source, time.time()) for table, dialect, source in pins],
            )

    def add_schema(self, table: str, version: int, schema: bytes) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO schemas (table_name, version, schema, created) VALUES (?, ?, ?, ?)",
                (table, version, schema, time.time()),
            )

    def schemas_checked(self) -> bool:
        """Whether `schemas` is known to match the committed parts on disk: they were
        compared (`mark_schemas_checked`), and no table's oldest committed part has
        changed since. A rewrite to a wider schema gives every part of its table a new
        name, by this release or any other; this one also clears the mark meanwhile."""
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (SCHEMAS_CHECKED,))
        row = found.fetchone()
        return row is not None and row[0] == self._oldest_parts()

    def mark_schemas_checked(self, checked: bool) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (SCHEMAS_CHECKED,))
            if checked:
                oldest = self._oldest_parts()
                db.execute("INSERT INTO meta VALUES (?, ?)", (SCHEMAS_CHECKED, oldest))

    def keep_schemas_checked(self) -> None:
        """At a clean stop: what was committed or compacted since the mark has the schemas
        recorded, so the mark follows it; a mark a widening left cleared stays cleared."""
        with self._transaction() as db:
            db.execute(
                "UPDATE meta SET value = ? WHERE key = ?", (self._oldest_parts(), SCHEMAS_CHECKED)
            )

    def meta(self, key: str) -> str | None:
        """A value the ledger keeps about itself and the output (`set_meta`)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _oldest_parts(self) -> str:
        rows = self._db.execute(
            "SELECT table_name, MIN(path) FROM part_files WHERE state = 'committed'"
            " GROUP BY table_name ORDER BY table_name"
        ).fetchall()
        return json.dumps(rows)

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

    def begin_part(
        self, part_id: str, paths: list[str], sizes: list[int] | None = None,
        intent: str | None = None,
    ) -> None:
        """Record a part as pending; `intent` (with Delta) is what finishes it at start-up
        if the Delta log has it (`delta_repair.finish_pending`)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO parts (id, state, paths, created, intent)"
                " VALUES (?, 'pending', ?, ?, ?)",
                (part_id, json.dumps(paths), time.time(), intent),
            )
            sizes = sizes or [0] * len(paths)
            catalog.add_files(
                db, [(part_id, p, "pending", n) for p, n in zip(paths, sizes, strict=True)]
            )

    def finish_part(
        self, part_id: str | None, files: Iterable[FileRecord], holds: Holds | None = None
    ) -> None:
        """Mark a part committed and record its inputs (and any others) in one transaction.

        `holds` says which inputs each of the part's files holds; a file it does not name
        (by default, every one) holds each input recorded here with this part. Vanished
        files go to a table of their own, which nothing that skips known files reads."""
        files = list(files)
        gone = [f for f in files if f.state == vanished.STATE]
        files = [f for f in files if f.state != vanished.STATE]
        with self._transaction() as db:
            (last,) = db.execute("SELECT coalesce(max(id), 0) FROM files").fetchone()
            db.executemany(
                f"INSERT INTO files ({_FILE_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                [
                    (
                        f.path, f.size, f.mtime_ns, f.sha256, f.state, f.rows, f.part,
                        f.duplicate_of, f.error, f.message, f.attempts, f.seen_at, f.done_at,
                        f.table, f.dialect,
                    )
                    for f in files
                ],
            )
            vanished.add(
                db, [(f.path, f.size, f.mtime_ns, f.sha256, f.seen_at, f.done_at) for f in gone]
            )
            if part_id is not None:
                # The intent finishes a part still pending at start-up; once committed it
                # is read by nothing, and with Delta it holds every input's record again.
                db.execute(
                    "UPDATE parts SET state = 'committed', intent = NULL WHERE id = ?", (part_id,)
                )
                holds = holds or {}
                ids = catalog.recorded_since(db, last) if holds else {}
                catalog.commit_files(db, part_id, holds, ids)
                every = [path for path in catalog.paths_of(db, part_id) if path not in holds]
                catalog.hold_recorded(db, part_id, every, last)

    def record(self, files: Iterable[FileRecord]) -> None:
        self.finish_part(None, files)

    def pending_parts(self) -> list[tuple[str, list[str]]]:
        rows = self._db.execute(PENDING_PARTS).fetchall()
        return [(part_id, json.loads(paths)) for part_id, paths in rows]

    def intent(self, part_id: str) -> str | None:
        row = self._db.execute("SELECT intent FROM parts WHERE id = ?", (part_id,)).fetchone()
        return row[0] if row else None

    def committed_paths(self) -> set[str]:
        rows = self._db.execute("SELECT path FROM part_files WHERE state = 'committed'")
        return {path for (path,) in rows}

    def forget_part(self, part_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM parts WHERE id = ? AND state = 'pending'", (part_id,))
            db.execute(
                "DELETE FROM part_files WHERE part_id = ? AND state = 'pending'", (part_id,)
            )

    # The catalog of part files (`catalog.py`), for compaction, repair and `ingest explain`.

    def parts_of(self, path: str, sha256: str) -> list[str]:
        """The part files (relative to the output folder) that hold this input's rows now."""
        return catalog.parts_of(self._db, path, sha256)

    def tables(self) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT table_name FROM part_files ORDER BY 1")
        return [table for (table,) in rows]

    def partitions(self) -> list[tuple[str, str, int, int]]:
        return catalog.partitions(self._db)

    def part_files(self, table: str, day: str | None = None) -> list[PartFile]:
        return catalog.committed(self._db, table, day)

    def swaps(self) -> list[Swap]:
        return catalog.swaps(self._db)

    def begin_swap(self, swap: Swap, sizes: Mapping[str, int]) -> None:
        with self._transaction() as db:
            catalog.begin_swap(db, swap, sizes)

    def hold(self, holds: Holds) -> None:
        """Record that each part file named holds those inputs, found by path and sha256."""
        with self._transaction() as db:
            catalog.hold(db, holds)

    def finish_swap(self, swap_id: str, holds: Holds) -> None:
        with self._transaction() as db:
            catalog.finish_swap(db, swap_id, holds)

    def drop_swap(self, swap_id: str) -> None:
        with self._transaction() as db:
            catalog.drop_swap(db, swap_id)

    def known(self, capacity: int = KNOWN_FILES) -> Known:
        """The newest `capacity` inputs' answers, and whether that is all of them. Past
        the bound, lookups will read the sha256 index: it is made now. Within it, nothing
        reads the index, and every commit would pay for it: it is dropped. Either may fail
        on a full disk; the lookups are right without the index, only slower."""
        (count,) = self._db.execute("SELECT count(*) FROM files").fetchone()
        whole = count <= capacity
        indexed = False
        with suppress(sqlite3.OperationalError):
            if whole:
                self._db.execute("DROP INDEX IF EXISTS files_sha")
            else:
                self.index_digests()
                indexed = True
        keys: OrderedDict[Key, str] = OrderedDict()
        ingested: OrderedDict[str, str] = OrderedDict()
        for path, size, mtime_ns, sha256, state in self._db.execute(
            "SELECT path, size, mtime_ns, sha256, state FROM"
            " (SELECT * FROM files ORDER BY id DESC LIMIT ?) ORDER BY id",
            (capacity,),
        ):
            keys[(path, size, mtime_ns)] = state
            if state == "ingested":
                ingested.setdefault(sha256, path)
        return Known(
            keys, ingested, self.schemas(), self.dialects(), whole, indexed, capacity
        )

    def index_digests(self) -> None:
        """Make the sha256 index `originals` reads (a second or so per million inputs)."""
        self._db.execute(SHA_INDEX)

    def states(self, keys: Iterable[Key]) -> dict[Key, str]:
        """The latest state of each of `keys` the ledger holds; one it lacks is left out.

        Each key is looked up whole in the `files_key` index: by its path alone, a name
        dropped again and again (a device's `readings.csv`) would bring every past
        version of it back with each lookup."""
        wanted = sorted(set(keys))
        found: dict[Key, tuple[int, str]] = {}
        for start in range(0, len(wanted), LOOKUP_BATCH):
            chunk = wanted[start:start + LOOKUP_BATCH]
            for row_id, path, size, mtime_ns, state in self._db.execute(
                "WITH wanted (path, size, mtime_ns) AS"
                f" (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))})"
                " SELECT f.id, f.path, f.size, f.mtime_ns, f.state FROM wanted w"
                " JOIN files f ON f.path = w.path AND f.size = w.size"
                " AND f.mtime_ns = w.mtime_ns",
                [value for key in chunk for value in key],
            ):
                key = (path, size, mtime_ns)
                if key not in found or found[key][0] < row_id:
                    found[key] = (row_id, state)
        return {key: state for key, (_, state) in found.items()}

    def originals(self, digests: Iterable[str]) -> dict[str, str]:
        """The path first ingested with each of `digests`; one never ingested is left out."""
        unique = sorted(set(digests))
        found: dict[str, str] = {}
        for start in range(0, len(unique), LOOKUP_BATCH):
            chunk = unique[start:start + LOOKUP_BATCH]
            # `+state`: the state index matches most rows; the planner must take files_sha.
            for sha256, path in self._db.execute(
                f"SELECT sha256, path FROM files WHERE sha256 IN ({', '.join('?' * len(chunk))})"
                " AND +state = 'ingested' ORDER BY id",
                chunk,
            ):
                found.setdefault(sha256, path)
        return found

    def lookup(self, path: str, size: int, mtime_ns: int) -> FileRecord | None:
        row = self._db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files"
            " WHERE path = ? AND size = ? AND mtime_ns = ? ORDER BY id DESC LIMIT 1",
            (path, size, mtime_ns),
        ).fetchone()
        return FileRecord(*row) if row else None

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    def vanished_count(self) -> int:
        """How many files were seen and gone before they were read; not in `counts`."""
        return vanished.count(self._db)

    def files_per_table(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT table_name, COUNT(*) FROM files WHERE state = 'ingested' GROUP BY 1"
        ).fetchall()
        return {table: count for table, count in rows}

    def last_ingest(self) -> float | None:
        row = self._db.execute(
            "SELECT MAX(done_at) FROM files WHERE state = 'ingested'"
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def quarantined(self) -> list[FileRecord]:
        rows = self._db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE state = 'quarantined' ORDER BY id"
        ).fetchall()
        return [FileRecord(*row) for row in rows]

    def history(self, path: str) -> list[tuple[FileRecord, str]]:
        """Every version of the input `path` the ledger holds, oldest first, each with
        the table its rows go to; the vanished ones among them, by when they were found gone."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        # A ledger from before table routing (opened read-only, so not migrated) has
        # neither column: everything went to records, read in no recorded dialect.
        table = "table_name" if "table_name" in columns else "'records'"
        dialect = "dialect" if "dialect" in columns else "NULL"
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, sha256, state, rows, part, duplicate_of, error,"
            f" message, attempts, seen_at, done_at, {table}, {dialect} FROM files"
            " WHERE path = ? ORDER BY done_at, id",
            (path,),
        ).fetchall()
        recorded = [(FileRecord(*row), str(row[-2])) for row in rows]
        gone = [
            (FileRecord(p, size, mtime, sha, vanished.STATE, seen_at=seen, done_at=done), "")
            for p, size, mtime, sha, seen, done in vanished.of(self._db, path)
        ]
        return list(heapq.merge(recorded, gone, key=lambda version: version[0].done_at))


def check_not_lost(layout: Layout, why: str) -> None:
    """Raise LedgerError if the ledger is missing (lost, or moved) where the output holds
    part files: a command that reads it would otherwise answer as if nothing were there."""
    if layout.ledger.exists():
        return
    parts = sum(
        1 for table in layout.tables()
        for _ in (layout.output / table).glob("ingest_date=*/*.parquet")
    )
    if parts:
        raise LedgerError(
            f"{layout.ledger} is missing but {layout.output} holds {parts} part files: {why}."
            " Restore the ledger, or run `ingest ledger rebuild` to rebuild it from the part"
            " files"
        )
