"""send = "paths" with the local process pool: workers read the files themselves.

Real `ingest` processes over real files; the output read back with DuckDB.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable

import pytest

from ..conftest import (
    ROOT,
    Folder,
    Service,
    drop_by_rename,
    free_port,
    metric,
    wait_for,
    write_csv,
)
from ..corpus import check_corpus_once, write_corpus
from ..plugin_sets import SLOW_MARK


def test_send_paths_with_the_local_pool_ingests_a_mixed_folder_exactly_once(
    folder: Folder,
) -> None:
    folder.write_config(
        watch={"settle_ms": 0}, pipeline={"workers": 2, "send": "paths"}, output={"flush_s": 0.2}
    )
    corpus = write_corpus(folder)

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    check_corpus_once(folder, corpus)
    assert "2 duplicates" in result.stderr


def _readings(value: float) -> bytes:
    """40 rows of one value: the same size whatever the value's one digit."""
    return b"timestamp,v\n" + b"".join(b"%d,%.1f\n" % (i, value) for i in range(40))


@pytest.mark.timeout(120)
def test_files_changed_after_they_were_queued_are_read_as_they_are_when_the_worker_reads_them(
    folder: Folder, service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four files wait in the queue for the one worker, busy with a slow file: one grows,
    one is rewritten in place (same size, its mtime put back, which the commit's own
    check cannot see), one is written again at its size, one is deleted. None is
    committed with bytes it no longer holds."""
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 2},
        pipeline={"workers": 1, "send": "paths"},
        features={"sets": ["summary", "tests.plugin_sets:slow"]},  # 0.05 s per column
        output={"flush_s": 0.1},
        metrics={"port": (port := free_port())},
    )
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # workers import the test feature sets
    busy = folder.root / "busy"
    monkeypatch.setenv(SLOW_MARK, str(busy))
    proc = service()
    proc.wait_ready()
    write_csv(folder.root / "blocker.csv", 5, 1, columns=60)  # 3 s in the worker
    os.replace(folder.root / "blocker.csv", folder.drop / "blocker.csv")
    wait_for(busy.exists, 30, "the worker to have the blocker")
    for name in ("grown.csv", "rewritten.csv", "touched.csv", "gone.csv"):
        drop_by_rename(folder, name, _readings(1.5))
    # Settled and admitted (each holds its size in the byte budget until it is resolved):
    # their task waits for the busy worker.
    held = (folder.drop / "blocker.csv").stat().st_size + 4 * len(_readings(1.5))
    wait_for(lambda: (metric(port, "ingest_bytes_held") or 0) >= held, 30, "the files queued")
    with (folder.drop / "grown.csv").open("ab") as fh:
        fh.write(b"40,2.5\n")
    rewritten = folder.drop / "rewritten.csv"
    before = rewritten.stat()
    rewritten.write_bytes(_readings(2.5))  # in place: the same size
    os.utime(rewritten, ns=(before.st_atime_ns, before.st_mtime_ns))
    touched = folder.drop / "touched.csv"
    before = touched.stat()
    touched.write_bytes(_readings(3.5))
    os.utime(touched, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    (folder.drop / "gone.csv").unlink()

    wait_for(lambda: not list(folder.drop.glob("*.csv")), 60, "the drop folder to empty")
    assert proc.stop() == 0, proc.text()

    assert folder.rows_per_file() == {
        "blocker.csv": 5, "grown.csv": 41, "rewritten.csv": 40, "touched.csv": 40
    }
    for name in ("grown.csv", "rewritten.csv", "touched.csv"):
        content = (folder.archive.glob(f"*/{name}").__next__()).read_bytes()
        assert folder.query(
            f"SELECT DISTINCT source_sha256 FROM records WHERE source_file = '{name}'"
        ) == [(hashlib.sha256(content).hexdigest(),)], name
    for name, value in (("rewritten.csv", 2.5), ("touched.csv", 3.5)):
        assert folder.query(
            f"SELECT DISTINCT v FROM records WHERE source_file = '{name}'"
        ) == [(value,)], name
    assert not list(folder.quarantine.iterdir())
    # Found by the worker, for that file alone, not by the commit for its whole task.
    log = proc.text()
    assert "changed grown.csv " in log and "grew past the 282 bytes" in log, log
    assert "vanished gone.csv " in log and "gone when a worker went to read it" in log, log
    assert "changed touched.csv " in log and "written again after it settled" in log, log
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM files WHERE path = 'gone.csv'").fetchone() == (0,)
    # Gone before its worker read it: `explain` tells it as a vanished version, as it does
    # a file the service found gone.
    explained = folder.ingest("explain", "gone.csv", "--json", timeout=60)
    assert explained.returncode == 0, explained.stderr
    [version] = json.loads(explained.stdout)["versions"]
    assert (version["state"], version["sha256"]) == ("vanished", None)
    assert version["size"] == len(_readings(1.5))
