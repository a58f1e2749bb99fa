"""`ingest status` fits a screen however many files were quarantined; `--json` lists all."""

from __future__ import annotations

import json

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
