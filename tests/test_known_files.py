"""A ledger of more inputs than memory holds (`pipeline.known_files`): a file already
recorded is still skipped, and the same bytes under a new name are still a duplicate,
through `ingest once` and a running `ingest run`, from answers only the ledger has."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Folder, Service, drop_by_rename, free_port, metric, wait_for, write_csv

FILES = 6


def _ledger(folder: Folder) -> Path:
    return folder.output / "_ingest" / "ledger.sqlite"


def _states(folder: Folder) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(_ledger(folder)) as db:
        rows = db.execute("SELECT path, state, duplicate_of FROM files").fetchall()
    return {path: (state, original) for path, state, original in rows}


def _csv(folder: Folder, name: str, seed: int) -> bytes:
    """The bytes of a CSV made from `seed`: the same seed, the same bytes."""
    path = folder.root / "made" / name
    write_csv(path, rows=20, seed=seed)
    return path.read_bytes()


def test_once_finds_copies_of_inputs_memory_let_go_of(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 2, "known_files": 2})
    for i in range(FILES):
        (folder.drop / f"a{i}.csv").write_bytes(_csv(folder, f"a{i}.csv", i))
    first = folder.ingest("once")
    assert first.returncode == 0, first.stderr
    assert f"ingested {FILES} files" in first.stderr

    # The same bytes again under new names (the first run archived the originals), and
    # one new file: only the newest two inputs are in memory at start-up.
    for i in range(FILES):
        (folder.drop / f"b{i}.csv").write_bytes(_csv(folder, f"b{i}.csv", i))
    (folder.drop / "c.csv").write_bytes(_csv(folder, "c.csv", 100))
    second = folder.ingest("once")

    assert second.returncode == 0, second.stderr
    assert f"ingested 1 files (20 rows), {FILES} duplicates" in second.stderr
    assert "knows more inputs than known_files = 2" in second.stderr
    states = _states(folder)
    assert {f"b{i}.csv": states[f"b{i}.csv"] for i in range(FILES)} == {
        f"b{i}.csv": ("duplicate", f"a{i}.csv") for i in range(FILES)
    }
    assert folder.rows_per_file() == {**{f"a{i}.csv": 20 for i in range(FILES)}, "c.csv": 20}


def test_once_in_keep_mode_skips_every_input_the_ledger_holds(folder: Folder) -> None:
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep"}, pipeline={"workers": 2, "known_files": 2}
    )
    for i in range(FILES):
        write_csv(folder.drop / f"a{i}.csv", rows=20, seed=i)
    assert folder.ingest("once").returncode == 0

    write_csv(folder.drop / "new.csv", rows=20, seed=100)
    again = folder.ingest("once")

    assert again.returncode == 0, again.stderr
    assert "ingested 1 files (20 rows)" in again.stderr
    assert f"{FILES} already known" in again.stderr
    # Every run finds them again: their lines are DEBUG, not INFO.
    assert "skipped a" not in again.stderr
    assert len(_states(folder)) == FILES + 1, "nothing recorded twice"
    status = json.loads(folder.ingest("status", "--json").stdout)
    assert status["backlog"] == 0
    assert status["counts"]["ingested"] == FILES + 1

    debug = folder.ingest("once", "--log-level", "DEBUG")
    assert debug.returncode == 0, debug.stderr
    skipped = sorted(line.split(" skipped ", 1)[1] for line in debug.stderr.splitlines()
                     if " skipped " in line)
    assert skipped == sorted([f"a{i}.csv state=ingested" for i in range(FILES)]
                             + ["new.csv state=ingested"])


def test_run_in_keep_mode_counts_an_input_known_already_once_not_at_every_rescan(
    folder: Folder, service: Callable[..., Service]
) -> None:
    """Past known_files each rescan asks the ledger about the inputs memory let go of, and
    counted each as `already known` again: 20 at every rescan for a folder of 30. Those
    that a run finds recorded at its start are counted once; no rescan counts any."""
    port = free_port()
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep", "rescan_s": 1},
        pipeline={"workers": 2, "known_files": 2}, metrics={"port": port},
    )
    for i in range(FILES):
        write_csv(folder.drop / f"a{i}.csv", rows=20, seed=i)

    def run_through_rescans() -> str:
        svc = service("--log-level", "DEBUG")
        svc.wait_ready()
        wait_for(lambda: svc.text().count("rescan found") >= 3, what="three rescans")
        skipped = metric(port, 'ingest_files_total{outcome="skipped"}')
        assert svc.stop() == 0, svc.text()
        last = svc.text().strip().splitlines()[-1]
        assert skipped == float(last.split(" already known")[0].rsplit(" ", 1)[1]), last
        return last

    first = run_through_rescans()
    assert f"ingested {FILES} files" in first and " 0 already known" in first, first
    assert f"ingested 0 files (0 rows), 0 duplicates, 0 quarantined, {FILES} already known" \
        in run_through_rescans()
    assert len(_states(folder)) == FILES, "nothing recorded twice"


def test_a_file_found_again_after_its_commit_has_a_line_saying_so(folder: Folder) -> None:
    """A file the ledger holds, found again under its name, size and mtime (put back by
    hand, or left by a crash between the commit and the archive's move): skipped, and its
    own line says so."""
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 1})
    content = _csv(folder, "a.csv", 1)
    (folder.drop / "a.csv").write_bytes(content)
    assert folder.ingest("once").returncode == 0
    [archived] = folder.archive.rglob("a*.csv")
    back = folder.drop / "a.csv"
    back.write_bytes(content)
    os.utime(back, ns=(archived.stat().st_atime_ns, archived.stat().st_mtime_ns))

    again = folder.ingest("once")

    assert again.returncode == 0, again.stderr
    assert "1 already known" in again.stderr
    [line] = [line for line in again.stderr.splitlines() if " skipped " in line]
    assert "INFO" in line and line.endswith("skipped a.csv state=ingested"), line
    assert not back.exists(), "the archive's move is finished"


def test_a_running_service_past_its_bound_still_finds_old_copies(
    folder: Folder, service: Callable[..., Service]
) -> None:
    """Memory outgrows its bound while the service runs: the answers it lets go of are
    then asked of the ledger, which is given the sha256 index it needs."""
    port = free_port()
    folder.write_config(
        watch={"settle_ms": 20, "rescan_s": 60},
        pipeline={"workers": 2, "known_files": 3},
        output={"flush_s": 0},
        metrics={"port": port},
    )
    running = service()
    running.wait_ready()
    for i in range(FILES):
        drop_by_rename(folder, f"a{i}.csv", _csv(folder, f"a{i}.csv", i))
        # Memory remembers each input recorded, up to known_files.
        wait_for(
            lambda i=i: f"a{i}.csv" in _states(folder)
            and metric(port, "ingest_known_inputs") == min(i + 1, 3),
            what=f"a{i}.csv recorded, and at most 3 inputs remembered",
        )

    for i in range(FILES):
        drop_by_rename(folder, f"b{i}.csv", _csv(folder, f"b{i}.csv", i))
    wait_for(lambda: all(f"b{i}.csv" in _states(folder) for i in range(FILES)),
             what="the copies recorded")

    assert running.stop() == 0, running.text()
    assert "memory now holds the newest 3 inputs the ledger knows" in running.text()
    states = _states(folder)
    assert {f"b{i}.csv": states[f"b{i}.csv"] for i in range(FILES)} == {
        f"b{i}.csv": ("duplicate", f"a{i}.csv") for i in range(FILES)
    }
    assert folder.rows_per_file() == {f"a{i}.csv": 20 for i in range(FILES)}
    with sqlite3.connect(_ledger(folder)) as db:
        indexes = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "files_sha" in indexes


@pytest.mark.slow
def test_twenty_thousand_inputs_past_a_bound_of_two_thousand_are_told_apart_by_the_ledger(
    folder: Folder,
) -> None:
    """At scale: a restart over 20,000 kept inputs, 18,000 of them no longer in memory,
    reads none again; 3,000 copies of the oldest, under new names, are duplicates."""
    folder.write_config(
        watch={"settle_ms": 0, "on_success": "keep"},
        pipeline={"workers": 2, "known_files": 2000},
    )
    tiny = "timestamp,v\n1700000000000,{v}\n"
    for i in range(20_000):
        path = folder.drop / f"batch{i // 5000}" / f"t{i:05d}.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_text(tiny.format(v=i))
    first = folder.ingest("once", timeout=600)
    assert first.returncode == 0 and "ingested 20000 files" in first.stderr, first.stderr[-2000:]

    again = folder.ingest("once", timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ingested 0 files" in again.stderr and "20000 already known" in again.stderr

    (folder.drop / "copies").mkdir()
    for i in range(3000):
        (folder.drop / "copies" / f"c{i:05d}.csv").write_text(tiny.format(v=i))
    copies = folder.ingest("once", timeout=600)
    assert copies.returncode == 0, copies.stderr[-2000:]
    assert "ingested 0 files (0 rows), 3000 duplicates" in copies.stderr
    assert "20000 already known" in copies.stderr
    states = _states(folder)
    assert len(states) == 23_000, "each input recorded once"
    assert all(
        states[f"copies/c{i:05d}.csv"] == ("duplicate", f"batch{i // 5000}/t{i:05d}.csv")
        for i in range(3000)
    )
