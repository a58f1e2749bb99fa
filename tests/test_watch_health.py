"""A watcher that cannot go deaf silently: `ingest run` in a real subprocess, its drop
folder removed and replaced under it, seen through the output, /healthz and `status`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable

import psutil
import pytest

from .conftest import Folder, Service, drop_csv, free_port, wait_for, write_csv
from .invariants import check_exactly_once

# A rescan would find a file within rescan_s; these files must be found by the watcher, so
# long before that a DEADLINE_S that other tests' processes on the same cores cannot reach
# shows it.
RESCAN_S = 3600
DEADLINE_S = 60




def _healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _config(folder: Folder, **metrics: object) -> None:
    folder.write_config(
        watch={"settle_ms": 50, "rescan_s": RESCAN_S}, pipeline={"workers": 1},
        output={"flush_s": 0.2}, **({"metrics": metrics} if metrics else {}),
    )


@pytest.mark.parametrize("how", ["rm -rf; mkdir", "mv away; mkdir"])
def test_a_replaced_drop_folder_is_watched_again_and_its_files_are_committed_at_once(
    folder: Folder, service: Callable[..., Service], how: str
) -> None:
    _config(folder)
    svc = service()
    svc.wait_ready()
    drop_csv(folder, "before.csv", rows=20, seed=1)
    wait_for(lambda: "before.csv" in folder.rows_per_file(), DEADLINE_S, "the first file")

    if how.startswith("rm"):
        shutil.rmtree(folder.drop)
    else:
        folder.drop.rename(folder.root / "old_drop")
    folder.drop.mkdir()
    drop_csv(folder, "after.csv", rows=30, seed=2)

    wait_for(lambda: "after.csv" in folder.rows_per_file(), DEADLINE_S, "a file in the new folder")
    assert "was removed or replaced" in svc.text()
    drop_csv(folder, "later.csv", rows=40, seed=3)  # heard by the new watcher
    wait_for(lambda: "later.csv" in folder.rows_per_file(), DEADLINE_S, "a later file")
    assert svc.stop() == 0
    check_exactly_once(folder, {"before.csv": 20, "after.csv": 30, "later.csv": 40}, set())
    assert not (folder.drop / ".ingest-canary").exists()


def test_a_drop_folder_symlink_pointed_at_another_folder_is_watched_there(
    folder: Folder, service: Callable[..., Service]
) -> None:
    """A release swaps `drop -> releases/1` for `drop -> releases/2`: the folder the
    service watched is no longer the drop folder."""
    _config(folder)
    folder.drop.rmdir()
    for release in ("1", "2"):
        (folder.root / "releases" / release).mkdir(parents=True)
    folder.drop.symlink_to(folder.root / "releases" / "1")
    svc = service()
    svc.wait_ready()
    drop_csv(folder, "before.csv", rows=20, seed=1)
    wait_for(lambda: "before.csv" in folder.rows_per_file(), DEADLINE_S, "the first file")

    swapped = folder.root / "drop.new"
    swapped.symlink_to(folder.root / "releases" / "2")
    swapped.replace(folder.drop)
    drop_csv(folder, "after.csv", rows=30, seed=2)

    wait_for(lambda: "after.csv" in folder.rows_per_file(), DEADLINE_S, "a file in the new folder")
    assert "was removed or replaced" in svc.text()
    assert svc.stop() == 0
    check_exactly_once(folder, {"before.csv": 20, "after.csv": 30}, set())
    assert not any((folder.root / "releases" / "2").iterdir()), "archived from where it was"


def _mount_tmpfs(folder: Folder) -> None:
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder.drop)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")


def test_a_drop_folder_unmounted_and_mounted_again_is_watched_again_each_time(
    folder: Folder, service: Callable[..., Service]
) -> None:
    _config(folder)
    _mount_tmpfs(folder)
    try:
        svc = service()
        svc.wait_ready()
        drop_csv(folder, "mounted.csv", rows=10, seed=6)
        wait_for(lambda: "mounted.csv" in folder.rows_per_file(), DEADLINE_S, "a file on the mount")

        subprocess.run(["umount", str(folder.drop)], check=True)
        drop_csv(folder, "unmounted.csv", rows=20, seed=7)  # in the bare mount point
        wait_for(lambda: "unmounted.csv" in folder.rows_per_file(), DEADLINE_S, "a file, unmounted")

        _mount_tmpfs(folder)
        drop_csv(folder, "remounted.csv", rows=30, seed=8)
        wait_for(lambda: "remounted.csv" in folder.rows_per_file(), DEADLINE_S, "a file, remounted")
        assert svc.stop() == 0
    finally:
        subprocess.run(["umount", "--lazy", str(folder.drop)], capture_output=True)
    assert svc.text().count("was removed or replaced") == 2
    check_exactly_once(
        folder, {"mounted.csv": 10, "unmounted.csv": 20, "remounted.csv": 30}, set()
    )


def test_healthz_is_503_while_the_drop_folder_is_missing_and_200_once_it_is_back(
    folder: Folder, service: Callable[..., Service]
) -> None:
    port = free_port()
    _config(folder, port=port)
    svc = service()
    svc.wait_ready()
    wait_for(lambda: _healthz(port)[0] == 200, 10, "a healthy service")

    shutil.rmtree(folder.drop)
    wait_for(lambda: _healthz(port)[0] == 503, DEADLINE_S, "/healthz to say the watcher is deaf")
    code, reason = _healthz(port)
    assert code == 503 and "drop folder" in reason and "missing" in reason, reason
    assert "waiting for it to come back" in svc.text()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert "ingest_watch_deaf 1.0" in response.read().decode()

    folder.drop.mkdir()
    wait_for(lambda: _healthz(port)[0] == 200, DEADLINE_S, "/healthz to recover")
    write_csv(folder.drop / "back.csv", rows=10, seed=4)
    wait_for(lambda: "back.csv" in folder.rows_per_file(), DEADLINE_S, "a file in the folder")
    assert svc.stop(signal.SIGTERM) == 0


def test_status_and_metrics_show_the_watch_mode_of_the_running_service(
    folder: Folder, service: Callable[..., Service]
) -> None:
    port = free_port()
    _config(folder, port=port)
    assert json.loads(folder.ingest("status", "--json").stdout)["watcher"] is None
    svc = service()
    svc.wait_ready()

    wait_for(lambda: json.loads(folder.ingest("status", "--json").stdout)["watcher"] is not None,
             10, "the service to record its watch mode")
    watcher = json.loads(folder.ingest("status", "--json").stdout)["watcher"]
    assert watcher["mode"] == "events" and watcher["pid"] == svc.proc.pid
    assert watcher["deaf"] is None
    assert f"watcher:     events (pid {svc.proc.pid}" in folder.ingest("status").stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    assert 'ingest_watch_mode{mode="events"} 1.0' in body
    assert 'ingest_watch_mode{mode="polling"} 0.0' in body

    # kill -9, not yet reaped (its parent, this test, has not waited for it): the mode file
    # stays behind, naming a pid the kernel still answers for, as a zombie's.
    os.killpg(svc.proc.pid, signal.SIGKILL)
    wait_for(lambda: psutil.Process(svc.proc.pid).status() == psutil.STATUS_ZOMBIE, 10,
             "the service killed, not reaped")
    assert json.loads(folder.ingest("status", "--json").stdout)["watcher"] is None
    assert "watcher:     not running" in folder.ingest("status").stdout
    svc.kill()  # reaped: gone altogether
    assert json.loads(folder.ingest("status", "--json").stdout)["watcher"] is None


def test_force_polling_is_shown_as_polling_with_its_reason(
    folder: Folder, service: Callable[..., Service]
) -> None:
    folder.write_config(
        watch={"settle_ms": 50, "rescan_s": RESCAN_S, "force_polling": True},
        pipeline={"workers": 1}, output={"flush_s": 0.2},
    )
    svc = service()
    svc.wait_ready()
    write_csv(folder.drop / "a.csv", rows=10, seed=5)
    wait_for(lambda: "a.csv" in folder.rows_per_file(), DEADLINE_S, "a polled file")

    watcher = json.loads(folder.ingest("status", "--json").stdout)["watcher"]
    assert watcher["mode"] == "polling" and "force_polling" in watcher["reason"]
    assert svc.stop() == 0
    assert json.loads(folder.ingest("status", "--json").stdout)["watcher"] is None


def test_while_names_not_utf8_keep_the_watcher_down_healthz_says_it_is_deaf(
    folder: Folder, service: Callable[..., Service]
) -> None:
    """Each such name ends the watcher; after two in a row, the next waits a while, and
    nothing hears the drop folder meanwhile but the rescans."""
    port = free_port()
    _config(folder, port=port)
    svc = service()
    svc.wait_ready()
    wait_for(lambda: _healthz(port)[0] == 200, 10, "a healthy service")
    names = [os.fsdecode(b"m\xe4rz_%d.csv" % i) for i in range(6)]
    deaf: list[str] = []
    for i, name in enumerate(names):
        drop_csv(folder, name, rows=5, seed=i)
        try:
            wait_for(lambda: _healthz(port)[0] == 503, 1.5, "the watcher's pause")
        except AssertionError:
            continue
        deaf.append(_healthz(port)[1])
    assert any("watcher deaf: no file watcher for" in reason for reason in deaf), deaf
    wait_for(lambda: _healthz(port)[0] == 200, 120, "a watcher again")
    drop_csv(folder, "after.csv", rows=7, seed=9)
    wait_for(lambda: "after.csv" in folder.rows_per_file(), DEADLINE_S, "a file heard again")
    assert svc.stop() == 0
    assert sorted(folder.rows_per_file().values()) == [5] * len(names) + [7]
