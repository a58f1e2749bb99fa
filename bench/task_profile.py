"""Where a worker's time goes: one task of a corpus's files, run in this process, profiled.

    python -m bench.task_profile --shape small --files 97 --tasks 10
    python -m bench.task_profile --shape jsonl --files 25 --tasks 4

Reads the cached corpus (see bench.corpus), makes tasks the way the service
does (the files' bytes, which the worker hashes), runs `ingest.compute.task.process` on each
with the parts staged in a scratch folder, and prints the milliseconds per task
and the functions that took them (cProfile, by own time). The tasks run
without the profiler first, for their CPU time alone: `--repeat` passes over
all of them, of which the median is reported (the first pass also pays for
the heap's growth).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from ingest import memory
from ingest.compute.task import process, pyarrow_without_pandas, warm
from ingest.config import Features
from ingest.jobs import Job, Task

from .corpus import DEFAULT_ROOT, DEFAULT_SEED, SHAPES, corpus_name


def worker_threads() -> None:
    """One BLAS thread, as `init_worker` sets it, where the package under test does."""
    startup = importlib.import_module("ingest.compute.startup")
    if hasattr(startup, "one_blas_thread"):  # a package from before it runs as it did
        startup.one_blas_thread()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="small")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--files", type=int, default=48, help="files per task (48 = 8 MB of small)")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="passes over the tasks without the profiler; the median pass is reported",
    )
    args = parser.parse_args()

    folder = DEFAULT_ROOT / corpus_name(args.shape, args.scale, args.seed)
    suffix = SHAPES[args.shape].suffix if args.shape in SHAPES else ".csv"
    paths = sorted(folder.glob(f"*{suffix}"))[: args.files * args.tasks]
    if not paths:
        raise SystemExit(f"no corpus at {folder}: run python -m bench.corpus --shapes {args.shape}")
    memory.reuse_large_buffers()  # as `init_worker` does in each worker of the pool
    worker_threads()
    pyarrow_without_pandas()
    warm()
    with tempfile.TemporaryDirectory() as scratch:
        tasks = []
        for start in range(0, len(paths), args.files):
            jobs = tuple(
                Job(p.name, "", data)  # the worker hashes it, as for the service
                for p in paths[start : start + args.files]
                for data in [p.read_bytes()]
            )
            tasks.append(Task(jobs, Features(), stage=str(Path(scratch) / f"task-{start}")))
        passes = []
        for _ in range(args.repeat):  # without the profiler, for the CPU time alone
            began = time.process_time()
            for task in tasks:
                process(task)
            passes.append(time.process_time() - began)
        cpu = statistics.median(passes)
        profile = cProfile.Profile()
        began = time.perf_counter()
        profile.enable()
        for task in tasks:
            process(task)
        profile.disable()
        elapsed = time.perf_counter() - began
    mb = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{len(tasks)} tasks of {args.files} files, {mb / len(tasks):.1f} MB each:"
          f" {cpu / len(tasks) * 1000:.0f} ms of CPU per task,"
          f" {cpu / len(tasks) / args.files * 1e6:.0f} µs per file;"
          f" {elapsed / len(tasks) * 1000:.0f} ms per task profiled")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
