"""`ingest run` compacts on its own: a trickle stays a handful of parts, a closed day one file."""

from __future__ import annotations

import datetime
import random
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.store import autocompact
from ingest.store.autocompact import OPEN_SLACK, Compactor
from ingest.store.compact import BIG_ENOUGH, bins_of, smallest
from ingest.store.crashpoints import CrashPlan
from ingest.store.ledger import Ledger

from ..conftest import Folder, Service, drop_by_rename, wait_for
from ..invariants import check_exactly_once
from .seed import layout_of, seed_parts


def _most_parts(folder: Folder) -> int:
    folders = [p for t in ("records", "features")
               for p in (folder.output / t).glob("ingest_date=*")]
    return max((len(list(p.glob("*.parquet"))) for p in folders), default=0)


@pytest.mark.parametrize(
    ("files", "every_s", "bound"),
    [
        # A file every 100 ms: a commit or two between passes, a handful of parts. The
        # bounds leave room for a shared machine's stalls; without compaction, the
        # partitions would hold as many parts as files.
        pytest.param(60, 0.1, 3 * OPEN_SLACK, id="10-per-second"),
        # 50 a second keep the committer busy: the parts a flush commits at once, per table,
        # gather between passes; bounded all the same. How many gather depends on how fast
        # a pass runs against the drops' pace: run alone, where other tests cannot slow it.
        pytest.param(200, 0.02, 60, id="50-per-second", marks=pytest.mark.serial),
    ],
)
def test_a_trickle_under_ingest_run_stays_compact(
    folder: Folder, service: type[Service], files: int, every_s: float, bound: int
) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 2}, pipeline={"workers": 2}, output={"flush_s": 0},
    )
    svc = service()
    svc.wait_ready()
    expected: dict[str, int] = {}
    most = 0
    for i in range(files):
        rows = 3 + i % 5
        body = "timestamp,a,b\n" + "".join(f"{i * 10 + r},{r}.5,{i}\n" for r in range(rows))
        drop_by_rename(folder, f"t{i:03d}.csv", body.encode())
        expected[f"t{i:03d}.csv"] = rows
        time.sleep(every_s)
        most = max(most, _most_parts(folder))
    wait_for(lambda: svc.text().count("ingested t") == files, 60, "every file ingested")
    time.sleep(2)  # idle: a last look for partitions to compact
    last = _most_parts(folder)
    assert svc.stop() == 0, svc.text()

    assert "compacted records/ingest_date=" in svc.text()
    assert max(most, last) <= bound, f"{most} parts in one partition"
    assert last <= OPEN_SLACK + 1
    check_exactly_once(folder, expected, set())


def test_a_closed_partition_ends_as_one_file(
    folder: Folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = seed_parts(folder, parts=5, rows=20)
    layout = layout_of(folder)
    compactor = Compactor(layout, CrashPlan(), target_bytes=128 << 20)
    ledger = Ledger(layout.ledger)
    try:
        assert compactor.step(ledger) == []  # today's partition: 5 parts are within the slack
        # Tomorrow, which this test cannot wait for: the partition is closed.
        tomorrow = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
        monkeypatch.setattr(autocompact, "today", lambda: tomorrow.strftime("%Y-%m-%d"))
        (outcome,) = compactor.step(ledger)
        assert (outcome.before, outcome.after) == (5, 1)
        assert compactor.step(ledger) == []
    finally:
        ledger.close()
    assert len(folder.parts("records")) == 1
    assert dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1")) == expected


def _rows(folder: Folder) -> dict[Path, int]:
    return {p: pq.ParquetFile(p).metadata.num_rows for p in folder.parts("records")}


def test_a_growing_partition_does_not_rewrite_its_big_file_for_each_few_small_parts(
    folder: Folder,
) -> None:
    """A pass after each commit of a trickle, as `ingest run` makes them, beside a file of
    200,000 rows: merging every small part each time rewrote that file every nine or so."""
    layout = layout_of(folder)
    compactor = Compactor(layout, CrashPlan(), target_bytes=128 << 20)
    expected = seed_parts(folder, parts=1, rows=200_000)
    rewritten = 0
    for i in range(1, 81):
        expected |= seed_parts(folder, parts=1, rows=40, start=i)
        seeded = _rows(folder)
        ledger = Ledger(layout.ledger)
        try:
            compactor.step(ledger)
        finally:
            ledger.close()
        now = _rows(folder)
        rewritten += sum(rows for path, rows in now.items() if path not in seeded)
        assert len(now) <= OPEN_SLACK + 1

    assert 0 < rewritten < 200_000, f"{rewritten} rows rewritten for 3,200 committed"
    assert dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1")) == expected


@pytest.mark.parametrize(
    ("part_kb", "total_gb", "spread", "first_kb"),
    [
        (2, 0.3, 0.5, 0),
        (170, 3, 0.5, 0),
        (170, 1, 0.05, 0),  # parts of sizes far apart
        (170, 1, 0.5, 0.5),  # a file of a few rows among them: too small to pair with any
    ],
)
def test_a_days_trickle_is_written_a_few_times_over_not_once_for_every_few_parts(
    part_kb: int, total_gb: float, spread: float, first_kb: float
) -> None:
    """The rule alone, on sizes (merged files as big as their parts), over a day's parts
    committed one at a time, with a pass after each while the partition is due."""
    rng = random.Random(1)
    target = 128 << 20
    sizes: dict[Path, int] = {}
    committed = written = 0
    most = 0
    while committed < total_gb * 1e9:
        part = Path(f"p{len(sizes)}-{committed}")
        drawn = part_kb * 1000 * rng.uniform(spread, 2 - spread)
        sizes[part] = int(first_kb * 1000 if first_kb and not committed else drawn)
        committed += sizes[part]
        while len(sizes) - max(1, -(-sum(sizes.values()) // target)) > OPEN_SLACK:
            small = [p for p in sizes if sizes[p] < target * BIG_ENOUGH]
            bins = [b for b in bins_of(smallest(small, sizes), sizes, target) if len(b) > 1]
            if not bins:
                break
            for merged in bins:
                size = sum(sizes.pop(p) for p in merged)
                sizes[Path(f"m{written}-{size}")] = size
                written += size
        most = max(most, sum(1 for p in sizes if sizes[p] < target * BIG_ENOUGH))

    # Merging every small file each time: 118 times for 2 GB of 170 KB parts.
    assert written / committed <= 15, f"each byte was written {written / committed:.1f} times"
    assert most <= OPEN_SLACK + 4, f"{most} files under half the target"


def test_a_part_removed_by_hand_is_warned_of_once_not_at_every_pass(
    folder: Folder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    expected = seed_parts(folder, parts=3, rows=20)
    gone = folder.parts("records")[0]
    gone.unlink()
    layout = layout_of(folder)
    compactor = Compactor(layout, CrashPlan(), target_bytes=128 << 20)
    tomorrow = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
    monkeypatch.setattr(autocompact, "today", lambda: tomorrow.strftime("%Y-%m-%d"))
    for start in range(3, 6):  # a commit between passes: the partition is looked at again
        expected |= seed_parts(folder, parts=1, rows=20, start=start)
        ledger = Ledger(layout.ledger)
        try:
            compactor.step(ledger)
        finally:
            ledger.close()
    warned = [r for r in caplog.records if "is in the ledger but not on disk" in r.getMessage()]
    assert len(warned) == 1 and str(gone) in warned[0].getMessage()
    assert len(folder.parts("records")) == 1
    left = dict(folder.query("SELECT source_file, count(*) FROM records GROUP BY 1"))
    assert len(left) == len(expected) - 1 and left.items() < expected.items()
