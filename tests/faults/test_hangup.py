"""SIGHUP, a closed terminal's or a lost ssh session's, sent to the whole process group:
`ingest run` drains and exits 0 as on SIGTERM, and its workers (the pool's, or a local
dask cluster's) live through it to finish what is in flight. Started under `nohup`, the
service ignores it, as the caller asked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
import pytest

from ..conftest import ROOT, Folder, Service, wait_for, write_csv
from ..invariants import check_exactly_once


def _backlog(folder: Folder, count: int) -> dict[str, int]:
    return {
        f"f{i:03d}.csv": len(write_csv(folder.drop / f"f{i:03d}.csv", 200, i))
        for i in range(count)
    }


@pytest.mark.timeout(180)
@pytest.mark.parametrize("executor", ["process", "dask://local"])
def test_a_hangup_to_the_group_drains_in_flight_files_and_exits_0(
    folder: Folder, service: Callable[..., Service], executor: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the service loads the tests' feature set
    folder.write_config(
        watch={"settle_ms": 0},
        pipeline={"workers": 2, "executor": executor, "drain_s": 60},
        features={"sets": ["summary", "tests.plugin_sets:slow"]},
        output={"flush_s": 0},
    )
    expected = _backlog(folder, 60)
    svc = service()
    wait_for(lambda: bool(folder.parts("records")) or svc.proc.poll() is not None, 120,
             "the first commit")
    assert svc.proc.poll() is None, svc.text()
    workers = [p for p in psutil.Process(svc.proc.pid).children(recursive=True)]
    assert workers, "the executor's processes"

    os.killpg(svc.proc.pid, signal.SIGHUP)
    code = svc.proc.wait(120)
    text = svc.text()

    assert code == 0, text
    assert "SIGHUP: stopping intake and draining in-flight files" in text, text
    # Drained by the workers it had: none died of the hangup, so none was replaced, and
    # no file in flight was charged for one.
    assert "replacing" not in text and "WorkerCrashed" not in text, text
    assert "Restarting worker" not in text and "died unexpectedly" not in text, text
    assert "Traceback" not in text, text
    assert ", 0 quarantined," in text, text
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"left behind: {alive}"
    left = {p.name for p in folder.drop.glob("*.csv")}
    assert len(left) < len(expected), "some files were committed before the stop"
    restarted = folder.ingest("once")
    assert restarted.returncode == 0, restarted.stderr
    check_exactly_once(folder, expected, set())


def test_under_nohup_a_hangup_is_ignored_and_the_service_goes_on(folder: Folder) -> None:
    folder.write_config(watch={"settle_ms": 0}, output={"flush_s": 0})
    log = folder.root / "service.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["nohup", sys.executable, "-m", "ingest", "run", "--config", str(folder.config)],
            cwd=folder.root, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "watching" in log.read_text() or proc.poll() is not None, 60,
                 "the service to start watching")
        os.killpg(proc.pid, signal.SIGHUP)
        time.sleep(1)
        assert proc.poll() is None, log.read_text()
        rows = len(write_csv(folder.drop / "after.csv", 7, 4))
        wait_for(lambda: folder.rows_per_file() == {"after.csv": rows}, 30,
                 "a file dropped after the hangup")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
        text = log.read_text()
        assert "SIGHUP" not in text and "replacing" not in text, text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
