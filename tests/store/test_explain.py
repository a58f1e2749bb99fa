"""`ingest explain PATH`: the life of one input, from real runs of `ingest once`."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ingest.config import DEFAULT_PATTERNS
from ingest.store.ledger import FileRecord, Ledger

from ..conftest import FAST, Folder, Service, wait_for, write_csv

REQUIRED = {"sha256", "state", "rows", "table", "reason", "parts", "duplicate_of"}
BAD = "a,b\n1,2\n3,4,5\n"


def _explain(folder: Folder, path: str, *args: str) -> dict[str, Any]:
    result = folder.ingest("explain", path, "--json", *args, timeout=60)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    for version in report["versions"]:
        assert set(version) >= REQUIRED, sorted(version)
    return report


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parts_naming(folder: Folder, rel: str, sha256: str) -> set[str]:
    """Every part file whose footer names this input, found by reading them all."""
    found = set()
    for table in ("records", "features", "other"):
        for part in folder.parts(table):
            sources = json.loads((pq.read_metadata(part).metadata or {})[b"ingest.sources"])
            if [rel, sha256] in [s[:2] for s in sources]:
                found.add(part.relative_to(folder.output).as_posix())
    return found


def test_an_ingested_and_archived_input_names_its_rows_parts_and_archive_path(
    folder: Folder,
) -> None:
    folder.write_config(
        pipeline={"workers": 1}, watch={"settle_ms": 0},
        **{"tables.other": {"patterns": ["b.csv"]}},
    )
    write_csv(folder.drop / "sub" / "a.csv", rows=40, seed=1)
    write_csv(folder.drop / "b.csv", rows=30, seed=2, columns=2)  # another table, another part
    sha = _sha(folder.drop / "sub" / "a.csv")
    assert folder.ingest("once").returncode == 0

    report = _explain(folder, "sub/a.csv")

    assert report["path"] == "sub/a.csv"
    [version] = report["versions"]
    assert version["state"] == "ingested"
    assert (version["sha256"], version["rows"], version["table"]) == (sha, 40, "records")
    assert version["reason"] is None and version["duplicate_of"] is None
    assert set(version["parts"]) == _parts_naming(folder, "sub/a.csv", sha)
    assert {p.split("/")[0] for p in version["parts"]} == {"records", "features"}
    records = [folder.output / p for p in version["parts"] if p.startswith("records/")]
    rows = sum(
        pq.read_table(p).to_pandas().query("source_file == 'sub/a.csv'").shape[0] for p in records
    )
    assert rows == 40
    # b.csv's rows went to another table's part of the same commit.
    b_records = {
        p for p in _parts_naming(folder, "b.csv", _sha_of_archived(folder))
        if p.startswith("other/")
    }
    assert b_records
    assert not b_records & set(version["parts"])
    ids = {Path(p).name.rsplit("-", 1)[0] for p in version["parts"]}
    assert {Path(p).name.rsplit("-", 1)[0] for p in b_records} == ids, "one commit, one part id"
    assert version["disposal"] == "archived"
    archived = Path(version["disposed_to"])
    assert archived.is_relative_to(folder.archive) and archived.name == "a.csv"
    assert _sha(archived) == sha
    assert version["size"] == archived.stat().st_size
    assert version["first_seen"] and version["committed_at"]

    text = folder.ingest("explain", "sub/a.csv")
    assert text.returncode == 0, text.stderr
    assert "version 1: ingested" in text.stdout and "40 rows" in text.stdout
    assert f"archived to {archived}" in text.stdout
    assert version["parts"][0] in text.stdout


def test_an_input_whose_folder_took_a_free_name_is_found_there(folder: Folder) -> None:
    """`y.csv` archived and `z.csv` quarantined, then folders of those names moved in:
    their files went to `y-folder.csv/` and `z-folder.csv/`."""
    write_csv(folder.drop / "y.csv", rows=5, seed=1)
    (folder.drop / "z.csv").write_text(BAD)
    assert folder.ingest("once").returncode == 3
    (folder.drop / "y.csv").mkdir()
    (folder.drop / "z.csv").mkdir()
    write_csv(folder.drop / "y.csv" / "in.csv", rows=6, seed=2)
    (folder.drop / "z.csv" / "in.csv").write_text(BAD)
    assert folder.ingest("once").returncode == 3

    [archived] = _explain(folder, "y.csv/in.csv")["versions"]
    [quarantined] = _explain(folder, "z.csv/in.csv")["versions"]

    assert archived["disposal"] == "archived"
    assert Path(archived["disposed_to"]).relative_to(folder.archive).parts[1:] == (
        "y-folder.csv", "in.csv"
    )
    assert Path(quarantined["disposed_to"]) == folder.quarantine / "z-folder.csv" / "in.csv"
    assert Path(quarantined["error_json"]).exists()


def _sha_of_archived(folder: Folder) -> str:
    [b] = folder.archive.rglob("b.csv")
    return _sha(b)


def test_a_duplicate_names_the_file_it_duplicates(folder: Folder) -> None:
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    assert folder.ingest("once").returncode == 0
    [archived] = folder.archive.rglob("a.csv")
    (folder.drop / "copy.csv").write_bytes(archived.read_bytes())
    assert folder.ingest("once").returncode == 0

    [version] = _explain(folder, "copy.csv")["versions"]

    assert version["state"] == "duplicate"
    assert version["duplicate_of"] == "a.csv"
    assert version["sha256"] == _sha(archived)
    assert (version["rows"], version["table"], version["reason"]) == (None, None, None)
    assert version["parts"] == []
    assert version["disposal"] == "archived"
    assert Path(version["disposed_to"]).name == "copy.csv"


def test_a_quarantined_input_gives_its_reason_and_error_report(folder: Folder) -> None:
    (folder.drop / "bad.csv").write_text(BAD)
    assert folder.ingest("once").returncode == 3

    [version] = _explain(folder, "bad.csv")["versions"]

    assert version["state"] == "quarantined"
    assert version["reason"] and "Expected 2 columns" in version["reason"]
    assert (version["rows"], version["table"], version["parts"]) == (None, None, [])
    report = Path(version["error_json"])
    assert report == folder.quarantine / "bad.csv.error.json"
    assert json.loads(report.read_text())["message"] == version["reason"]
    assert Path(version["disposed_to"]).read_text() == BAD


def test_two_quarantined_versions_with_the_same_bytes_each_name_their_own_copy(
    folder: Folder,
) -> None:
    # The same bad bytes dropped twice under one name: two versions, two copies, two
    # reports that name the same file and sha256; each version's copy has its mtime.
    for when in (1_700_000_000, 1_700_000_100):
        target = folder.drop / "bad.csv"
        target.write_text(BAD)
        os.utime(target, (when, when))
        assert folder.ingest("once").returncode == 3
    versions = _explain(folder, "bad.csv")["versions"]
    assert len(versions) == 2
    copies = [Path(v["disposed_to"]) for v in versions]
    assert [c.stat().st_mtime for c in copies] == [1_700_000_000, 1_700_000_100]
    assert len(set(copies)) == 2
    for version, copy in zip(versions, copies, strict=True):
        assert Path(version["error_json"]) == copy.with_name(copy.name + ".error.json")


def test_every_version_of_a_name_oldest_first_then_the_one_not_yet_ingested(
    folder: Folder,
) -> None:
    folder.write_config(watch={"settle_ms": 0, "on_success": "keep"})
    target = folder.drop / "a.csv"
    shas = []
    for seed, rows in ((1, 10), (2, 20)):
        write_csv(target, rows=rows, seed=seed)
        shas.append(_sha(target))
        assert folder.ingest("once").returncode == 0
    write_csv(target, rows=30, seed=3)
    shas.append(_sha(target))

    versions = _explain(folder, str(target))["versions"]  # an absolute path

    assert [v["sha256"] for v in versions] == shas
    assert [v["state"] for v in versions] == ["ingested", "ingested", "pending"]
    assert [v["rows"] for v in versions] == [10, 20, None]
    assert versions[2]["parts"] == []
    assert versions[0]["disposal"] is None, "kept, then overwritten: found nowhere"
    assert versions[1]["disposal"] is None
    assert not set(versions[0]["parts"]) & set(versions[1]["parts"])


def test_a_kept_input_and_a_deleted_one(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 0, "on_success": "keep"})
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    assert folder.ingest("once").returncode == 0
    assert _explain(folder, "a.csv")["versions"][0]["disposal"] == "kept"

    folder.write_config(watch={"settle_ms": 0, "on_success": "delete"})
    write_csv(folder.drop / "b.csv", rows=10, seed=2)
    assert folder.ingest("once").returncode == 0
    [version] = _explain(folder, "b.csv")["versions"]
    assert (version["state"], version["disposal"]) == ("ingested", "deleted")
    assert not (folder.drop / "b.csv").exists()


def test_a_path_relative_to_the_working_folder_inside_the_drop_folder(folder: Folder) -> None:
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    assert folder.ingest("once").returncode == 0
    assert _explain(folder, "drop/a.csv")["path"] == "a.csv"  # the cwd is the folder's root


def test_an_input_of_a_symlinked_drop_folder_is_found_by_either_path(folder: Folder) -> None:
    folder.drop.rmdir()
    real = folder.root / "releases" / "1"
    real.mkdir(parents=True)
    folder.drop.symlink_to(real)
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    folder.write_config(**{**FAST, "watch": {"settle_ms": 50, "on_success": "keep"}})
    assert folder.ingest("once").returncode == 0
    for given in ("drop/a.csv", str(folder.drop / "a.csv"), str(real / "a.csv"),
                  "releases/1/a.csv"):
        assert _explain(folder, given)["path"] == "a.csv", given


def test_an_unknown_input_says_so_and_exits_1(folder: Folder) -> None:
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    assert folder.ingest("once").returncode == 0
    for path in ("nope.csv", "../outside.csv", "/etc/passwd"):
        result = folder.ingest("explain", path, timeout=60)
        assert result.returncode == 1, result.stderr
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and "unknown input" in result.stderr
        assert path in result.stderr


def test_an_unknown_name_that_is_not_utf8_is_shown_as_the_log_shows_names(
    folder: Folder,
) -> None:
    # Its byte was a lone surrogate, \udce4, where the log and the tables write \xe4.
    result = folder.ingest("explain", os.fsdecode(b"g\xe4.csv"), timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("ingest: g\\xe4.csv: unknown input"), result.stderr


def test_an_entry_of_the_drop_folder_that_is_not_a_regular_file_is_named_for_what_it_is(
    folder: Folder,
) -> None:
    os.mkfifo(folder.drop / "pipe.csv")
    (folder.drop / "dir.csv").mkdir()
    (folder.drop / "notes.txt").write_text("a,b\n1,2\n")  # a file, but no input's name
    (folder.drop / "up.csv.part").write_text("a,b\n1,2\n")  # an upload under way
    (folder.root / "outside.csv").write_text("a,b\n1,2\n")
    (folder.drop / "ext.csv").symlink_to(folder.root / "outside.csv")
    assert folder.ingest("once").returncode == 0
    for name, kind in (
        ("pipe.csv", "a FIFO, which ingest passes by: it reads regular files only"),
        ("dir.csv", "a folder, whose files are inputs each under its own path"),
        ("ext.csv", "a symlink to a file outside the drop folder, which ingest passes by:"
                    " it reads only what is inside the drop folder"),
        ("up.csv.part", "a file named as hidden or still being written (.name, *.tmp,"
                        " *.part, ...), which ingest passes by until it is renamed"),
        ("notes.txt", "a file no [watch] patterns entry matches"
                      f" ({', '.join(DEFAULT_PATTERNS)}), which ingest passes by"),
    ):
        result = folder.ingest("explain", name, timeout=60)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "unknown input; the ledger has no record of it and in the drop folder" in (
            result.stderr
        ) and result.stderr.rstrip().endswith(f"it is {kind}"), result.stderr


def test_the_table_comes_from_the_ledger_once_it_records_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.record([FileRecord("a.csv", 1, 2, "ab" * 32, "ingested", rows=3, done_at=1.0)])
    ledger.close()
    reader = Ledger(path, read_only=True)
    assert [table for _, table in reader.history("a.csv")] == ["records"]
    reader.close()

    with sqlite3.connect(path) as db:  # as table routing records it
        db.execute("UPDATE files SET table_name = 'sensors'")
    reader = Ledger(path, read_only=True)
    [(record, table)] = reader.history("a.csv")
    reader.close()
    assert (record.rows, table) == (3, "sensors")


def test_a_compacted_input_names_the_part_that_holds_its_rows_now(folder: Folder) -> None:
    folder.write_config(pipeline={"workers": 1}, watch={"settle_ms": 0, "on_success": "keep"})
    for name, seed in (("a.csv", 1), ("b.csv", 2)):
        write_csv(folder.drop / name, rows=25, seed=seed)
        assert folder.ingest("once").returncode == 0  # one commit each: two records parts
    before = _explain(folder, "a.csv")["versions"][0]["parts"]
    assert len(folder.parts("records")) == 2

    done = folder.ingest("compact")
    assert done.returncode == 0, done.stderr

    (records,) = folder.parts("records")
    after = _explain(folder, "a.csv")["versions"][0]["parts"]
    assert after != before
    assert records.relative_to(folder.output).as_posix() in after
    assert set(after) == _parts_naming(folder, "a.csv", _sha(folder.drop / "a.csv"))
    rows = pq.read_table(records).to_pandas().query("source_file == 'a.csv'").shape[0]
    assert rows == 25


def _status(folder: Folder) -> dict[str, Any]:
    result = folder.ingest("status", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_a_file_gone_before_it_was_read_is_a_vanished_version_that_hides_no_later_one(
    folder: Folder, service: Callable[..., Service]
) -> None:
    # Written in place, a file settles once unchanged for settle_ms: deleted before that,
    # it was seen and never read.
    folder.write_config(
        watch={"settle_ms": 1500, "rescan_s": 1}, pipeline={"workers": 1},
        output={"flush_s": 0.2},
    )
    svc = service()
    svc.wait_ready()
    time.sleep(0.3)
    fleeting = folder.drop / "fleeting.csv"
    write_csv(fleeting, rows=10, seed=4)
    content, st = fleeting.read_bytes(), fleeting.stat()
    time.sleep(0.7)  # seen by the watcher, still settling
    fleeting.unlink()
    wait_for(lambda: "vanished fleeting.csv" in svc.text(), 30, "fleeting.csv to vanish")
    wait_for(lambda: folder.ingest("explain", "fleeting.csv", timeout=60).returncode == 0,
             30, "the vanished version to be recorded")
    assert svc.stop() == 0, svc.text()

    [gone] = _explain(folder, "fleeting.csv")["versions"]
    assert gone["state"] == "vanished"
    assert gone["sha256"] is None, "never read, so never hashed"
    assert gone["size"] == len(content)
    assert (gone["rows"], gone["table"], gone["reason"], gone["parts"]) == (None, None, None, [])
    assert (gone["disposal"], gone["disposed_to"], gone["duplicate_of"]) == (None, None, None)
    assert gone["first_seen"] and gone["committed_at"]
    text = folder.ingest("explain", "fleeting.csv", timeout=60)
    assert text.returncode == 0, text.stderr
    assert "version 1: vanished" in text.stdout
    assert "gone before it was read" in text.stdout
    status = _status(folder)
    # Not an input's fate, so not among the counts; the status says how many all the same.
    assert status["counts"] == {"ingested": 0, "duplicate": 0, "quarantined": 0}
    assert (status["vanished"], status["backlog"]) == (1, 0)

    # The same name, bytes, size and mtime again: a new file, neither hidden nor skipped.
    fleeting.write_bytes(content)
    os.utime(fleeting, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (fleeting.stat().st_size, fleeting.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    versions = _explain(folder, "fleeting.csv")["versions"]
    assert [v["state"] for v in versions] == ["vanished", "pending"]
    assert versions[1]["sha256"] == hashlib.sha256(content).hexdigest()
    assert _status(folder)["backlog"] == 1

    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr

    assert folder.rows_per_file() == {"fleeting.csv": 10}
    versions = _explain(folder, "fleeting.csv")["versions"]
    assert [v["state"] for v in versions] == ["vanished", "ingested"]
    assert (versions[1]["rows"], versions[1]["size"]) == (10, len(content))
    status = _status(folder)
    assert status["counts"] == {"ingested": 1, "duplicate": 0, "quarantined": 0}
    assert (status["vanished"], status["backlog"]) == (1, 0)
    assert "vanished:    1" in folder.ingest("status", timeout=60).stdout


def test_a_ledger_from_before_vanished_versions_reads_as_having_none(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.record([
        FileRecord("a.csv", 1, 2, "", "vanished", seen_at=1.0, done_at=2.0),
        FileRecord("a.csv", 1, 2, "ab" * 32, "ingested", rows=3, done_at=3.0),
    ])
    assert [r.state for r, _ in ledger.history("a.csv")] == ["vanished", "ingested"]
    assert set(ledger.known().keys.values()) == {"ingested"}
    assert ledger.counts() == {"ingested": 1}
    ledger.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE vanished")

    reader = Ledger(path, read_only=True)  # read-only: not migrated
    assert [r.state for r, _ in reader.history("a.csv")] == ["ingested"]
    assert reader.vanished_count() == 0
    reader.close()


def test_versions_stay_oldest_first_after_a_ledger_rebuild(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 0, "on_success": "keep"})
    target = folder.drop / "a.csv"
    shas = []
    for seed in (1, 2, 3):
        write_csv(target, rows=10, seed=seed)
        shas.append(_sha(target))
        assert folder.ingest("once").returncode == 0
        time.sleep(0.05)  # each version committed at its own time
    (folder.drop / "bad.csv").write_text(BAD)
    assert folder.ingest("once").returncode == 3
    (folder.drop / "bad.csv").write_text(BAD + "6,7,8,9\n")
    assert folder.ingest("once").returncode == 3
    before = [v["sha256"] for v in _explain(folder, "bad.csv")["versions"]]
    (folder.output / "_ingest" / "ledger.sqlite").unlink()
    rebuilt = folder.ingest("ledger", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr

    assert [v["sha256"] for v in _explain(folder, "a.csv")["versions"]] == shas
    assert [v["sha256"] for v in _explain(folder, "bad.csv")["versions"]] == before
