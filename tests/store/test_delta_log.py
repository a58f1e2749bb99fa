"""The Delta log stays quick to open: a checkpoint every CHECKPOINT_EVERY commits, each
commit's txn version one above the last, and a version already in the log refused."""

from __future__ import annotations

import decimal
import json
import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

deltalake = pytest.importorskip("deltalake")

from ingest.store import delta  # noqa: E402
from ingest.store.crashpoints import CrashPlan  # noqa: E402
from ingest.store.layout import Layout  # noqa: E402

from ..delta_read import local  # noqa: E402

DAY = "2026-01-01"


def _layout(tmp_path: Path) -> tuple[Layout, Path]:
    layout = Layout(tmp_path / "d", tmp_path / "o", tmp_path / "q", tmp_path / "a", delta=True)
    (layout.output / "t" / f"ingest_date={DAY}").mkdir(parents=True)
    seed = tmp_path / "seed.parquet"
    pq.write_table(pa.table({"v": pa.array([1, 2, None], pa.int64())}), seed)
    return layout, seed


def _part(layout: Layout, seed: Path, n: int) -> str:
    rel = f"t/ingest_date={DAY}/part-{n:06d}-0.parquet"
    os.link(seed, layout.output / rel)
    return rel


def test_a_checkpoint_every_n_commits_and_the_txn_grows_by_one(tmp_path: Path) -> None:
    layout, seed = _layout(tmp_path)
    commits = delta.CHECKPOINT_EVERY * 2 + 3
    for n in range(commits):
        assert delta.commit(layout, delta.Change("t", add=[_part(layout, seed, n)]),
                            CrashPlan()) == n + 1
    log = layout.output / "t" / "_delta_log"
    checkpoints = sorted(p.name.split(".")[0] for p in log.glob("*.checkpoint.parquet"))
    every = delta.CHECKPOINT_EVERY  # the N-th commit is version N - 1
    assert [int(v) for v in checkpoints] == [every - 1, 2 * every - 1]
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == 2 * every - 1
    table = deltalake.DeltaTable(str(layout.output / "t"))
    assert table.transaction_version(delta.APP_ID) == commits
    assert table.count() == 3 * commits
    assert table.metadata().configuration == delta.CONFIGURATION


def test_a_txn_version_the_log_holds_is_refused(tmp_path: Path) -> None:
    layout, seed = _layout(tmp_path)
    delta.commit(layout, delta.Change("t", add=[_part(layout, seed, 0)]), CrashPlan(), 1)
    with pytest.raises(delta.DeltaConflict, match="already holds txn version 1"):
        delta.commit(layout, delta.Change("t", add=[_part(layout, seed, 1)]), CrashPlan(), 1)
    assert deltalake.DeltaTable(str(layout.output / "t")).count() == 3


def test_statistics_come_from_the_footer(tmp_path: Path) -> None:
    layout, seed = _layout(tmp_path)
    delta.commit(layout, delta.Change("t", add=[_part(layout, seed, 0)]), CrashPlan())
    entry = layout.output / "t" / "_delta_log" / f"{0:020d}.json"
    (add,) = [json.loads(line)["add"] for line in entry.read_text().splitlines()
              if '"add"' in line]
    assert json.loads(add["stats"]) == {
        "numRecords": 3, "minValues": {"v": 1}, "maxValues": {"v": 2}, "nullCount": {"v": 1},
    }
    assert add["partitionValues"] == {"ingest_date": DAY}



def _stats(layout: Layout, table: pa.Table) -> dict[str, object]:
    """The statistics the log gives a part holding `table` in row groups of two rows
    (part files hold 2^20 rows per row group)."""
    rel = f"t/ingest_date={DAY}/part-000000-0.parquet"
    pq.write_table(table, layout.output / rel, row_group_size=2)
    delta.commit(layout, delta.Change("t", add=[rel]), CrashPlan())
    entry = layout.output / "t" / "_delta_log" / f"{0:020d}.json"
    (add,) = [json.loads(line)["add"] for line in entry.read_text().splitlines()
              if '"add"' in line]
    stats: dict[str, object] = json.loads(add["stats"])
    return stats


def test_statistics_bound_the_values_of_every_row_group(tmp_path: Path) -> None:
    layout, _ = _layout(tmp_path)
    table = pa.table({
        "v": pa.array([None, None, 5, 6, 1, 2], pa.int64()),
        "s": pa.array(["k", "z", None, "m", "a", "b"], pa.string()),
        "e": pa.array([None] * 6, pa.float64()),
    })
    assert _stats(layout, table) == {
        "numRecords": 6, "minValues": {"v": 1, "s": "a"}, "maxValues": {"v": 6, "s": "z"},
        "nullCount": {"v": 2, "s": 1, "e": 6},
    }


@pytest.mark.parametrize("values", [
    ["a", "b", "c" * 5000, "zz"],  # too long for the footer's statistics
    [1.0, 2.0, 5.0, math.inf],
    [-math.inf, 0.0, 1.0, 2.0],
    [1.0, 2.0, math.nan, math.nan],  # a row group of NaN only has no min or max
], ids=["long-string", "infinity", "minus-infinity", "nan"])
def test_a_row_group_without_a_bound_leaves_the_file_without_bounds(
    tmp_path: Path, values: list[object]
) -> None:
    # A bound taken from the other row groups would make a reader skip the file for a
    # value in this one; a column left out of the bounds would make deltalake's reader
    # skip the file for every value of that column.
    layout, _ = _layout(tmp_path)
    table = pa.table({"k": pa.array([1, 2, 3, 4], pa.int64()), "c": values})
    assert _stats(layout, table) == {"numRecords": 4, "nullCount": {"k": 0, "c": 0}}
    path = layout.output / "t"
    rows = deltalake.DeltaTable(str(path)).to_pyarrow_dataset(filesystem=local(path))
    for column, value in [("k", 3), ("c", values[2]), ("c", values[0])]:
        if value == value:  # NaN equals nothing
            assert rows.to_table(filter=pc.field(column) == value).num_rows == 1, value


def test_a_column_after_nested_ones_has_its_own_statistics(tmp_path: Path) -> None:
    # A struct, a list and a map take several Parquet columns (one per leaf): counted by
    # top-level position, `t` took the null count of `o.b`, and deltalake read it null.
    layout, _ = _layout(tmp_path)
    table = pa.table({
        "o": pa.array([{"a": 1, "b": None}, {"a": 2, "b": None}]),
        "l": pa.array([[1, 2], None]),
        "m": pa.array([[("k", 1)], [("j", None)]], pa.map_(pa.string(), pa.int64())),
        "t": pa.array([5, None], pa.int64()),
        "u": pa.array(["x", "y"], pa.string()),
    })
    # Nested columns have no bounds, so the file has none (see above).
    assert _stats(layout, table) == {"numRecords": 2, "nullCount": {"t": 1, "u": 0}}
    path = layout.output / "t"
    read = deltalake.DeltaTable(str(path)).to_pyarrow_table()
    assert read.select(["o", "t", "u"]).to_pylist() == table.select(["o", "t", "u"]).to_pylist()
    rows = deltalake.DeltaTable(str(path)).to_pyarrow_dataset(filesystem=local(path))
    assert rows.to_table(filter=pc.field("t") == 5).num_rows == 1


def test_a_decimal_column_commits_without_bounds_and_reads_back(tmp_path: Path) -> None:
    layout, _ = _layout(tmp_path)
    prices = [decimal.Decimal("9.99"), decimal.Decimal("0.01")]
    table = pa.table({"k": [1, 2], "price": pa.array(prices, pa.decimal128(10, 2))})
    assert _stats(layout, table) == {"numRecords": 2, "nullCount": {"k": 0, "price": 0}}
    read = deltalake.DeltaTable(str(layout.output / "t")).to_pyarrow_table()
    assert read.column("price").to_pylist() == prices


@pytest.mark.parametrize("name", ["shop", "\U00020bb7"])
def test_a_filter_past_a_character_beyond_u_ffff_finds_its_file(
    tmp_path: Path, name: str
) -> None:
    # Written as an escape pair, `𠮷` read back 0x10000 lower: the file's max was taken
    # to be below it, and a filter for it skipped the file (a column so named: every one).
    layout, _ = _layout(tmp_path)
    shops = ["\U00020bb7\u91ce\u5bb6", "\u3059\u304d\u5bb6"]
    _stats(layout, pa.table({name: shops}))
    table = deltalake.DeltaTable(str(layout.output / "t"))
    for value in shops:
        found = table.to_pyarrow_table(filters=[(name, "=", value)])
        assert found.column(name).to_pylist() == [value]


def test_a_checkpoint_leaves_out_the_tombstones_past_the_tables_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What TOMBSTONE_RETENTION relies on: deltalake writes into a checkpoint only the
    removed parts younger than the table's deletedFileRetentionDuration. Here none is
    young enough; with the week an older release set, every compaction's are there."""
    removed, tombstones = {}, 0
    for retention in ("interval 0 seconds", "interval 7 days"):
        monkeypatch.setitem(delta.CONFIGURATION, "delta.deletedFileRetentionDuration", retention)
        layout, seed = _layout(tmp_path / retention.replace(" ", "-"))
        live: list[str] = []
        tombstones = 0
        for n in range(delta.CHECKPOINT_EVERY):  # the checkpoint comes with the last
            if len(live) < 10:
                live.append(_part(layout, seed, n))
                delta.commit(layout, delta.Change("t", add=[live[-1]]), CrashPlan())
            else:  # a compaction: the ten parts out, one in
                merged = _part(layout, seed, n)
                delta.commit(layout, delta.Change("t", add=[merged], remove=live,
                                                  data_change=False), CrashPlan())
                tombstones += len(live)
                live = [merged]
        log = layout.output / "t" / "_delta_log"
        [checkpoint] = log.glob("*.checkpoint.parquet")
        actions = pq.read_table(checkpoint)
        removed[retention] = actions.num_rows - actions.column("remove").null_count
        assert deltalake.DeltaTable(str(layout.output / "t")).count() == 3 * len(live)
    assert tombstones > 50
    assert removed == {"interval 0 seconds": 0, "interval 7 days": tombstones}


def _age(log: Path, seconds: float) -> list[str]:
    """Every entry now in the log made `seconds` older; their names."""
    names = sorted(p.name for p in log.iterdir() if p.name[0].isdigit())
    for name in names:
        then = (log / name).stat().st_mtime - seconds
        os.utime(log / name, (then, then))
    return names


@pytest.mark.parametrize("retention", ["interval 1 hour", "interval 7 days"])
def test_log_entries_past_the_retention_are_deleted_once_a_checkpoint_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retention: str
) -> None:
    """Each commit lists the whole log folder, so the log must not grow with every commit
    ever made: the entries older than the table's logRetentionDuration that a checkpoint
    has made needless are deleted once the next checkpoint is on disk (not by the commits
    before it, whose deletions could take a checkpoint still unsynced), and the table
    still reads every part, with its txn."""
    monkeypatch.setitem(delta.CONFIGURATION, "delta.logRetentionDuration", retention)
    layout, seed = _layout(tmp_path)
    every = delta.CHECKPOINT_EVERY
    for n in range(every):
        delta.commit(layout, delta.Change("t", add=[_part(layout, seed, n)]), CrashPlan())
    log = layout.output / "t" / "_delta_log"
    aged = _age(log, 2 * 3600)  # two hours ago: versions 0 to every - 1, a checkpoint
    for n in range(every, 2 * every):
        delta.commit(layout, delta.Change("t", add=[_part(layout, seed, n)]), CrashPlan())
        if n == every:
            assert set(aged) <= {p.name for p in log.iterdir()}, "not before a checkpoint"
    left = {p.name for p in log.iterdir()}
    if retention == "interval 7 days":
        assert set(aged) <= left
    else:
        # What a reader of the latest version needs is the newest checkpoint (2 * every - 1)
        # and the entries after it: every aged entry before the first checkpoint is gone.
        assert not {name for name in aged if int(name.split(".")[0]) < every - 1} & left
        assert f"{2 * every - 1:020d}.checkpoint.parquet" in left
    assert len([name for name in left if name.endswith(".json")]) >= every
    table = deltalake.DeltaTable(str(layout.output / "t"))
    assert table.transaction_version(delta.APP_ID) == 2 * every
    assert table.count() == 3 * 2 * every
    path = layout.output / "t"
    assert table.to_pyarrow_dataset(filesystem=local(path)).count_rows() == 3 * 2 * every


def test_a_cleanup_that_fails_does_not_fail_the_commit_it_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting expired entries is housekeeping after a commit already in the log: if it
    fails (a file that cannot be deleted, as root cannot be made here, so deltalake's call
    is made to raise), the commit stands, and the next checkpoint tries again."""
    layout, seed = _layout(tmp_path)

    def refuse(self: object) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(deltalake.DeltaTable, "cleanup_metadata", refuse)
    for n in range(delta.CHECKPOINT_EVERY + 1):
        assert delta.commit(layout, delta.Change("t", add=[_part(layout, seed, n)]),
                            CrashPlan()) == n + 1
    table = deltalake.DeltaTable(str(layout.output / "t"))
    assert table.transaction_version(delta.APP_ID) == delta.CHECKPOINT_EVERY + 1
    assert table.count() == 3 * (delta.CHECKPOINT_EVERY + 1)
    assert "expired Delta log entries left for the next checkpoint" in caplog.text
