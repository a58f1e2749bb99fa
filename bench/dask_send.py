"""ingest on a real dask cluster, sent bytes or paths, against the local process pool.

    python -m bench.dask_send --shape small --repeat 3

Starts a `dask scheduler` and two `dask worker` processes (`--nworkers 1
--nthreads 1` each) with the CLI, on 127.0.0.1 and a free port, as an
operator would, and keeps them for the whole run. The workers share this
machine's disk, which is what `send = "paths"` and `shared_output` ask for. Each mode runs
`ingest once` `--repeat` times in a fresh output folder, round-robin, the
order rotated each round. Printed: each run, then per mode the median wall
time, its ratio to the local pool, the median CPU of ingest's own process
tree (its main process apart) and of the dask processes, and the check of the
first run's row counts against the corpus. Called in the parent process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil

from . import check, corpus, ingest_job
from .measure import Sample, measure

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = Path(__file__).resolve().parent / ".scratch" / "dask_send"
# "dask paths+output": sent paths, and the workers write their own part files
# (`shared_output = true`), as the local pool's do.
MODES = ("pool", "dask bytes", "dask paths", "dask paths+output")
WORKERS = 2
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_workers(address: str, count: int) -> None:
    code = (
        "from distributed import Client\n"
        f"with Client({address!r}, timeout={START_TIMEOUT_S}) as client:\n"
        f"    client.wait_for_workers({count}, timeout={START_TIMEOUT_S})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=2 * START_TIMEOUT_S)


@contextmanager
def cluster(workers: int = WORKERS) -> Iterator[tuple[str, list[psutil.Process]]]:
    """A scheduler and `workers` single-threaded workers; yields the address and the
    CLI processes (each worker's process is a child of its nanny)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    commands = [[sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", str(port), "--no-dashboard"]]
    commands += [[sys.executable, "-m", "distributed.cli.dask_worker", address, "--host",
                  "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]] * workers
    processes = [
        subprocess.Popen(c, start_new_session=True, **quiet)  # type: ignore[call-overload]
        for c in commands
    ]
    try:
        _wait_for_workers(address, workers)
        yield address, [psutil.Process(p.pid) for p in processes]
    finally:
        for proc in processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _cpu(processes: Sequence[psutil.Process]) -> float:
    """CPU seconds of the processes and their descendants so far."""
    total = 0.0
    for root in processes:
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def _overrides(mode: str, address: str) -> dict[str, dict[str, ingest_job.TomlValue]]:
    pipeline: dict[str, ingest_job.TomlValue] = {"workers": WORKERS}
    if mode != "pool":
        send, _, output = mode.removeprefix("dask ").partition("+")
        pipeline |= {"executor": f"dask://{address}", "send": send,
                     "shared_output": output == "output"}
    return {"pipeline": pipeline}


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(data: corpus.Corpus, repeat: int) -> list[str]:
    samples: dict[str, list[tuple[Sample, float]]] = {mode: [] for mode in MODES}
    checks: dict[str, str] = {}
    expected = {p.name: data.rows_per_file for p in data.input_files()}
    with cluster() as (address, dask_processes):
        for round_ in range(repeat):
            shift = round_ % len(MODES)
            for mode in [*MODES[shift:], *MODES[:shift]]:
                out = SCRATCH / mode.replace(" ", "-")
                ingest_job.reset(out)
                config = ingest_job.write_config(
                    out / "config.toml", data.path, out, _overrides(mode, address)
                )
                log = SCRATCH / f"{mode.replace(' ', '-')}-{round_}.log"
                dask_before = _cpu(dask_processes)
                sample = measure(ingest_job.command("once", "--config", str(config)), log,
                                 cwd=ROOT)
                dask_cpu = _cpu(dask_processes) - dask_before
                samples[mode].append((sample, dask_cpu))
                print(f"  round {round_ + 1}/{repeat} {mode:17s} {sample.wall_s:6.2f} s"
                      f"  ingest CPU {sample.cpu_s:6.2f} s (main {sample.main_cpu_s:5.2f})"
                      f"  dask CPU {dask_cpu:6.2f} s  exit {sample.returncode}", flush=True)
                if mode not in checks and sample.returncode == 0:
                    got = check.load(out / "output")
                    checks[mode] = check.verdict(check.compare_rows(expected, got))
                shutil.rmtree(out, ignore_errors=True)
                time.sleep(1)  # let the workers settle between runs
    pool = _median([s.wall_s for s, _ in samples["pool"]])
    lines = [
        f"`{data.shape}`: {data.files:,} files, {data.bytes / 1e6:,.0f} MB; {WORKERS} workers;"
        f" medians of {repeat}",
        "",
        "| mode | wall s | / pool | ingest tree CPU s | its main process CPU s"
        " | dask processes CPU s | check |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        runs = samples[mode]
        wall = _median([s.wall_s for s, _ in runs])
        lines.append(
            f"| {mode} | {wall:.2f} | {wall / pool:.2f}"
            f" | {_median([s.cpu_s for s, _ in runs]):.2f}"
            f" | {_median([s.main_cpu_s for s, _ in runs]):.2f}"
            f" | {_median([c for _, c in runs]):.2f} | {checks.get(mode, 'no good run')} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.dask_send", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="small", choices=sorted(corpus.SHAPES))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--corpus-dir", type=Path, default=corpus.DEFAULT_ROOT)
    args = p.parse_args(argv)
    data = corpus.generate(args.shape, args.scale, root=args.corpus_dir)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    print("\n".join(run(data, args.repeat)))


if __name__ == "__main__":
    main()
