"""`ingest run` in a real subprocess: real watchfiles events, real signals."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import psutil
import pyarrow.parquet as pq
import pytest

from ingest import stacks

from .conftest import Folder, Service, appended_to, drop_by_rename, wait_for, write_csv


def test_backlog_then_files_dropped_by_rename_appear_in_the_output(
    folder: Folder, service: Callable[..., Service]
) -> None:
    write_csv(folder.drop / "backlog.csv", rows=40, seed=0)
    svc = service()
    svc.wait_ready()
    wait_for(lambda: folder.rows_per_file().get("backlog.csv") == 40, 20, "the backlog file")

    for i in range(5):
        content = (folder.root / "staging.csv")
        write_csv(content, rows=30 + i, seed=10 + i)
        drop_by_rename(folder, f"live_{i}.csv", content.read_bytes())

    wait_for(lambda: len(folder.rows_per_file()) == 6, 20, "five renamed-in files")
    assert svc.stop() == 0
    live = {f"live_{i}.csv": 30 + i for i in range(5)}
    assert folder.rows_per_file() == {"backlog.csv": 40, **live}
    assert "ingested live_4.csv" in svc.text()


def test_a_file_written_slowly_in_chunks_is_ingested_once_and_complete(
    folder: Folder, service: Callable[..., Service]
) -> None:
    source = folder.root / "slow_source.csv"
    write_csv(source, rows=2000, seed=3)
    data = source.read_bytes()
    svc = service()
    svc.wait_ready()

    # Ten chunks 30 ms apart, each pause shorter than settle_ms (50 ms): the file looks
    # unsettled until its last byte, and is read once, whole.
    target = folder.drop / "slow.csv"
    chunk = len(data) // 10 + 1
    with target.open("wb") as fh:
        for start in range(0, len(data), chunk):
            fh.write(data[start : start + chunk])
            fh.flush()
            time.sleep(0.03)
    wait_for(lambda: "slow.csv" in folder.rows_per_file(), 20, "the slow file")
    time.sleep(1)  # room for a wrong second ingest to show up

    assert svc.stop() == 0
    assert folder.rows_per_file() == {"slow.csv": 2000}
    assert svc.text().count("ingested slow.csv") == 1


@pytest.mark.parametrize("send", ["paths", "bytes"])
def test_a_file_whose_writer_pauses_past_settle_ms_is_read_once_it_is_closed_whole(
    folder: Folder, service: Callable[..., Service], send: str
) -> None:
    """A writer that keeps its file open and pauses longer than settle_ms: the file looks
    settled at each pause. Read then, its first rows were committed and the file archived,
    and what the writer wrote next went on into the archived file, in no table."""
    folder.write_config(pipeline={"workers": 2, "send": send}, output={"flush_s": 0})
    svc = service()
    svc.wait_ready()
    target = folder.drop / "paused.csv"
    with target.open("w") as fh:
        fh.write("timestamp,v\n")
        for chunk in range(5):
            fh.writelines(f"{chunk * 10 + i},{i}.5\n" for i in range(10))
            fh.flush()
            time.sleep(0.3)  # six times settle_ms (50)
    wait_for(lambda: "ingested paused.csv" in svc.text(), 30, "paused.csv ingested")
    time.sleep(0.5)  # room for a wrong second ingest to show up
    assert svc.stop() == 0, svc.text()

    assert folder.rows_per_file() == {"paused.csv": 50}
    assert svc.text().count("ingested paused.csv") == 1
    assert "changed paused.csv" in svc.text() and "open for writing" in svc.text()
    (archived,) = folder.archive.rglob("paused.csv")
    assert archived.read_text().count("\n") == 51


def test_sigterm_exits_0_leaving_no_temp_files_and_readable_parquet(
    folder: Folder, service: Callable[..., Service]
) -> None:
    svc = service()
    svc.wait_ready()
    for i in range(200):
        write_csv(folder.drop / f"f{i:03d}.csv", rows=50, seed=i)
    wait_for(lambda: bool(folder.parts("records")), 20, "the first part file")

    code = svc.stop(signal.SIGTERM)

    assert code == 0, svc.text()
    assert not list((folder.output / "_ingest" / "tmp").iterdir())
    assert not [p for p in folder.output.rglob("*") if p.name.endswith(".tmp")]
    for part in folder.parts("records") + folder.parts("features"):
        pq.read_table(part)  # a complete footer, or this raises
    assert "stopping intake" in svc.text()
    # What was committed is all there, and nothing twice.
    committed = folder.rows_per_file()
    assert all(count == 50 for count in committed.values())
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    assert folder.rows_per_file() == {f"f{i:03d}.csv": 50 for i in range(200)}


def test_sigterm_counts_a_file_still_settling_as_left_for_the_next_run(
    folder: Folder, service: Callable[..., Service]
) -> None:
    folder.write_config(watch={"settle_ms": 1000})
    write_csv(folder.drop / "done.csv", rows=5, seed=1)
    with appended_to(folder.drop / "growing.csv"):
        svc = service()
        svc.wait_ready()
        wait_for(lambda: "ingested done.csv" in svc.text(), 30, "done.csv ingested")
        assert svc.stop(signal.SIGTERM) == 0, svc.text()
    summary = svc.text().strip().splitlines()[-1]
    assert "ingested 1 files" in summary and "1 left for the next run" in summary, summary
    assert (folder.drop / "growing.csv").exists()


def test_sigint_stops_cleanly_and_leaves_no_worker_behind(
    folder: Folder, service: Callable[..., Service]
) -> None:
    svc = service()
    svc.wait_ready()
    children = psutil.Process(svc.proc.pid).children(recursive=True)
    assert children, "the process pool runs in child processes"

    assert svc.stop(signal.SIGINT) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left behind: {alive}"
    assert "ingested 0 files" in svc.text()


def test_run_ignores_temp_and_hidden_names_until_renamed(
    folder: Folder, service: Callable[..., Service]
) -> None:
    svc = service()
    svc.wait_ready()
    write_csv(folder.drop / "x.csv.tmp", rows=10, seed=1)
    write_csv(folder.drop / ".hidden.csv", rows=10, seed=2)
    write_csv(folder.drop / "x.csv.part", rows=10, seed=3)
    time.sleep(1)
    assert folder.rows_per_file() == {}
    os.replace(folder.drop / "x.csv.tmp", folder.drop / "x.csv")
    wait_for(lambda: folder.rows_per_file() == {"x.csv": 10}, 20, "the renamed file")
    assert svc.stop() == 0


def test_files_dropped_while_the_service_starts_are_heard_or_found_at_once(
    folder: Folder, service: Callable[..., Service]
) -> None:
    """A file every few ms from before the start until after it: each is committed long
    before the next rescan, whether it came before the start-up scan, between it and
    the arming of the watcher, or after."""
    folder.write_config(watch={"settle_ms": 0, "rescan_s": 600}, output={"flush_s": 0.1})
    expected: dict[str, int] = {}
    stop = threading.Event()

    def drop_files() -> None:
        index = 0
        while not stop.is_set():
            name = f"f{index:05d}.csv"
            drop_by_rename(folder, name, f"timestamp,x\n{index},1\n".encode())
            expected[name] = 1
            index += 1
            time.sleep(0.003)

    writer = threading.Thread(target=drop_files)
    writer.start()
    try:
        svc = service()
        svc.wait_ready()
        time.sleep(0.5)
    finally:
        stop.set()
        writer.join()
    wait_for(lambda: len(folder.rows_per_file()) == len(expected), 60, "every dropped file")
    assert svc.stop() == 0
    assert folder.rows_per_file() == expected


def test_sigusr1_writes_every_stack_to_the_log_and_the_service_goes_on(
    folder: Folder, service: Callable[..., Service]
) -> None:
    svc = service()
    svc.wait_ready()
    forkservers = [p for p in psutil.Process(svc.proc.pid).children()
                   if "from multiprocessing.forkserver import main" in " ".join(p.cmdline())]
    workers = [worker for forkserver in forkservers for worker in forkserver.children()]
    assert len(workers) == 2, "the pool's workers"
    # To the whole group, as `systemctl kill -s USR1` sends it: the forkserver and the
    # workers do not die of it (the forkserver's death would break the pool).
    os.killpg(svc.proc.pid, signal.SIGUSR1)
    wait_for(lambda: stacks.END in svc.text(), 10, "the stacks")
    text = svc.text()
    kept = forkservers + workers
    gone, _ = psutil.wait_procs(kept, timeout=1)  # a killed one is reaped, or a zombie
    assert not gone and all(p.status() != psutil.STATUS_ZOMBIE for p in kept), text
    dump = text[text.index("asked by SIGUSR1"):]
    assert "--- thread MainThread" in dump, dump
    # The loop's tasks, each down to where it awaits: the intake on the settler's queue.
    assert "--- task " in dump, dump
    assert "in run\n    file = await ready.get()\n" in dump, dump
    assert "asyncio/queues.py" in dump, dump

    write_csv(folder.drop / "after.csv", rows=7, seed=4)
    wait_for(lambda: folder.rows_per_file() == {"after.csv": 7}, 30, "a file after the stacks")
    assert svc.stop() == 0, svc.text()
    assert "replacing the process pool" not in svc.text()


# `batch.csv`: its name matched the patterns, so it was taken for a file, found not
# regular, and its files waited for the next rescan.
@pytest.mark.parametrize("name", ["day", "batch.csv"])
def test_a_folder_moved_in_is_ingested_without_waiting_for_a_rescan(
    folder: Folder, service: Callable[..., Service], name: str
) -> None:
    # Its files send no event of their own as it is moved in: only the folder does.
    folder.write_config(watch={"settle_ms": 50, "rescan_s": 3600}, output={"flush_s": 0})
    svc = service()
    svc.wait_ready()
    staged = folder.root / "stage" / name
    staged.mkdir(parents=True)
    expected = {
        f"{name}/m{i}.csv": len(write_csv(staged / f"m{i}.csv", 10 + i, i)) for i in range(3)
    }
    (staged / "inner").mkdir()
    expected[f"{name}/inner/n.csv"] = len(write_csv(staged / "inner" / "n.csv", 5, 9))
    staged.rename(folder.drop / name)
    wait_for(lambda: folder.rows_per_file() == expected, 30, "the moved-in folder's files")
    assert svc.stop() == 0


def test_a_file_in_a_hidden_folder_is_not_read_until_it_is_moved_out(
    folder: Folder, service: Callable[..., Service]
) -> None:
    # An uploader's staging folder inside the drop folder: no scan enters it, and no
    # event from it makes an input either.
    folder.write_config(watch={"settle_ms": 50, "rescan_s": 1}, output={"flush_s": 0})
    svc = service()
    svc.wait_ready()
    hidden = folder.drop / ".staging"
    hidden.mkdir()
    # Once a file made after it is ingested, the hidden folder is watched as well.
    write_csv(folder.drop / "marker.csv", 3, 2)
    wait_for(lambda: "marker.csv" in folder.rows_per_file(), 30, "a file beside it")
    rows = len(write_csv(hidden / "s.csv", 20, 1))
    time.sleep(1.5)  # a rescan, and the events of the hidden file's writes
    assert "s.csv" not in svc.text()
    (hidden / "s.csv").rename(folder.drop / "s.csv")
    wait_for(lambda: folder.rows_per_file().get("s.csv") == rows, 30, "the file moved out")
    assert svc.stop() == 0
    assert folder.rows_per_file() == {"marker.csv": 3, "s.csv": rows}


def test_a_file_in_a_symlinked_folder_that_leads_out_is_never_read_nor_deleted(
    folder: Folder, service: Callable[..., Service]
) -> None:
    # The watcher hears events through the link (no scan enters a linked folder): the
    # file was read as `linkdir/secret.csv`, then deleted where it really is.
    folder.write_config(
        watch={"settle_ms": 50, "on_success": "delete", "rescan_s": 1}, output={"flush_s": 0}
    )
    outside = folder.root / "outside"
    outside.mkdir()
    (folder.drop / "linkdir").symlink_to(outside, target_is_directory=True)
    svc = service("--log-level", "DEBUG")
    svc.wait_ready()
    secret = outside / "secret.csv"
    write_csv(secret, 5, 1)
    wait_for(lambda: "inside a symlinked folder" in svc.text(), 30, "the file to be refused")
    rows = len(write_csv(folder.drop / "marker.csv", 3, 2))
    wait_for(lambda: "marker.csv" in folder.rows_per_file(), 30, "a file beside it")
    scans = svc.text().count("rescan found")
    wait_for(lambda: svc.text().count("rescan found") >= scans + 2, 30, "two rescans")
    secret.touch()  # an event through the link, after rescans that cannot find the file
    wait_for(lambda: svc.text().count("rescan found") >= scans + 3, 30, "another rescan")
    assert svc.stop() == 0
    assert svc.text().count("inside a symlinked folder") == 1, "named once, not per rescan"
    assert secret.exists(), "a file outside the drop folder was deleted"
    assert folder.rows_per_file() == {"marker.csv": rows}
