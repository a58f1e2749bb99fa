"""At commit, a CSV whose part holds as times or numbers a column that a part committed
before it made text is taken out and read again; unless it is no longer there as it was
read, and then it is committed as read: its rows are whole, and nothing is lost. A real
ledger, real files and the parts the worker's own function makes of them."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import duckdb

from ingest.aio.commit import Aside, Committer, TaskOutput
from ingest.compute.task import process
from ingest.config import Config, Features, Paths
from ingest.files import DropFile, mtime_ns
from ingest.jobs import Job, Task
from ingest.store.crashpoints import CrashPlan
from ingest.store.layout import Layout
from ingest.store.ledger import Ledger
from ingest.store.parts import Accepted

TEXT = b"id,t\n0,x\n"
TYPED = b"id,t\n1,2024-01-01T10:00:00\n2,2024-01-02T10:00:00\n"


def _output(layout: Layout, name: str, data: bytes) -> TaskOutput:
    path = layout.drop / name
    path.write_bytes(data)
    st = path.stat()
    file = DropFile(path, name, st.st_size, mtime_ns(st), time.time(), time.monotonic())
    digest = hashlib.sha256(data).hexdigest()
    # Each file's task left before any part was committed: the table had no schema.
    result = process(Task((Job(name, digest, data),), Features()))
    (outcome,) = result.outcomes
    assert outcome.dialect is not None
    accepted = Accepted(file, digest, outcome.rows, dialect=outcome.dialect.describe())
    return TaskOutput([accepted], list(result.parts))


def _committer(tmp_path: Path) -> tuple[Committer, Ledger, Layout, list[tuple[str, str]]]:
    config = Config(paths=Paths(tmp_path / "drop", tmp_path / "out", tmp_path / "q"))
    layout = Layout.of(config)
    layout.drop.mkdir()
    layout.make_dirs()
    told: list[tuple[str, str]] = []

    def resolved(
        event: str, files: Sequence[tuple[DropFile, dict[str, object]]],
        unpaused: Collection[str] = (),
    ) -> None:
        told.extend((event, file.rel) for file, _ in files)

    ledger = Ledger(layout.ledger)
    committer = Committer(ledger, layout, config, resolved, lambda: True, CrashPlan())
    return committer, ledger, layout, told


def _commit(tmp_path: Path, delete_typed: bool) -> tuple[list[tuple[str, str]], Layout]:
    committer, ledger, layout, told = _committer(tmp_path)
    committer.add(_output(layout, "a.csv", TEXT))
    committer.add(_output(layout, "b.csv", TYPED))
    if delete_typed:
        (layout.drop / "b.csv").unlink()
    assert asyncio.run(committer.flush())
    ledger.close()
    return told, layout


def _table(layout: Layout) -> list[tuple[object, ...]]:
    glob = layout.output / "records" / "*" / "*.parquet"
    return duckdb.sql(
        f"SELECT source_file, id, t FROM read_parquet('{glob}') ORDER BY id"
    ).fetchall()


def _ledger(layout: Layout) -> list[tuple[object, ...]]:
    with sqlite3.connect(layout.ledger) as db:
        return db.execute("SELECT path, state FROM files ORDER BY path").fetchall()


def test_a_csv_typed_where_its_table_is_now_text_is_read_again_not_respelled(
    tmp_path: Path,
) -> None:
    told, layout = _commit(tmp_path, delete_typed=False)
    assert told == [("ingested", "a.csv"), ("reread", "b.csv")]
    assert _table(layout) == [("a.csv", 0, "x")]  # none of b's rows: it is read again
    assert _ledger(layout) == [("a.csv", "ingested")]
    assert not list(layout.tmp.iterdir())


def test_a_csv_gone_since_it_was_read_is_committed_as_read(tmp_path: Path) -> None:
    told, layout = _commit(tmp_path, delete_typed=True)
    assert told == [("ingested", "a.csv"), ("ingested", "b.csv")]
    assert [row[:2] for row in _table(layout)] == [("a.csv", 0), ("b.csv", 1), ("b.csv", 2)]
    assert _ledger(layout) == [("a.csv", "ingested"), ("b.csv", "ingested")]


def test_a_version_read_again_that_ends_set_aside_or_gone_is_not_remembered(
    tmp_path: Path,
) -> None:
    committer, ledger, layout, told = _committer(tmp_path)
    committer.add(_output(layout, "a.csv", TEXT))
    typed = [_output(layout, name, TYPED) for name in ("b.csv", "c.csv")]
    b, c = (output.accepted[0] for output in typed)
    for output in typed:
        committer.add(output)
    assert asyncio.run(committer.flush())
    assert told == [("ingested", "a.csv"), ("reread", "b.csv"), ("reread", "c.csv")]
    # Read again, b is a duplicate of a file committed meanwhile; c is gone.
    committer.set_aside(Aside(b.file, b.sha256, "duplicate", duplicate_of="z.csv"))
    committer.vanished(c.file)
    assert asyncio.run(committer.flush())
    ledger.close()
    assert not committer._read_again_once  # a long run keeps nothing of either
