"""What the intake accepts, ignores, and refuses: real files, the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from ingest.selection import matches, regular_file, scan

from .conftest import Folder, write_csv


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("a.csv", True),
        ("a.csv.gz", True),
        ("a.jsonl", True),
        ("a.npz", True),
        (".a.csv", False),
        ("a.csv.tmp", False),
        ("a.csv.part", False),
        ("a.csv~", False),
        ("a.txt", False),
    ],
)
def test_names_match_patterns_but_never_hidden_or_temp_names(name: str, accepted: bool) -> None:
    patterns = ("*.csv", "*.csv.gz", "*.jsonl", "*.npz", "*.csv.tmp", "*.csv.part")
    assert matches(name, patterns) is accepted


def test_fifo_directory_and_outside_symlink_are_not_regular_inputs(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    os.mkfifo(drop / "pipe.csv")
    (drop / "folder.csv").mkdir()
    (drop / "escape.csv").symlink_to(outside)
    (drop / "inside.csv").write_text("a\n1\n")
    (drop / "link.csv").symlink_to(drop / "inside.csv")

    assert regular_file(drop / "pipe.csv", drop) is None
    assert regular_file(drop / "folder.csv", drop) is None
    assert regular_file(drop / "escape.csv", drop) is None
    assert regular_file(drop / "inside.csv", drop) is not None
    assert regular_file(drop / "link.csv", drop) is not None


def test_a_scan_finds_inputs_in_subfolders_and_nothing_it_must_not_open(tmp_path: Path) -> None:
    drop, outside = tmp_path / "drop", tmp_path / "outside"
    (drop / "a" / "b").mkdir(parents=True)
    (drop / ".hidden").mkdir()
    outside.mkdir()
    for name in ("top.csv", "a/one.csv", "a/b/two.jsonl", ".hidden/no.csv", "a/skip.txt",
                 "a/temp.csv.part"):
        (drop / name).write_text("x\n1\n")
    (outside / "far.csv").write_text("x\n1\n")
    (outside / "inner.csv").write_text("x\n1\n")
    (drop / "far.csv").symlink_to(outside / "far.csv")  # a file outside: refused
    (drop / "near.csv").symlink_to(drop / "top.csv")  # a file inside: an input
    (drop / "linked").symlink_to(outside, target_is_directory=True)  # never entered
    os.mkfifo(drop / "pipe.csv")
    skipped: list[str] = []

    found = {
        os.path.relpath(path, drop): st.st_size
        for path, st in scan(drop, ("*.csv", "*.jsonl"), lambda p, _: skipped.append(Path(p).name))
    }

    assert found == {"top.csv": 4, "a/one.csv": 4, "a/b/two.jsonl": 4, "near.csv": 4}
    assert sorted(skipped) == ["far.csv", "pipe.csv"]


def test_once_skips_a_fifo_without_blocking_and_ingests_the_rest(folder: Folder) -> None:
    os.mkfifo(folder.drop / "pipe.csv")
    write_csv(folder.drop / "real.csv", rows=10, seed=1)

    result = folder.ingest("once", timeout=60)

    assert result.returncode == 0, result.stderr
    rows = folder.query("SELECT source_file, count(*) FROM records GROUP BY 1")
    assert rows == [("real.csv", 10)]


def test_a_file_larger_than_memory_mb_that_cannot_be_read_in_blocks_is_quarantined(
    folder: Folder,
) -> None:
    folder.write_config(pipeline={"workers": 1, "memory_mb": 1}, watch={"settle_ms": 0})
    write_csv(folder.root / "big.csv", rows=40_000, seed=1)
    big = folder.drop / "big.parquet"
    pq.write_table(pa_csv.read_csv(folder.root / "big.csv"), big, compression="none")
    assert big.stat().st_size > 1 << 20
    write_csv(folder.drop / "small.csv", rows=10, seed=2)

    result = folder.ingest("once")

    assert result.returncode == 3, result.stderr
    report = json.loads((folder.quarantine / "big.parquet.error.json").read_text())
    assert report["error"] == "TooLarge"
    assert "memory_mb" in report["message"] and "read in blocks" in report["message"]
    assert folder.query("SELECT DISTINCT source_file FROM records") == [("small.csv",)]


def test_a_file_with_an_mtime_in_the_future_is_not_held_forever(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 200}, pipeline={"workers": 1})
    path = folder.drop / "future.csv"
    write_csv(path, rows=10, seed=1)
    future = time.time() + 3600
    os.utime(path, (future, future))

    # Held until its mtime came, the run would outlast the timeout, which raises.
    result = folder.ingest("once", timeout=60)

    assert result.returncode == 0, result.stderr
    assert folder.query("SELECT count(*) FROM records") == [(10,)]


def test_json_log_format_gives_one_json_object_per_line_with_each_outcome(folder: Folder) -> None:
    write_csv(folder.drop / "ok.csv", rows=10, seed=1)
    (folder.drop / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")

    result = folder.ingest("once", "--log-format", "json")

    assert result.returncode == 3
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    outcomes = {e["file"]: e for e in entries if "event" in e}
    assert outcomes["ok.csv"]["event"] == "ingested"
    assert outcomes["ok.csv"]["rows"] == 10
    assert outcomes["ok.csv"]["latency_ms"] >= 0
    assert outcomes["bad.csv"]["event"] == "quarantined"
    assert outcomes["bad.csv"]["line"] == 3


def test_drop_folder_that_cannot_be_created_exits_2_naming_the_key(folder: Folder) -> None:
    (folder.root / "not_a_dir").write_text("")
    folder.write_config(paths={"drop": "not_a_dir/drop"})

    result = folder.ingest("once")

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "[paths] drop" in result.stderr


# Root reads everything; without these capabilities the permission bits bind it too.
DROP_ROOT_POWERS = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_unreadable_drop_folder_exits_2_naming_the_key(folder: Folder) -> None:
    folder.drop.chmod(0o000)
    try:
        result = subprocess.run(
            [*DROP_ROOT_POWERS, sys.executable, "-m", "ingest", "once",
             "--config", str(folder.config)],
            cwd=folder.root, capture_output=True, text=True, timeout=60,
        )
    finally:
        folder.drop.chmod(0o755)

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "[paths] drop" in result.stderr and "permission" in result.stderr


def test_a_feature_set_that_cannot_be_loaded_exits_2_naming_the_key(folder: Folder) -> None:
    folder.write_config(features={"sets": ["summary", "no_such_package.mod:fn"]})
    write_csv(folder.drop / "a.csv", rows=10, seed=1)

    result = folder.ingest("once")

    assert result.returncode == 2
    assert "[features] sets" in result.stderr and "no_such_package" in result.stderr
    assert (folder.drop / "a.csv").exists(), "no input is touched, let alone quarantined"
