"""Hostile input (issue 3): every case ends ingested, or quarantined with a readable reason.

Each test drops the hostile file beside a good one and checks that the service
stays up (the good file is ingested; `ingest run` keeps ingesting afterwards),
and that nothing from a quarantined file reaches `records` or `features`.

Policies pinned down here, as the code has them:
- a zero-byte CSV is quarantined ("Empty CSV file"); a header-only CSV is
  ingested with zero rows, and adds no rows to either table;
- a column whose type changes between files follows its table's one schema:
  int64 and double widen to DOUBLE, text in a numeric column is rescued into
  `_rescued_data`, and every reader reads the table with no options;
- a directory named like an input is a folder: the files in it are inputs,
  named "<dir>/<file>" in `source_file`;
- a file that is not readable is logged as unreadable, left where it is, and
  tried again at every rescan.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.files import mtime_ns

from ..conftest import ROOT, Folder, Service, drop_by_rename, wait_for, write_csv

ONCE = {"watch": {"settle_ms": 0}, "pipeline": {"workers": 1}, "output": {"flush_s": 0.2}}
LIVE = {
    "watch": {"settle_ms": 50, "rescan_s": 1},
    "pipeline": {"workers": 1},
    "output": {"flush_s": 0.2},
}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
FAILED_COMMIT = re.compile(r"commit\b.*\bfailed")
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
# Root reads everything; without these capabilities the permission bits bind it too.
DROP_ROOT_POWERS = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


# ---- helpers ---------------------------------------------------------------


def good(folder: Folder, name: str, seed: int, rows: int = 20) -> int:
    """Drop a good CSV straight into the drop folder; returns its row count."""
    return len(write_csv(folder.drop / name, rows=rows, seed=seed))


def csv_bytes(rows: int, seed: int) -> bytes:
    """A good CSV's bytes, written nowhere the service looks."""
    lines = ["timestamp,x"] + [f"{1_700_000_000_000 + i},{seed}.{i:04d}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def once(folder: Folder, **config: dict[str, object]) -> subprocess.CompletedProcess[str]:
    folder.write_config(**{**ONCE, **config})
    return folder.ingest("once", timeout=60)


def records(folder: Folder) -> dict[str, int]:
    """Rows per source file in `records`, as a reader sees them."""
    if not folder.parts("records"):
        return {}
    rows = folder.query("SELECT source_file, count(*) FROM records GROUP BY 1")
    return {str(name): int(str(count)) for name, count in rows}


def output_rows_of(folder: Folder, name: str) -> int:
    """Rows naming `name` in either table."""
    total = 0
    for table in ("records", "features"):
        if folder.parts(table):
            quoted = name.replace("'", "''")
            ((count,),) = folder.query(
                f"SELECT count(*) FROM {table} WHERE source_file = '{quoted}'"
            )
            total += int(str(count))
    return total


def quarantined(folder: Folder, name: str) -> dict[str, object]:
    """The error report of a quarantined input, checked for the fields the SPEC promises."""
    report_path = folder.quarantine / f"{name}.error.json"
    assert report_path.is_file(), f"no {report_path.name}; quarantine holds {_listing(folder)}"
    report: dict[str, object] = json.loads(report_path.read_text())
    assert report["file"] == name
    assert isinstance(report["error"], str) and report["error"]
    assert isinstance(report["message"], str) and report["message"].strip()
    assert isinstance(report["attempts"], int) and report["attempts"] >= 1
    assert ISO_UTC.fullmatch(str(report["time"])), report["time"]
    assert (folder.quarantine / name).is_file(), "the bad input sits beside its report"
    assert not (folder.drop / name).exists(), "the bad input left the drop folder"
    assert output_rows_of(folder, name) == 0, f"rows of quarantined {name!r} reached the output"
    return report


def _listing(folder: Folder) -> list[str]:
    if not folder.quarantine.exists():
        return []
    return sorted(p.name for p in folder.quarantine.iterdir())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def age(path: Path, seconds: float) -> None:
    """Set the mtime `seconds` in the past (negative: the future)."""
    when = time.time() - seconds
    os.utime(path, (when, when))


def drop_aged(folder: Folder, name: str, content: bytes) -> Path:
    """Deliver by rename a file whose mtime is already old: settled on first sight."""
    temp = folder.root / f"staging-{name}"
    temp.write_bytes(content)
    age(temp, 60)
    target = folder.drop / name
    os.replace(temp, target)
    return target


# ---- 1. ragged rows and bad quoting ------------------------------------------


def test_ragged_csv_row_is_quarantined_with_its_physical_line_number(folder: Folder) -> None:
    # A blank line before the bad row: the line is a line of the file, not Arrow's row count.
    (folder.drop / "ragged.csv").write_bytes(b"a,b\n1,2\n\n3,4\n5,6,7\n8,9\n")
    expected = {"fine.csv": good(folder, "fine.csv", seed=1)}

    result = once(folder)

    assert result.returncode == 3, result.stderr
    report = quarantined(folder, "ragged.csv")
    assert report["error"] == "DecodeError"
    assert report["line"] == 5
    assert "column" in str(report["message"])
    assert records(folder) == expected


def test_unterminated_quote_is_quarantined_with_the_line_it_opens_on(folder: Folder) -> None:
    (folder.drop / "quote.csv").write_bytes(b'a,b\n1,2\n3,"unterminated\n4,5\n6,7\n')
    expected = {"fine.csv": good(folder, "fine.csv", seed=1)}

    result = once(folder)

    assert output_rows_of(folder, "quote.csv") == 0, records(folder)
    assert result.returncode == 3, result.stderr
    report = quarantined(folder, "quote.csv")
    assert report["error"] == "DecodeError"
    assert report["line"] == 3
    assert records(folder) == expected


# ---- 2. truncated gzip, and not gzip at all ----------------------------------


def test_truncated_gzip_and_plain_text_named_csv_gz_are_quarantined_as_not_gzip(
    folder: Folder,
) -> None:
    whole = gzip.compress(csv_bytes(2000, seed=7))
    (folder.drop / "truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    (folder.drop / "plain.csv.gz").write_bytes(csv_bytes(10, seed=8))
    (folder.drop / "real.csv.gz").write_bytes(gzip.compress(csv_bytes(30, seed=9)))

    result = once(folder)

    assert result.returncode == 3, result.stderr
    for name in ("truncated.csv.gz", "plain.csv.gz"):
        report = quarantined(folder, name)
        assert report["error"] == "DecodeError"
        assert "gzip" in str(report["message"]).lower()
        assert isinstance(report["offset"], int)
    assert records(folder) == {"real.csv.gz": 30}


# ---- 3. encodings ----------------------------------------------------------------


def test_utf8_bom_is_stripped_from_the_first_column_name(folder: Folder) -> None:
    (folder.drop / "bom.csv").write_bytes(codecs.BOM_UTF8 + b"a,b\n1,2\n3,4\n")
    good(folder, "fine.csv", seed=1)

    result = once(folder)

    assert result.returncode == 0, result.stderr
    assert folder.query(
        "SELECT a, b FROM records WHERE source_file = 'bom.csv' ORDER BY a"
    ) == [(1, 2), (3, 4)]
    columns = {name for (name, *_) in folder.query("DESCRIBE records")}
    assert not any(name.startswith("\ufeff") for name in columns), columns


def test_non_utf8_text_is_decoded_or_quarantined_with_the_byte_offset(folder: Folder) -> None:
    data = "name,v\nJosé,1\nMüller,2\n".encode("latin-1")
    (folder.drop / "latin1.csv").write_bytes(data)
    good(folder, "fine.csv", seed=1)

    result = once(folder)

    if (folder.quarantine / "latin1.csv.error.json").exists():
        assert result.returncode == 3, result.stderr
        report = quarantined(folder, "latin1.csv")
        assert report["offset"] == data.index(b"\xe9")
    else:
        assert result.returncode == 0, result.stderr
        assert folder.query(
            "SELECT name FROM records WHERE source_file = 'latin1.csv' ORDER BY v"
        ) == [("José",), ("Müller",)]


def test_utf16_with_a_bom_is_decoded_and_ingested(folder: Folder) -> None:
    (folder.drop / "utf16.csv").write_bytes("a,b\n1,2\n3,4\n".encode("utf-16"))
    good(folder, "fine.csv", seed=1)

    result = once(folder)

    assert result.returncode == 0, result.stderr
    assert folder.query(
        "SELECT a, b FROM records WHERE source_file = 'utf16.csv' ORDER BY a"
    ) == [(1, 2), (3, 4)]


# ---- 4. zero-byte and header-only --------------------------------------------------


def test_zero_byte_csv_is_quarantined_and_header_only_csv_is_ingested_with_no_rows(
    folder: Folder,
) -> None:
    (folder.drop / "empty.csv").write_bytes(b"")
    # The good file's own header: the empty part's untyped columns meet typed ones.
    (folder.drop / "header.csv").write_bytes(b"timestamp,ch0,ch1,ch2\n")
    expected = {"fine.csv": good(folder, "fine.csv", seed=1)}

    result = once(folder)

    assert result.returncode == 3, result.stderr
    report = quarantined(folder, "empty.csv")
    assert report["error"] == "DecodeError"
    assert "empty" in str(report["message"]).lower()
    assert re.search(r"ingested header\.csv .*rows=0", result.stderr), result.stderr
    assert output_rows_of(folder, "header.csv") == 0
    assert records(folder) == expected
    # The zero-row part does not spoil the types of the dataset.
    types = dict((name, kind) for (name, kind, *_) in folder.query("DESCRIBE records"))
    assert types["timestamp"] == "BIGINT" and types["ch0"] == "DOUBLE", types
    status = json.loads(folder.ingest("status", "--json").stdout)
    assert status["counts"] == {"ingested": 2, "duplicate": 0, "quarantined": 1}


# ---- 5. one enormous line ----------------------------------------------------------

HUGE_MB = 24


def _enormous_line() -> bytes:
    """A header, then one line of HUGE_MB with no newline anywhere after it."""
    return b"timestamp,x\n1," + b"7" * (HUGE_MB << 20)


def test_enormous_line_beyond_memory_mb_is_quarantined_by_the_block_reader(
    folder: Folder,
) -> None:
    # Read in blocks of 1 MB, the line never ends: the reader gives up past the
    # record-size limit, holding no more than that limit of it.
    (folder.drop / "huge.csv").write_bytes(_enormous_line())
    expected = {"fine.csv": good(folder, "fine.csv", seed=1)}

    result = once(folder, pipeline={"workers": 1, "memory_mb": 8})

    assert result.returncode == 3, result.stderr
    report = quarantined(folder, "huge.csv")
    assert report["error"] == "DecodeError"
    assert report["line"] == 2
    assert "no record ends" in str(report["message"])
    assert records(folder) == expected


def test_enormous_line_within_memory_mb_is_quarantined_by_a_record_size_guard(
    folder: Folder,
) -> None:
    (folder.drop / "huge.csv").write_bytes(_enormous_line())
    expected = {"fine.csv": good(folder, "fine.csv", seed=1)}

    result = once(folder, pipeline={"workers": 1, "memory_mb": 4 * HUGE_MB})

    assert result.returncode == 3, result.stderr
    report = quarantined(folder, "huge.csv")
    assert report["error"] == "DecodeError"
    assert report["line"] == 2
    assert records(folder) == expected


# ---- 6. deleted between the event and the read --------------------------------------


def _held_back(
    folder: Folder, service: Callable[..., Service], name: str, **pipeline: object
) -> tuple[Service, Path]:
    """A service whose byte budget holds `name` between settling and reading while a slow
    file (60 columns x 50 ms of plugin time) occupies the one worker: the window for the
    test to take the file away. Needs PYTHONPATH to hold the test feature sets."""
    folder.write_config(
        watch={"settle_ms": 50, "rescan_s": 1},
        pipeline={"workers": 1, "memory_mb": 1, **pipeline},
        features={"sets": ["summary", "tests.plugin_sets:slow"]},
        output={"flush_s": 0.2},
    )
    svc = service()
    svc.wait_ready()
    width = 60
    blocker = ",".join(f"c{i}" for i in range(width)) + "\n" + "".join(
        ",".join(f"{r}.{c:04d}" for c in range(width)) + "\n" for r in range(1300)
    )
    assert 600_000 < len(blocker) < 1 << 20
    drop_aged(folder, "blocker.csv", blocker.encode())
    time.sleep(0.5)
    held = drop_aged(folder, name, b"x\n" + b"1.23456\n" * 80_000)
    time.sleep(0.7)
    assert name not in svc.text(), f"the budget should still hold {name} back"
    return svc, held


@pytest.mark.parametrize(("send", "reason"), [
    ("auto", "was gone when a worker went to read it"),  # the worker reads it
    ("bytes", "it was gone when it was read"),  # the service reads it
])
def test_file_deleted_while_waiting_to_be_read_is_logged_vanished_once_and_not_retried(
    folder: Folder, service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch,
    send: str, reason: str,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    svc, doomed = _held_back(folder, service, "doomed.csv", send=send)
    doomed.unlink()

    wait_for(lambda: "vanished doomed.csv" in svc.text(), 30, "doomed.csv to be logged vanished")
    wait_for(lambda: "blocker.csv" in records(folder), 30, "the blocker")
    time.sleep(2.5)  # two rescans: room for a retry loop to show itself
    drop_by_rename(folder, "after.csv", csv_bytes(10, seed=3))
    wait_for(lambda: "after.csv" in records(folder), 30, "a good file dropped afterwards")

    assert svc.stop() == 0, svc.text()
    log = svc.text()
    assert log.count("vanished doomed.csv") == 1, log
    (line,) = [line for line in log.splitlines() if "vanished doomed.csv" in line]
    assert reason in line, line
    assert "doomed.csv" not in records(folder)
    assert _listing(folder) == []
    # Settled, admitted, gone before it was read: `explain` tells it as a vanished version.
    explained = folder.ingest("explain", "doomed.csv", "--json", timeout=60)
    assert explained.returncode == 0, explained.stderr
    [version] = json.loads(explained.stdout)["versions"]
    assert (version["state"], version["sha256"]) == ("vanished", None)
    assert version["size"] == len(b"x\n" + b"1.23456\n" * 80_000)


@pytest.mark.parametrize("send", ["bytes", "paths"])
def test_file_replaced_by_a_fifo_while_waiting_to_be_read_is_logged_unreadable(
    folder: Folder, service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch, send: str
) -> None:
    """Held back by the byte budget, a file is replaced by a FIFO before its reader (the
    service with `bytes`, a worker with `paths`) opens it: an open to read would wait for
    a writer for ever, and every file after it with it."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    svc, swapped = _held_back(folder, service, "swapped.csv", send=send)
    swapped.unlink()
    os.mkfifo(swapped)

    wait_for(lambda: "unreadable swapped.csv" in svc.text(), 30, "swapped.csv to be unreadable")
    assert "not a regular file" in svc.text()
    drop_by_rename(folder, "after.csv", csv_bytes(10, seed=3))
    wait_for(lambda: "after.csv" in records(folder), 30, "a good file dropped afterwards")

    assert svc.stop() == 0, svc.text()
    assert set(records(folder)) == {"blocker.csv", "after.csv"}
    assert _listing(folder) == []
    assert svc.text().count("unreadable swapped.csv") == 1  # a FIFO is not read again


def test_file_deleted_before_it_settles_is_logged_vanished(
    folder: Folder, service: Callable[..., Service]
) -> None:
    folder.write_config(**{**LIVE, "watch": {"settle_ms": 1500, "rescan_s": 1}})
    svc = service()
    svc.wait_ready()
    time.sleep(0.3)
    (folder.drop / "fleeting.csv").write_bytes(csv_bytes(10, seed=4))
    time.sleep(0.7)  # seen by the watcher, still settling
    (folder.drop / "fleeting.csv").unlink()
    time.sleep(2.5)  # past settle_ms and two rescans
    drop_by_rename(folder, "after.csv", csv_bytes(10, seed=5))
    wait_for(lambda: "after.csv" in records(folder), 30, "a good file dropped afterwards")

    assert svc.stop() == 0, svc.text()
    assert svc.text().count("vanished fleeting.csv") == 1, svc.text()
    assert 'vanished fleeting.csv latency_ms=' in svc.text()
    assert 'reason="it was gone before it settled"' in svc.text(), svc.text()


# ---- 7. appended to after the read, before the commit ----------------------------------


def test_file_appended_after_read_is_reprocessed_as_the_complete_new_version(
    folder: Folder, service: Callable[..., Service]
) -> None:
    # flush_s holds the file for seconds between its read and its commit: the append lands
    # in between.
    folder.write_config(**{**LIVE, "output": {"flush_s": 3}})
    svc = service()
    svc.wait_ready()
    time.sleep(0.3)
    head = csv_bytes(50, seed=6)
    tail = b"".join(f"{1_800_000_000_000 + i},9.{i:04d}\n".encode() for i in range(30))
    path = drop_by_rename(folder, "growing.csv", head)
    time.sleep(1.5)  # settled, read and featurised (even if only a rescan saw it)
    assert "growing.csv" not in svc.text(), "committed before the append: no test"
    with path.open("ab") as fh:
        fh.write(tail)

    wait_for(lambda: "growing.csv" in records(folder), 30, "the complete new version")
    # Its own flush_s is room for a wrong second commit of growing.csv to show up.
    drop_by_rename(folder, "after.csv", csv_bytes(10, seed=7))
    wait_for(lambda: "after.csv" in records(folder), 30, "a good file dropped afterwards")

    assert svc.stop() == 0, svc.text()
    log = svc.text()
    changed = [line for line in log.splitlines() if "changed growing.csv" in line]
    assert changed, "the append was not detected"
    assert all(' reason="' in line for line in changed), changed
    assert log.count("ingested growing.csv") == 1, log
    assert records(folder) == {"growing.csv": 80, "after.csv": 10}
    assert folder.query(
        "SELECT DISTINCT source_sha256 FROM records WHERE source_file = 'growing.csv'"
    ) == [(sha256(head + tail),)]
    assert folder.query(
        "SELECT DISTINCT source_sha256 FROM features WHERE source_file = 'growing.csv'"
    ) == [(sha256(head + tail),)]


# ---- 8. new version under an old name; old content under a new name -------------------


def test_new_content_under_an_old_name_is_ingested_and_old_content_under_a_new_name_is_a_duplicate(
    folder: Folder,
) -> None:
    first = csv_bytes(20, seed=10)
    second = csv_bytes(30, seed=11)
    (folder.drop / "a.csv").write_bytes(first)
    assert once(folder).returncode == 0

    (folder.drop / "a.csv").write_bytes(second)
    (folder.drop / "copy.csv").write_bytes(first)
    result = once(folder)

    assert result.returncode == 0, result.stderr
    assert dict(folder.query(
        "SELECT source_sha256, count(*) FROM records WHERE source_file = 'a.csv' GROUP BY 1"
    )) == {sha256(first): 20, sha256(second): 30}
    assert output_rows_of(folder, "copy.csv") == 0
    duplicate = [line for line in result.stderr.splitlines() if "duplicate copy.csv" in line]
    assert len(duplicate) == 1, result.stderr
    assert "duplicate_of=a.csv" in duplicate[0]
    status = json.loads(folder.ingest("status", "--json").stdout)
    assert status["counts"] == {"ingested": 2, "duplicate": 1, "quarantined": 0}


# ---- 9. symlink out, directory, FIFO, permission denied -------------------------------


def _non_files(folder: Folder) -> Path:
    """An outside symlink, a FIFO and a directory, all named like inputs; returns the target."""
    outside = folder.root / "secret.csv"
    outside.write_bytes(b"timestamp,secret\n1,42\n")
    (folder.drop / "escape.csv").symlink_to(outside)
    os.mkfifo(folder.drop / "pipe.csv")
    (folder.drop / "folder.csv").mkdir()
    return outside


def test_outside_symlink_fifo_and_directory_are_never_opened_and_the_rest_is_ingested(
    folder: Folder,
) -> None:
    outside = _non_files(folder)
    (folder.drop / "folder.csv" / "inner.csv").write_bytes(csv_bytes(5, seed=12))
    good(folder, "fine.csv", seed=1)

    result = once(folder)  # a FIFO opened for reading would block here until the timeout

    assert result.returncode == 0, result.stderr
    assert records(folder) == {"fine.csv": 20, "folder.csv/inner.csv": 5}
    columns = {name for (name, *_) in folder.query("DESCRIBE records")}
    assert "secret" not in columns, "the outside file was read through the symlink"
    assert outside.read_bytes() == b"timestamp,secret\n1,42\n"
    assert (folder.drop / "escape.csv").is_symlink()
    assert (folder.drop / "pipe.csv").exists() and (folder.drop / "folder.csv").is_dir()
    assert not (folder.quarantine / "escape.csv").exists()
    assert not (folder.quarantine / "pipe.csv").exists()


def test_skipped_outside_symlink_and_fifo_are_logged_at_the_default_level(
    folder: Folder,
) -> None:
    _non_files(folder)
    good(folder, "fine.csv", seed=1)

    result = once(folder)

    assert result.returncode == 0, result.stderr
    for name in ("escape.csv", "pipe.csv"):
        assert name in result.stderr, result.stderr


def _unprivileged() -> list[str]:
    """What runs a command as this user does, permission bits binding it, even as root."""
    return DROP_ROOT_POWERS if os.geteuid() == 0 else []


def _unprivileged_once(folder: Folder) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_unprivileged(), sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, capture_output=True, text=True, timeout=120,
    )


class UnprivilegedService:
    """`ingest run` that permission bits bind: as root, without the DAC capabilities."""

    def __init__(self, folder: Folder, *args: str) -> None:
        self.log = folder.root / "service.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [*_unprivileged(), sys.executable, "-m", "ingest", "run", "--config",
                 str(folder.config), *args],
                cwd=folder.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs util-linux setpriv"
)
def test_permission_denied_file_is_logged_and_ingested_on_a_rescan_once_readable(
    folder: Folder,
) -> None:
    folder.write_config(**LIVE)  # a rescan every second finds it again
    locked = folder.drop / "locked.csv"
    write_csv(locked, rows=15, seed=13)
    locked.chmod(0o000)
    svc = UnprivilegedService(folder, "--log-level", "DEBUG")
    try:
        wait_for(lambda: "watching" in svc.text() or svc.proc.poll() is not None, 60, "start")
        assert svc.proc.poll() is None, svc.text()
        wait_for(lambda: svc.text().count("unreadable locked.csv, again") >= 2, 30,
                 "locked.csv to be logged unreadable, then tried again on rescans")
        assert "Permission denied" in svc.text()
        assert records(folder) == {}
        assert not (folder.quarantine / "locked.csv").exists(), "not the file's fault"

        locked.chmod(0o644)  # mended: its size and mtime are as they were
        wait_for(lambda: "locked.csv" in records(folder), 30, "locked.csv once readable")
        drop_by_rename(folder, "after.csv", csv_bytes(10, seed=14))
        wait_for(lambda: "after.csv" in records(folder), 30, "a good file dropped afterwards")
        assert svc.stop() == 0, svc.text()
    finally:
        if locked.exists():
            locked.chmod(0o644)
        svc.kill()
    assert records(folder) == {"locked.csv": 15, "after.csv": 10}
    assert svc.text().count("ingested locked.csv") == 1
    said = svc.text().count("unreadable locked.csv latency_ms=")
    assert said == 1, "said once, not at each rescan"
    assert "ingested 2 files" in svc.text() and ", 1 unreadable" in svc.text()


def test_a_link_to_nothing_under_run_is_named_once_and_again_when_it_comes_back(
    folder: Folder, service: Callable[..., Service]
) -> None:
    """Said once however many rescans find it; once a rescan finds it gone it is forgotten
    (a service that runs for months holds no path it saw once), and named again if it
    comes back."""
    folder.write_config(**LIVE)  # a rescan every second
    svc = service("--log-level", "DEBUG")
    svc.wait_ready()
    link = folder.drop / "dangling.csv"
    named = f"skip {link}: cannot follow it: a symlink to nothing"

    def rescans_after(count: int) -> None:
        wait_for(lambda: svc.text().count("rescan found") >= count, 30, f"{count} rescans")

    link.symlink_to("gone.csv")
    wait_for(lambda: named in svc.text(), 30, "the link named")
    rescans_after(svc.text().count("rescan found") + 2)  # each found it again
    assert svc.text().count(named) == 1, "named once, not at each rescan"
    link.unlink()
    rescans_after(svc.text().count("rescan found") + 2)  # one whole scan found it gone
    link.symlink_to("gone.csv")
    wait_for(lambda: svc.text().count(named) == 2, 30, "the link named again")
    assert svc.stop() == 0, svc.text()


# ---- 10. temp and editor names --------------------------------------------------------


def test_temp_and_editor_names_are_ignored_until_renamed_to_a_matching_name(
    folder: Folder, service: Callable[..., Service]
) -> None:
    folder.write_config(**LIVE)
    svc = service()
    svc.wait_ready()
    names = {"x.csv.tmp": "x1.csv", ".x.csv": "x2.csv", "x.csv~": "x3.csv",
             "x.csv.part": "x4.csv"}
    for seed, temp in enumerate(names):
        (folder.drop / temp).write_bytes(csv_bytes(5 + seed, seed=20 + seed))
    time.sleep(2.5)  # past settle_ms and two rescans
    assert records(folder) == {}
    assert all((folder.drop / temp).exists() for temp in names), "a temp name was touched"

    for temp, final in names.items():
        os.replace(folder.drop / temp, folder.drop / final)
    wait_for(lambda: len(records(folder)) == 4, 30, "the four renamed files")

    assert svc.stop() == 0, svc.text()
    assert records(folder) == {"x1.csv": 5, "x2.csv": 6, "x3.csv": 7, "x4.csv": 8}
    for temp in names:
        assert temp not in svc.text(), f"{temp} was looked at before its rename"


# ---- 11. mtime in the future ------------------------------------------------------------


def test_file_with_an_mtime_a_day_ahead_is_ingested_without_waiting_for_it_and_once(
    folder: Folder, service: Callable[..., Service]
) -> None:
    folder.write_config(**{**LIVE, "watch": {"settle_ms": 300, "rescan_s": 1}})
    svc = service()
    svc.wait_ready()
    staged = folder.root / "future.csv"
    staged.write_bytes(csv_bytes(12, seed=30))
    age(staged, -86_400)  # as `cp -p` from a machine whose clock runs a day fast
    os.replace(staged, folder.drop / "future.csv")

    # Waited on, it would be read a day from now.
    wait_for(lambda: "future.csv" in records(folder), 60, "the file from the future")
    time.sleep(2.5)  # two rescans: it must not come back
    drop_by_rename(folder, "after.csv", csv_bytes(10, seed=31))
    wait_for(lambda: "after.csv" in records(folder), 30, "a good file dropped afterwards")

    assert svc.stop() == 0, svc.text()
    assert records(folder) == {"future.csv": 12, "after.csv": 10}
    assert svc.text().count("ingested future.csv") == 1


def test_a_file_whose_mtime_is_past_2262_is_ingested_once_and_known_again(folder: Folder) -> None:
    # ext4 holds mtimes up to 2446, past what SQLite's 64-bit integer holds in nanoseconds
    # (2262): such a file was never committed, and in `run`, its quarantine record held up
    # every later flush.
    far = folder.drop / "far.csv"
    far.write_bytes(csv_bytes(7, seed=40))
    os.utime(far, ns=(far.stat().st_atime_ns, 15_032_385_535 * 10**9))  # 2446-05-10
    if far.stat().st_mtime_ns < 2**63:
        pytest.skip("this file system holds no mtime past 2262")
    good(folder, "near.csv", seed=41, rows=5)

    first = once(folder, watch={"on_success": "keep"})

    assert first.returncode == 0, first.stderr
    assert records(folder) == {"far.csv": 7, "near.csv": 5}
    second = folder.ingest("once", timeout=60)
    assert second.returncode == 0, second.stderr
    assert "ingested 0 files (0 rows), 0 duplicates" in second.stderr, "known, not read again"
    [version] = json.loads(folder.ingest("explain", "far.csv", "--json").stdout)["versions"]
    assert (version["state"], version["disposal"]) == ("ingested", "kept")
    assert json.loads(folder.ingest("status", "--json").stdout)["backlog"] == 0


# ---- 12. a column whose type changes between files: one schema per table ---------


def test_text_in_a_numeric_column_is_rescued_and_every_reader_needs_no_options(
    folder: Folder,
) -> None:
    (folder.drop / "ints.csv").write_bytes(b"id,v\n1,10\n2,20\n")
    assert once(folder).returncode == 0
    # A later batch: a file of text ids and another of int64 ids commit together.
    (folder.drop / "strings.csv").write_bytes(b"id,v\nabc,1.5\ndef,2.5\n")
    (folder.drop / "more_ints.csv").write_bytes(b"id,v\n3,30\n")

    result = once(folder)

    assert result.returncode == 0, result.stderr
    types = dict((name, kind) for (name, kind, *_) in folder.query("DESCRIBE records"))
    # The table's `id` stays a number; `v` widens to float; the text ids are rescued.
    assert types["id"] == "BIGINT" and types["v"] == "DOUBLE", types
    assert folder.query(
        "SELECT source_file, id, v, _rescued_data FROM records ORDER BY source_file, v"
    ) == [
        ("ints.csv", 1, 10.0, None), ("ints.csv", 2, 20.0, None),
        ("more_ints.csv", 3, 30.0, None),
        ("strings.csv", None, 1.5, '{"id": "abc"}'), ("strings.csv", None, 2.5, '{"id": "def"}'),
    ]
    assert sorted(folder.query("SELECT source_file, source_column FROM features")) == [
        ("ints.csv", "id"), ("ints.csv", "v"), ("more_ints.csv", "id"), ("more_ints.csv", "v"),
        ("strings.csv", "id"), ("strings.csv", "v"),
    ]


# ---- 13. pathological names ----------------------------------------------------------------

LONG_NAME = "n" * 251 + ".csv"  # 255 bytes, the most a Linux file name may have


def test_names_with_spaces_unicode_newlines_and_255_bytes_are_ingested_under_their_names(
    folder: Folder,
) -> None:
    names = ["with space.csv", "ünïcødé ✓ 数据.csv", "new\nline.csv", LONG_NAME]
    assert len(LONG_NAME.encode()) == 255
    for seed, name in enumerate(names):
        (folder.drop / name).write_bytes(csv_bytes(3 + seed, seed=40 + seed))

    result = once(folder)

    assert result.returncode == 0, result.stderr
    assert records(folder) == {name: 3 + seed for seed, name in enumerate(names)}
    archived = {p.name for p in (folder.root / "archive").rglob("*.csv")}
    assert archived == set(names)
    assert not list(folder.drop.iterdir())


# Latin-1 names, as an old Windows share or an FTP client writes them: bytes that are not
# UTF-8. On disk (the drop folder, the archive, the quarantine) they keep their bytes; in
# every table, the ledger, the logs and the reports each byte that is not UTF-8 is \xNN.
LATIN1 = os.fsdecode(b"Messdaten_M\xe4rz.csv")
LATIN1_SHOWN = "Messdaten_M\\xe4rz.csv"
LATIN1_BAD = os.fsdecode(b"kaputt_\xe9.csv")
LATIN1_BAD_SHOWN = "kaputt_\\xe9.csv"


def test_names_that_are_not_utf8_are_ingested_or_quarantined_under_escaped_names(
    folder: Folder,
) -> None:
    (folder.drop / LATIN1).write_bytes(csv_bytes(7, seed=60))
    (folder.drop / LATIN1_BAD).write_bytes(b"a,b\n1,2\n3,4,5\n")
    expected = {"fine.csv": good(folder, "fine.csv", seed=61), LATIN1_SHOWN: 7}

    result = once(folder)

    assert result.returncode == 3, result.stderr  # one quarantined, nothing stuck
    assert records(folder) == expected
    assert f"ingested {LATIN1_SHOWN}" in result.stderr
    assert not list(folder.drop.iterdir())
    archived = {p.name for p in folder.archive.rglob("*.csv")}
    assert archived == {"fine.csv", LATIN1}
    report = json.loads((folder.quarantine / f"{LATIN1_BAD}.error.json").read_text())
    assert report["file"] == LATIN1_BAD_SHOWN and report["error"] == "DecodeError"
    assert (folder.quarantine / LATIN1_BAD).read_bytes() == b"a,b\n1,2\n3,4,5\n"
    status = json.loads(folder.ingest("status", "--json").stdout)
    assert status["counts"] == {"ingested": 2, "duplicate": 0, "quarantined": 1}
    assert output_rows_of(folder, LATIN1_BAD_SHOWN) == 0
    # `ingest explain` knows it by either name: as the shell passes it, or as shown.
    for given in (LATIN1, LATIN1_SHOWN):
        explained = folder.ingest("explain", given, "--json", timeout=60)
        assert explained.returncode == 0, explained.stderr
        [version] = json.loads(explained.stdout)["versions"]
        assert (version["state"], version["rows"], version["disposal"]) == (
            "ingested", 7, "archived",
        )
        assert version["disposed_to"].endswith(f"/{LATIN1_SHOWN}"), "text, as shown"


def test_a_name_not_utf8_kept_in_the_drop_folder_is_known_after_a_ledger_rebuild(
    folder: Folder,
) -> None:
    (folder.drop / LATIN1).write_bytes(csv_bytes(5, seed=64))
    assert once(folder, watch={"settle_ms": 0, "on_success": "keep"}).returncode == 0
    ledger = folder.output / "_ingest" / "ledger.sqlite"
    ledger.rename(ledger.with_suffix(".old"))
    rebuilt = folder.ingest("ledger", "rebuild", timeout=60)
    assert rebuilt.returncode == 0, rebuilt.stderr

    again = folder.ingest("once", timeout=60)

    assert again.returncode == 0, again.stderr
    assert "ingested 0 files (0 rows), 0 duplicates" in again.stderr, "known, not read again"
    assert records(folder) == {LATIN1_SHOWN: 5}
    [version] = json.loads(folder.ingest("explain", LATIN1_SHOWN, "--json").stdout)["versions"]
    assert (version["state"], version["disposal"]) == ("ingested", "kept")


def test_a_folder_named_not_utf8_leaves_ingest_run_watching_and_finding_files(
    folder: Folder, service: Callable[..., Service],
) -> None:
    """Every new events watcher fails as it starts on such a folder: the service polls the
    drop folder instead, rather than stopping or restarting watchers in a loop. No rescans
    here: the watchers, and the scan each new one starts, must find the files."""
    folder.write_config(**{**LIVE, "watch": {"settle_ms": 50, "rescan_s": 600}})
    inner = folder.drop / os.fsdecode(b"Ordner_\xe4")
    inner.mkdir()
    svc = service()
    wait_for(lambda: "watching" in svc.text(), 60, "the service")
    drop_by_rename(folder, f"{inner.name}/{LATIN1}", csv_bytes(6, seed=65))
    drop_by_rename(folder, "plain.csv", csv_bytes(3, seed=66))
    shown = f"Ordner_\\xe4/{LATIN1_SHOWN}"
    wait_for(lambda: records(folder).keys() == {shown, "plain.csv"}, 30, "both files")
    time.sleep(3)  # restarts in a loop would run thousands of times meanwhile
    assert svc.stop() == 0, svc.text()
    assert records(folder) == {shown: 6, "plain.csv": 3}
    assert "fails as it starts, on a name that is not UTF-8" in svc.text()
    assert "polling" in svc.text()
    # One scan per new watcher: a restart loop would log thousands in these seconds.
    assert len(re.findall(r"scanned .*: \d+ inputs", svc.text())) < 20, svc.text()
    # archive/<day>/<the path below the drop folder, as it is on disk>
    archived = {p.relative_to(folder.archive).parts[1:] for p in folder.archive.rglob("*.csv")}
    assert archived == {(inner.name, LATIN1), ("plain.csv",)}


def test_a_name_that_is_not_utf8_dropped_into_ingest_run_is_ingested_once(
    folder: Folder, service: Callable[..., Service],
) -> None:
    folder.write_config(**LIVE)
    svc = service()
    wait_for(lambda: "watching" in svc.text(), 60, "the service")
    drop_by_rename(folder, LATIN1, csv_bytes(9, seed=62))
    wait_for(lambda: not (folder.drop / LATIN1).exists(), 30, "the file to be archived")
    drop_by_rename(folder, "after.csv", csv_bytes(4, seed=63))
    wait_for(lambda: "after.csv" in records(folder), 30, "a good file dropped afterwards")
    assert svc.stop() == 0, svc.text()
    assert records(folder) == {LATIN1_SHOWN: 9, "after.csv": 4}
    assert svc.text().count(f"ingested {LATIN1_SHOWN}") == 1
    assert "commit failed" not in svc.text()
    assert "polling" not in svc.text(), "the watcher's events still work"


def test_a_newline_in_a_name_cannot_split_the_outcome_log_line(folder: Folder) -> None:
    name = "report\n2000-01-01T00:00:00 ERROR   forged.csv"
    (folder.drop / name).write_bytes(csv_bytes(3, seed=50))

    result = once(folder)

    assert result.returncode == 0, result.stderr
    assert records(folder) == {name: 3}
    for line in result.stderr.splitlines():
        assert LOG_LINE.match(line) and not line.startswith("2000-01-01"), line


def test_bad_file_with_a_255_byte_name_is_quarantined_with_its_report(
    folder: Folder,
) -> None:
    folder.write_config(**ONCE)
    (folder.drop / LONG_NAME).write_bytes(b"a,b\n1,2\n3,4,5\n")
    expected = {"fine.csv": good(folder, "fine.csv", seed=1)}
    log = folder.root / "once.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
            cwd=folder.root, stdout=fh, stderr=subprocess.STDOUT,
        )
    try:
        # Stop at the first failed commit rather than wait out a retry loop.
        def finished_or_failed() -> bool:
            return proc.poll() is not None or bool(FAILED_COMMIT.search(log.read_text()))

        wait_for(finished_or_failed, 60, "ingest once to finish")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    assert proc.returncode == 3, log.read_text()
    assert records(folder) == expected
    reports = [json.loads(p.read_text()) for p in folder.quarantine.glob("*.error.json")]
    assert [r["file"] for r in reports] == [LONG_NAME]
    assert reports[0]["error"] == "DecodeError" and reports[0]["line"] == 3
    assert not (folder.drop / LONG_NAME).exists()
    assert output_rows_of(folder, LONG_NAME) == 0
    again = folder.ingest("once", timeout=60)
    assert again.returncode == 0 and "internal task failed" not in again.stderr, again.stderr


def test_mtimes_past_2262_are_kept_apart_in_the_ledger_s_64_bits() -> None:
    def stat(ns: int) -> os.stat_result:
        # The fields past the first ten: the times as floats, then in nanoseconds.
        return os.stat_result((0o100644, 0, 0, 1, 0, 0, 10, 0, 0, 0, 0.0, 0.0, 0.0, 0, ns, 0))

    far, farther = 15_032_385_535 * 10**9, 15_032_385_535 * 10**9 + 1
    assert mtime_ns(stat(far)) != mtime_ns(stat(farther)), "a rewrite is still a change"
    for ns in (far, farther, -(2**64) + 5, 1_764_000_000 * 10**9, -(10**18)):
        assert -(2**63) <= mtime_ns(stat(ns)) < 2**63
    assert mtime_ns(stat(1_764_000_000 * 10**9)) == 1_764_000_000 * 10**9, "2025, as it is"


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs util-linux setpriv"
)
def test_once_counts_a_file_it_cannot_read_leaves_it_and_exits_1(folder: Folder) -> None:
    folder.write_config(**LIVE)
    locked = folder.drop / "locked.csv"
    write_csv(locked, rows=5, seed=3)
    locked.chmod(0o000)
    good(folder, "fine.csv", seed=4)
    try:
        result = _unprivileged_once(folder)
    finally:
        locked.chmod(0o644)
    assert result.returncode == 1, result.stderr  # not ingested: a scheduler must hear of it
    *_, summary, last = result.stderr.strip().splitlines()
    assert "ingested 1 files" in summary and ", 1 unreadable" in summary, summary
    assert last.endswith(
        "ERROR   1 files could not be read; they stay in the drop folder for the next run"
    ), last
    assert locked.exists() and records(folder) == {"fine.csv": 20}


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs util-linux setpriv"
)
def test_once_names_a_folder_it_cannot_list_and_a_link_to_nothing_and_exits_1(
    folder: Folder,
) -> None:
    folder.write_config(**LIVE)
    locked = folder.drop / "locked"
    write_csv(locked / "in.csv", rows=5, seed=3)
    locked.chmod(0o000)
    (folder.drop / "dangling.csv").symlink_to("gone.csv")
    good(folder, "fine.csv", seed=4)
    try:
        result = _unprivileged_once(folder)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert (
        f"skip {locked}: cannot list the folder (Permission denied): no input in it is read"
    ) in result.stderr
    assert f"skip {folder.drop / 'dangling.csv'}: cannot follow it: a symlink to nothing" \
        in result.stderr
    *_, summary, last = result.stderr.strip().splitlines()
    assert "ingested 1 files" in summary and ", 2 unreadable" in summary, summary
    assert last.endswith("2 files could not be read; they stay in the drop folder"
                         " for the next run"), last
    assert (locked / "in.csv").exists() and records(folder) == {"fine.csv": 20}
