"""A lost or damaged ledger: refuse to start, say how to rebuild, never re-ingest silently."""

from __future__ import annotations

import json

from ..conftest import Folder, write_csv


def _ingest_some(folder: Folder) -> dict[str, int]:
    folder.write_config(watch={"settle_ms": 0, "on_success": "keep"}, pipeline={"workers": 2})
    expected = {f"f{i}.csv": len(write_csv(folder.drop / f"f{i}.csv", 10 + i, i)) for i in range(8)}
    (folder.drop / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    assert folder.ingest("once").returncode == 3
    return expected


def _rows(folder: Folder) -> dict[str, int]:
    return {
        str(k): int(v)  # type: ignore[call-overload]
        for k, v in folder.query("SELECT source_file, count(*) FROM records GROUP BY 1")
    }


def test_missing_ledger_with_existing_output_refuses_to_start(folder: Folder) -> None:
    expected = _ingest_some(folder)
    (folder.output / "_ingest" / "ledger.sqlite").unlink()

    result = folder.ingest("once")

    assert result.returncode == 2
    assert "ingest ledger rebuild" in result.stderr
    assert result.stderr.count("\n") == 1
    assert _rows(folder) == expected, "nothing was ingested again"


def test_corrupt_ledger_refuses_to_start_with_the_rebuild_command(folder: Folder) -> None:
    expected = _ingest_some(folder)
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    for extra in ("-wal", "-shm"):
        ledger.with_name(ledger.name + extra).unlink(missing_ok=True)
    ledger.write_bytes(b"this is not a database" * 100)

    result = folder.ingest("once")

    assert result.returncode == 2, result.stderr
    assert "ingest ledger rebuild" in result.stderr
    assert _rows(folder) == expected


def test_rebuilt_ledger_knows_every_ingested_and_quarantined_file(folder: Folder) -> None:
    expected = _ingest_some(folder)
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    ledger.unlink()

    rebuilt = folder.ingest("ledger", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    again = folder.ingest("once")

    assert again.returncode == 0, again.stderr
    assert _rows(folder) == expected, "inputs still in the drop folder are not ingested again"
    # Known by (path, size, mtime), as before the loss: not read again, nor a duplicate of itself.
    assert "0 duplicates" in again.stderr and "9 already known" in again.stderr, again.stderr
    status = json.loads(folder.ingest("status", "--json").stdout)
    assert {k: v for k, v in status["counts"].items() if v} == {"ingested": 8, "quarantined": 1}
    assert status["backlog"] == 0
