"""Wall time, CPU seconds and peak RSS of a command's whole process tree.

Called in the parent process. The command's exit is awaited with a blocking
wait, so wall time is exact; a sampling thread sums the RSS of the process
and all its descendants every `POLL_S`. CPU time comes from the kernel's
rusage of waited-for children, which includes every worker the command
reaped, and is cross-checked against the last CPU times sampled per process
in case a worker was never reaped.
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


def _kill_group(process: subprocess.Popen[bytes]) -> int:
    """Kill the process group the measured command leads, then reap the command."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


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
            returncode = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            returncode = _kill_group(process)
        except BaseException:
            _kill_group(process)
            raise
        wall = time.perf_counter() - started
        sampler.stop()
    cpu = max(_children_cpu() - cpu_before, sampler.cpu_s)
    return Sample(wall, cpu, sampler.peak_rss, returncode)
