"""Wall time, CPU seconds and peak RSS of a command's whole process tree.

Called in the parent process. The command's exit is awaited with a blocking
wait, so wall time is exact; a sampling thread sums the RSS of the process
and all its descendants every `POLL_S`. CPU time comes from the kernel's
rusage of waited-for children, which includes every worker the command
reaped, and is cross-checked against the last CPU times sampled per process
in case a worker was never reaped.

The command's own CPU (its main process, all of its threads, none of its
children: what `getrusage(RUSAGE_SELF)` would say at exit) is read from
`/proc/<pid>/stat` once the process has exited and before it is reaped: the
wait uses `WNOWAIT`, so the zombie still holds its final utime and stime.
Elsewhere it falls back to the last sample, up to `POLL_S` before the exit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

# 20 ms catches short peaks; one sample of a small tree costs about 1 ms of CPU.
POLL_S = 0.02


@dataclass(frozen=True)
class Sample:
    """One measured run of a command."""

    wall_s: float
    cpu_s: float
    peak_rss: int  # bytes, summed over the process tree at its largest sample
    returncode: int
    main_cpu_s: float = 0.0  # the command's own process, all threads, at exit


class TreeSampler(threading.Thread):
    """Samples one process tree until `stop()`; keeps peak RSS and per-process CPU."""

    def __init__(self, pid: int, poll_s: float = POLL_S) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.poll_s = poll_s
        self.peak_rss = 0
        self._cpu: dict[int, float] = {}
        self._known: dict[int, psutil.Process] = {}
        self._stopped = threading.Event()

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu.values())

    @property
    def root_cpu_s(self) -> float:
        return self._cpu.get(self.root.pid, 0.0)

    def stop(self) -> None:
        self._stopped.set()
        self.join()

    def _tree(self) -> list[psutil.Process]:
        try:
            found = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        # Reuse Process objects so psutil keeps its per-process caches.
        return [self._known.setdefault(p.pid, p) for p in found]

    def sample(self) -> None:
        total = 0
        for process in self._tree():
            try:
                with process.oneshot():
                    total += process.memory_info().rss
                    times = process.cpu_times()
            except psutil.Error:
                continue
            self._cpu[process.pid] = times.user + times.system
        self.peak_rss = max(self.peak_rss, total)

    def run(self) -> None:
        while not self._stopped.is_set():
            self.sample()
            self._stopped.wait(self.poll_s)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kill_group(pid: int) -> None:
    """Kill the process group the measured command leads (it is reaped by the caller)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _exited_cpu(pid: int) -> float | None:
    """User + system seconds of an exited, not yet reaped process, all its threads.

    Fields 14 and 15 of /proc/<pid>/stat; the children's (16 and 17) are left out.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, field 2, is in parentheses and may hold spaces.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_unreaped(pid: int, timeout_s: float | None) -> None:
    """Block until `pid` exits, leaving it a zombie; kill its group after `timeout_s`."""
    timer = threading.Timer(timeout_s, _kill_group, (pid,)) if timeout_s else None
    if timer is not None:
        timer.start()
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    finally:
        if timer is not None:
            timer.cancel()


def measure(
    command: Sequence[str],
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> Sample:
    """Run `command` to completion, its output to `log`, and measure it.

    Only one measured command may run at a time: the CPU figure is a delta of
    this process's children's rusage.
    """
    cpu_before = _children_cpu()
    with open(log, "wb") as out:
        started = time.perf_counter()
        # A session of its own, so a timeout or Ctrl-C can end the tool's workers with it.
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True
        )
        sampler = TreeSampler(process.pid)
        sampler.start()
        try:
            _wait_unreaped(process.pid, timeout_s)
        except BaseException:
            _kill_group(process.pid)
            process.wait()
            raise
        wall = time.perf_counter() - started
        main_cpu = _exited_cpu(process.pid)
        returncode = process.wait()
        sampler.stop()
    cpu = max(_children_cpu() - cpu_before, sampler.cpu_s)
    if main_cpu is None:
        main_cpu = sampler.root_cpu_s
    return Sample(wall, cpu, sampler.peak_rss, returncode, main_cpu)
