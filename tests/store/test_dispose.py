"""An input's move into the archive once its rows are committed."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest

from ingest.files import DropFile
from ingest.jobs import Failure
from ingest.store.dispose import NAME_MAX, after_success, quarantine
from ingest.store.layout import Layout, today

SHA = "abcdef0123456789" * 4


def _layout(tmp_path: Path, archive: Path | None = None) -> Layout:
    return Layout(tmp_path / "drop", tmp_path / "output", tmp_path / "quarantine",
                  archive or tmp_path / "archive")


def _dropped(layout: Layout, rel: str, body: bytes = b"a\n1\n") -> DropFile:
    path = layout.drop / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    st = path.stat()
    return DropFile(path, rel, st.st_size, st.st_mtime_ns, time.time(), time.monotonic())


def test_inputs_move_below_the_day_folder_keeping_their_own_folders(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    files = [_dropped(layout, rel) for rel in ("a.csv", "sub/b.csv", "sub/deeper/c.csv")]
    made: set[str] = set()
    for file in files:
        after_success(layout, file, SHA, "archive", made)
    day = layout.archive / today()
    for file in files:
        assert not file.path.exists()
        assert (day / file.rel).read_bytes() == b"a\n1\n"
    assert made == {str(day), str(day / "sub"), str(day / "sub/deeper")}


def test_a_name_taken_in_the_archive_gets_the_inputs_hash_before_its_suffixes(
    tmp_path: Path,
) -> None:
    layout = _layout(tmp_path)
    day = layout.archive / today()
    day.mkdir(parents=True)
    (day / "a.csv.gz").write_bytes(b"older")
    os.symlink(day / "nowhere", day / "b.csv")  # a broken symlink takes its name too
    made: set[str] = set()
    for rel in ("a.csv.gz", "b.csv"):
        after_success(layout, _dropped(layout, rel), SHA, "archive", made)
    assert (day / "a.csv.gz").read_bytes() == b"older"
    assert (day / f"a-{SHA[:8]}.csv.gz").read_bytes() == b"a\n1\n"
    assert (day / "b.csv").is_symlink()
    assert (day / f"b-{SHA[:8]}.csv").read_bytes() == b"a\n1\n"


def test_a_255_byte_name_taken_in_the_archive_is_cut_to_fit_its_tag(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    name = "n" * (NAME_MAX - 4) + ".csv"
    for body in (b"first\n", b"second\n"):
        after_success(layout, _dropped(layout, name, body), SHA, "archive", set())
    archived = {p.name: p.read_bytes() for p in (layout.archive / today()).iterdir()}
    assert archived[name] == b"first\n"
    [tagged] = [n for n in archived if n != name]
    assert len(tagged.encode()) == NAME_MAX
    assert tagged.endswith(f"-{SHA[:8]}.csv")
    assert archived[tagged] == b"second\n"


def test_a_file_changed_since_it_was_read_stays_in_the_drop_folder(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    file = _dropped(layout, "a.csv")
    file.path.write_bytes(b"a\n1\n2\n")
    after_success(layout, file, SHA, "archive", set())
    assert file.path.read_bytes() == b"a\n1\n2\n"
    assert not (layout.archive / today() / "a.csv").exists()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second file system")
def test_an_archive_on_another_file_system_is_copied_then_the_input_removed(
    tmp_path: Path,
) -> None:
    with tempfile.TemporaryDirectory(dir="/dev/shm") as elsewhere:
        if os.stat(elsewhere).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same file system here")
        layout = _layout(tmp_path, Path(elsewhere) / "archive")
        file = _dropped(layout, "sub/a.csv")
        after_success(layout, file, SHA, "archive", set())
        assert not file.path.exists()
        assert (layout.archive / today() / "sub/a.csv").read_bytes() == b"a\n1\n"


def test_a_folder_removed_after_the_flush_made_it_is_made_again(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    made: set[str] = set()
    first, second = _dropped(layout, "sub/a.csv"), _dropped(layout, "sub/b.csv")
    after_success(layout, first, SHA, "archive", made)
    day = layout.archive / today()
    shutil.rmtree(day)  # a job that moves the archive elsewhere, between two files
    after_success(layout, second, SHA, "archive", made)
    assert not second.path.exists()
    assert (day / "sub/b.csv").read_bytes() == b"a\n1\n"


def test_a_tagged_name_taken_by_a_broken_symlink_is_not_replaced(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    day = layout.archive / today()
    day.mkdir(parents=True)
    (day / "a.csv").write_bytes(b"older")
    os.symlink(day / "nowhere", day / f"a-{SHA[:8]}.csv")
    after_success(layout, _dropped(layout, "a.csv"), SHA, "archive", set())
    assert (day / f"a-{SHA[:8]}.csv").is_symlink()
    assert (day / f"a-{SHA[:8]}-2.csv").read_bytes() == b"a\n1\n"


@pytest.mark.timeout(20)
def test_keep_mode_copies_a_quarantined_input_only_while_it_is_a_regular_file(
    tmp_path: Path,
) -> None:
    """In keep mode a bad input is copied to quarantine/, with its times; a symlink to a
    device put in its place is not copied (it would be, until the disk is full)."""
    layout = _layout(tmp_path)
    kept = _dropped(layout, "bad.csv", b"a\nx\n")
    os.utime(kept.path, ns=(1_000_000_000, 2_000_000_000))
    copied = quarantine(layout, kept, SHA, Failure("DecodeError", "bad"), 1, keep=True)
    assert copied is not None and copied.read_bytes() == b"a\nx\n"
    assert copied.stat().st_mtime_ns == 2_000_000_000
    assert kept.path.exists()

    swapped = _dropped(layout, "swapped.csv")
    swapped.path.unlink()
    swapped.path.symlink_to("/dev/zero")
    assert quarantine(layout, swapped, SHA, Failure("DecodeError", "bad"), 1, keep=True) is None
    assert not [p for p in layout.quarantine.iterdir() if p.name.startswith("swapped")
                and not p.name.endswith(".json")]


def test_an_input_that_is_a_symlink_is_archived_as_the_bytes_it_names(tmp_path: Path) -> None:
    # Moved as it is, a relative link would point nowhere from the archive.
    layout = _layout(tmp_path)
    real = layout.drop / "sub" / "real.dat"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"a,b\n2,2\n")
    link = layout.drop / "sub" / "in.csv"
    link.symlink_to("real.dat")
    st = link.stat()
    file = DropFile(link, "sub/in.csv", st.st_size, st.st_mtime_ns, time.time(), time.monotonic())
    after_success(layout, file, SHA, "archive")
    archived = layout.archive / today() / "sub" / "in.csv"
    assert not archived.is_symlink() and archived.read_bytes() == b"a,b\n2,2\n"
    assert not os.path.lexists(link) and real.exists()
    assert [p.name for p in archived.parent.iterdir()] == ["in.csv"]


def test_a_fifo_put_in_an_inputs_place_stays_as_a_change_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ingest.dispose")
    layout = _layout(tmp_path)
    file = _dropped(layout, "a.csv")
    file.path.unlink()
    os.mkfifo(file.path)
    after_success(layout, file, SHA, "archive")
    assert stat.S_ISFIFO(os.lstat(file.path).st_mode)
    assert "a.csv changed since it was read" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("deep", [False, True], ids=["folder", "folder-below-it"])
def test_an_input_whose_folder_is_a_file_in_the_archive_goes_to_a_free_folder_name(
    tmp_path: Path, deep: bool
) -> None:
    """`y.csv` archived, then a folder `y.csv/` moved in: its files' folder in the
    archive is the file archived before."""
    layout = _layout(tmp_path)
    after_success(layout, _dropped(layout, "y.csv", b"first\n"), SHA, "archive", set())
    (layout.drop / "y.csv").mkdir()
    below = "sub/" if deep else ""
    files = [_dropped(layout, f"y.csv/{below}{name}", name.encode())
             for name in ("a.csv", "b.csv")]

    for i, file in enumerate(files):
        after_success(layout, file, str(i) * 64, "archive", set())

    day = layout.archive / today()
    assert not any(file.path.exists() for file in files)
    assert (day / "y.csv").read_bytes() == b"first\n"
    assert sorted(p.relative_to(day).as_posix() for p in day.rglob("*.csv") if p.is_file()) == [
        f"y-folder.csv/{below}a.csv", f"y-folder.csv/{below}b.csv", "y.csv",
    ], "one folder for the folder's files"


def test_an_input_whose_folder_is_a_file_in_the_quarantine_is_quarantined_beside_it(
    tmp_path: Path,
) -> None:
    layout = _layout(tmp_path)
    failure = Failure("DecodeError", "bad")
    quarantine(layout, _dropped(layout, "z.csv", b"first\n"), SHA, failure, 1, keep=False)
    (layout.drop / "z.csv").mkdir()
    file = _dropped(layout, "z.csv/inner.csv", b"inner\n")

    target = quarantine(layout, file, SHA, failure, 1, keep=False)

    assert target == layout.quarantine / "z-folder.csv" / "inner.csv"
    assert target.read_bytes() == b"inner\n" and not file.path.exists()
    assert (target.parent / "inner.csv.error.json").exists()
    assert (layout.quarantine / "z.csv").read_bytes() == b"first\n"
