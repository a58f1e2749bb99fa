"""The Delta log stays quick to open: a checkpoint every CHECKPOINT_EVERY commits, each
commit's txn version one above the last, and a version already in the log refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

deltalake = pytest.importorskip("deltalake")

from ingest.store import delta  # noqa: E402
from ingest.store.crashpoints import CrashPlan  # noqa: E402
from ingest.store.layout import Layout  # noqa: E402

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
