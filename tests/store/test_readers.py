"""Compaction and rewrites under readers: a reader never counts a wrong number of rows,
and never sees two schemas in one table. It may get an error it can retry."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.store import swap
from ingest.store.compact import compact_partition, rewrite_table
from ingest.store.crashpoints import COMPACT_POINTS, CrashPlan
from ingest.store.layout import today
from ingest.store.ledger import Ledger

from ..conftest import Folder
from .seed import layout_of, seed_parts


@dataclass
class Tally:
    counts: Counter[int] = field(default_factory=Counter)
    schemas: int = 0  # listings that held more than one schema
    errors: Counter[str] = field(default_factory=Counter)
    reads: int = 0


def _readers(folder: Folder, table: str, stop: threading.Event) -> tuple[Tally, threading.Thread]:
    glob = (folder.output / table / "ingest_date=*" / "*.parquet").as_posix()
    tally = Tally()

    def attempt(read: Callable[[], int]) -> None:
        try:
            tally.counts[read()] += 1
        except Exception as exc:  # a file listed, then gone: the reader retries
            tally.errors[type(exc).__name__] += 1
        tally.reads += 1

    def one_schema() -> int:
        schemas = set()
        for path in sorted(Path(folder.output / table).glob("ingest_date=*/*.parquet")):
            schemas.add(pq.read_schema(path).remove_metadata())
        tally.schemas += len(schemas) > 1
        return -1

    def loop() -> None:
        con = duckdb.connect()
        while not stop.is_set():
            attempt(lambda: con.execute(f"SELECT count(*) FROM read_parquet('{glob}')")
                    .fetchone()[0])  # type: ignore[index]
            attempt(lambda: pl.scan_parquet(glob).select(pl.len()).collect().item())
            attempt(one_schema)

    thread = threading.Thread(target=loop)
    thread.start()
    return tally, thread


def _check(tally: Tally, rows: int) -> None:
    assert set(tally.counts) <= {rows, -1}, f"wrong counts seen: {tally.counts}"
    assert tally.schemas == 0, "a listing held two schemas"
    assert tally.counts[rows] >= 10, tally


def test_a_reader_never_counts_wrong_while_ingest_compact_rewrites_many_parts(
    folder: Folder,
) -> None:
    rows = 0
    for round_ in range(3):
        rows += sum(seed_parts(folder, parts=150, rows=200, start=round_ * 150).values())
        stop = threading.Event()
        tally, thread = _readers(folder, "records", stop)
        try:
            result = folder.ingest("compact")
        finally:
            stop.set()
            thread.join()
        assert result.returncode == 0, result.stderr
        assert "parts 1" in result.stderr  # 150 (+1 from the last round) -> 1
        _check(tally, rows)
        assert len(folder.parts("records")) == 1
    print(tally)


@dataclass
class ReadAtEachStep(CrashPlan):
    """At each step of a swap, wait until the readers have counted the table a few times
    more: on a busy machine they would otherwise see only some of the steps, or none."""

    tally: Tally = field(default_factory=Tally)
    rows: int = 0
    reads: int = 3
    steps: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # steps the readers never got past

    def reached(self, point: str) -> None:
        self.steps.append(point)
        enough = self.tally.counts[self.rows] + self.reads
        deadline = time.monotonic() + 20
        while self.tally.counts[self.rows] < enough:
            if time.monotonic() > deadline:
                self.unread.append(point)
                return
            time.sleep(0.005)


def test_rewrite_to_a_wider_schema_never_shows_two_schemas(folder: Folder) -> None:
    rows = sum(seed_parts(folder, parts=200, rows=100).values())
    layout = layout_of(folder)
    wider = pa.schema([("v", pa.float64()), ("source_file", pa.string()),
                       ("source_sha256", pa.string()), ("note", pa.string())])
    stop = threading.Event()
    tally, thread = _readers(folder, "records", stop)
    plan = ReadAtEachStep(tally=tally, rows=rows)
    ledger = Ledger(layout.ledger)
    try:
        outcome = rewrite_table(ledger, layout, "records", wider, plan, target_bytes=1 << 20)
    finally:
        stop.set()
        thread.join()
        ledger.close()
    assert outcome is not None and outcome.before == 200
    assert plan.steps == list(COMPACT_POINTS)
    assert not plan.unread, f"no right count read at {plan.unread}: {tally}"
    _check(tally, rows)
    for part in folder.parts("records"):
        assert pq.read_schema(part).remove_metadata() == wider


def test_without_rename_exchange_the_swap_renames_aside_then_in(
    folder: Folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernel or filesystem without RENAME_EXCHANGE cannot exist on this machine.
    monkeypatch.setattr(swap, "exchange", lambda live, staged: False)
    rows = sum(seed_parts(folder, parts=20, rows=10).values())
    layout = layout_of(folder)
    ledger = Ledger(layout.ledger)
    try:
        outcome = compact_partition(ledger, layout, "records", today(), CrashPlan(), 1 << 20)
        assert outcome is not None and (outcome.before, outcome.after) == (20, 1)
        assert ledger.committed_paths() == {
            p.relative_to(folder.output).as_posix() for p in folder.parts("records")}
    finally:
        ledger.close()
    assert folder.query("SELECT count(*) FROM records") == [(rows,)]
    assert not list(layout.state.glob("swap-*"))


def test_a_failure_between_the_fallback_renames_is_finished_not_lost(
    folder: Folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(swap, "exchange", lambda live, staged: False)
    real_rename = swap.os.rename

    def rename_in_fails(src: Path, dst: Path) -> None:
        if Path(src).parent.name.startswith("swap-") and Path(src).name != "old":
            raise OSError(5, "I/O error")
        real_rename(src, dst)

    rows = sum(seed_parts(folder, parts=5, rows=10).values())
    layout = layout_of(folder)
    ledger = Ledger(layout.ledger)
    monkeypatch.setattr(swap.os, "rename", rename_in_fails)
    try:
        with pytest.raises(OSError):
            compact_partition(ledger, layout, "records", today(), CrashPlan(), 1 << 20)
        monkeypatch.setattr(swap.os, "rename", real_rename)
        assert not (folder.output / "records" / f"ingest_date={today()}").exists()
        from ingest.store.swap import repair_swaps

        assert repair_swaps(ledger, layout) == 1  # as start-up does
        assert ledger.committed_paths() == {
            p.relative_to(folder.output).as_posix() for p in folder.parts("records")}
    finally:
        ledger.close()
    assert folder.query("SELECT count(*) FROM records") == [(rows,)]
    assert len(folder.parts("records")) == 1


REWRITE = """
import sys
from pathlib import Path
import pyarrow as pa
from ingest.config import load
from ingest.store.compact import rewrite_table
from ingest.store.crashpoints import CrashPlan
from ingest.store.layout import Layout
from ingest.store.ledger import Ledger

layout = Layout.of(load(Path(sys.argv[1])))
wider = pa.schema([("v", pa.float64()), ("source_file", pa.string()),
                   ("source_sha256", pa.string()), ("note", pa.string())])
rewrite_table(Ledger(layout.ledger), layout, "records", wider, CrashPlan(sys.argv[2]), 1 << 20)
"""


@pytest.mark.parametrize("point", COMPACT_POINTS)
def test_kill_9_during_a_rewrite_then_restart_leaves_one_schema_and_every_row_once(
    folder: Folder, point: str
) -> None:
    expected = seed_parts(folder, parts=12, rows=30)
    killed = subprocess.run(
        [sys.executable, "-c", REWRITE, str(folder.config), point], cwd=folder.root,
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert folder.ingest("once").returncode == 0  # start-up repair

    schemas = {pq.read_schema(p).remove_metadata() for p in folder.parts("records")}
    assert len(schemas) == 1
    (schema,) = schemas
    # Killed before the swap: the old table; after it: the new one, committed.
    assert (schema.field("v").type == pa.float64()) == (point != "compact-staged")
    counts = dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1"))
    assert counts == expected
    layout = layout_of(folder)
    ledger = Ledger(layout.ledger)
    try:
        assert ledger.committed_paths() == {
            p.relative_to(folder.output).as_posix() for p in folder.parts("records")}
        assert not ledger.swaps()
    finally:
        ledger.close()
    assert not list(layout.state.glob("swap-*"))
