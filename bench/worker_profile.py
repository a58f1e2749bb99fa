"""Where ingest's workers spend their CPU: `ingest once` over a corpus, every process
under py-spy, the workers' samples summed by stage.

    python -m bench.worker_profile --shape jsonl

Called in the parent process. Runs `py-spy record --subprocesses --native --format
raw` (py-spy is not a dependency: `pip install py-spy` in the venv) on the whole
process tree, then sums each process's samples, and the workers' by STAGES (first
match), as seconds and as a share of the workers' running samples. `--native` shows
the C++ under pyarrow's calls, so a Parquet write's zstd is told apart from its
encoding. A thread blocked in a system call (a worker waiting for its next task, the
thread that watches for the parent's exit) is counted apart, as waiting: py-spy cannot
always tell it from a running one.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import corpus, ingest_job
from .compiled import byte_compile
from .main_profile import py_spy, samples_table

DEFAULT_SCRATCH = Path(__file__).resolve().parent / ".scratch" / "worker_profile"
# A process's command line may hold `;` (the forkserver's `-c` does): up to `";` only.
PROCESS = re.compile(r'process (?P<pid>\d+):".*?";')
WORKER = "_process_worker"  # concurrent.futures' loop in each pool worker
WAITING = ("_exit_when_gone", "_recv_bytes", "wait (threading.py", "select (")
ZSTD = ("ZSTD_", "HUF_", "HIST_", "FSE_")
WRITE = ("write_table (", "ParquetWriter")
# A sample's stage: the first rule any of its frames matches, in this order.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("start-up: imports", ("_find_and_load",)),
    # Native frames too: py-spy's unwinding can leave out the Cython call above them.
    ("parse: Arrow's reader", ("read_json (", "read_csv (", "open_csv (", "arrow::json::",
                               "arrow::csv::")),
    ("a task's time limit and heartbeat", ("ingest/compute/limit.py", "ingest/beacon.py")),
    ("parse: ingest's checks and rescues", ("ingest/compute/decode.py", "ingest/compute/json",
                                            "ingest/compute/together.py", "ingest/isotime.py")),
    ("Parquet write: zstd", ()),  # matched by `_stage`: zstd's frames under a write
    ("Parquet write: encoding, statistics, footer", WRITE),
    ("features", ("ingest/compute/features.py", "ingest/compute/summaries.py")),
    ("sha256", ("sha256",)),
    ("read by path", ("ingest/compute/inputs.py",)),
    ("fit to the table's schema", ("ingest/fitting.py", "ingest/compute/runs.py",
                                   "ingest/conform.py", "ingest/widen.py")),
    ("result back to the service", ("_sendback_result", "ForkingPickler")),
)


@dataclass(frozen=True)
class Sample:
    pid: int  # the innermost process of the sample's chain
    frames: tuple[str, ...]  # "function (path:line)", outermost first
    count: int

    @property
    def worker(self) -> bool:
        return any(WORKER in f for f in self.frames)

    @property
    def waiting(self) -> bool:
        return any(needle in f for needle in WAITING for f in self.frames[-3:]) or any(
            "_exit_when_gone" in f for f in self.frames
        )


def parse(lines: Iterator[str]) -> list[Sample]:
    """py-spy's raw output of a tree: `process 1:"cmd";process 2:"cmd";frame;frame 42`."""
    samples = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        pid, at = 0, 0
        while (match := PROCESS.match(stack, at)) is not None:
            pid, at = int(match["pid"]), match.end()
        samples.append(Sample(pid, tuple(stack[at:].split(";")), int(count)))
    return samples


def _stage(sample: Sample) -> str:
    writing = any(needle in f for needle in WRITE for f in sample.frames)
    if writing and any(f.startswith(ZSTD) for f in sample.frames):
        return "Parquet write: zstd"
    for name, needles in STAGES:
        if any(needle in f for needle in needles for f in sample.frames):
            return name
    return "other"


def summarise(samples: Sequence[Sample], rate: float, files: int, top: int) -> None:
    processes: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    workers = {s.pid for s in samples if s.worker}
    for sample in samples:
        if sample.waiting:
            processes["(waiting, any process)"] += sample.count
            continue
        role = "worker" if sample.pid in workers else "other (main, forkserver, tracker)"
        processes[f"{role} {sample.pid}"] += sample.count
        if sample.pid in workers:
            stages[_stage(sample)] += sample.count
    running = sum(n for key, n in processes.items() if not key.startswith("(waiting"))
    print(f"{running} running samples at {rate:g} Hz = {running / rate:.2f} s, {files} files,"
          f" {len(workers)} workers")
    samples_table("By process", processes, rate, files, top)
    samples_table("The workers' running samples, by stage", stages, rate, files, top)


def record(data: corpus.Corpus, scratch: Path, rate: float) -> Path:
    """Run `ingest once` over the corpus, kept, under py-spy; the raw samples' path."""
    ingest_job.reset(scratch)
    config = ingest_job.write_config(scratch / "config.toml", data.path, scratch)
    raw = scratch / "raw.txt"
    flags = ["--subprocesses", "--native", "--format", "raw", "--rate", f"{rate:g}"]
    subprocess.run(
        [py_spy(), "record", *flags, "--output", str(raw), "--",
         *ingest_job.command("once", "--config", str(config))],
        check=True,
    )
    return raw


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_profile", description=__doc__)
    parser.add_argument("--shape", type=corpus.parse_shapes, default=["jsonl"])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--corpus-dir", type=Path, default=corpus.DEFAULT_ROOT)
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH)
    parser.add_argument("--rate", type=float, default=200.0, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="summarise this py-spy raw file; run nothing")
    args = parser.parse_args(argv)
    data = corpus.generate(args.shape[0], args.scale, args.seed, args.corpus_dir)
    byte_compile(Path(__file__).resolve().parent.parent / "ingest")
    raw = args.raw or record(data, args.scratch, args.rate)
    with open(raw) as lines:
        summarise(parse(lines), args.rate, data.files, args.top)


if __name__ == "__main__":
    main()
