"""`ingest status` fits a screen however many files were quarantined; `--json` lists all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ingest.store.status import QUARANTINED_SHOWN

from ..conftest import Folder


def test_status_shows_the_newest_quarantined_files_and_json_every_one(folder: Folder) -> None:
    folder.write_config(pipeline={"workers": 1})
    count = QUARANTINED_SHOWN + 3
    for i in range(count):
        (folder.drop / f"bad{i:02d}.csv").write_bytes(b"")  # "Empty CSV file"
    assert folder.ingest("once").returncode == 3

    text = folder.ingest("status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert f"quarantined: {count}" in lines
    shown = [line for line in lines if line.startswith("  bad")]
    assert len(shown) == QUARANTINED_SHOWN
    assert "  ... 3 quarantined before these: `ingest status --json` lists every one" in lines
    assert lines[-len(shown):] == shown  # the newest, last

    listed = json.loads(folder.ingest("status", "--json").stdout)["quarantined"]
    assert sorted(q["file"] for q in listed) == [f"bad{i:02d}.csv" for i in range(count)]
    assert {q["file"] for q in listed[-QUARANTINED_SHOWN:]} == {
        line.strip().split(":")[0] for line in shown
    }


def _ledger_lost(folder: Folder) -> Path:
    """One file committed, then the ledger removed; its path."""
    folder.write_config(pipeline={"workers": 1})
    (folder.drop / "a.csv").write_text("a,b\n1,2\n")
    assert folder.ingest("once").returncode == 0
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (folder.output / "_ingest" / name).unlink(missing_ok=True)
    return ledger


# Status reported every count as 0 over an output folder of committed parts; explain said
# "unknown input: the ledger has no record of it" and exited 1.
@pytest.mark.parametrize("command, why", [
    (("status",), "there is nothing to count from"),
    (("explain", "a.csv"), "no input's history can be told"),
], ids=["status", "explain"])
def test_a_ledger_missing_beside_part_files_is_said_rather_than_read_as_empty(
    folder: Folder, command: tuple[str, ...], why: str
) -> None:
    ledger = _ledger_lost(folder)

    shown = folder.ingest(*command)

    assert shown.returncode == 2, shown.stdout
    assert shown.stdout == ""
    assert shown.stderr.strip().splitlines() == [
        f"ingest: {ledger} is missing but {folder.output} holds 2 part files: {why}."
        " Restore the ledger, or run `ingest ledger rebuild` to rebuild it from the part"
        " files"
    ]


def test_status_of_an_output_folder_not_yet_written_counts_nothing(folder: Folder) -> None:
    shown = folder.ingest("status")
    assert shown.returncode == 0, shown.stderr
    assert not (folder.output / "_ingest").exists()


def test_compact_with_its_ledger_missing_exits_2_naming_the_rebuild(folder: Folder) -> None:
    ledger = _ledger_lost(folder)

    compacted = folder.ingest("compact")

    assert compacted.returncode == 2, compacted.stderr
    assert compacted.stderr.strip().splitlines() == [
        f"ingest: {ledger} is missing; run `ingest ledger rebuild` before compacting"
    ]


def test_status_after_a_ledger_rebuild_shows_each_table_as_before(folder: Folder) -> None:
    # It showed no table at all until the next run, and then each at schema v1.
    folder.write_config(pipeline={"workers": 1})
    (folder.drop / "a.csv").write_text("a,b\n1,2\n")
    assert folder.ingest("once").returncode == 0
    (folder.drop / "b.csv").write_text("a,b,c\n3,4,x\n")  # a column more: schema v2
    assert folder.ingest("once").returncode == 0
    before = json.loads(folder.ingest("status", "--json").stdout)["tables"]
    assert before["records"]["schema_version"] == 2 and before["records"]["columns"] >= 3
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (folder.output / "_ingest" / name).unlink(missing_ok=True)

    rebuilt = folder.ingest("ledger", "rebuild")

    assert rebuilt.returncode == 0, rebuilt.stderr
    # Three commits: each file's, and the rewrite of a.csv's part to schema v2.
    assert "rebuilt the ledger: 3 commits, 4 part files, 2 ingested" in rebuilt.stdout
    assert json.loads(folder.ingest("status", "--json").stdout)["tables"] == before


def test_a_folder_name_that_is_not_utf8_is_shown_as_the_log_shows_names(
    folder: Folder,
) -> None:
    # `--json` carried its byte as a lone surrogate, `\udce4`, which strict readers refuse.
    drop = folder.root / os.fsdecode(b"d\xe4")
    drop.mkdir()
    result = folder.ingest("status", "--json", "--drop", str(drop), timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["drop"] == str(folder.root) + "/d\\xe4"
