"""Where ingest's main process spends its time: `ingest once` over a corpus, under py-spy.

    python -m bench.main_profile --shape tiny --gil      # samples of the thread holding the GIL
    python -m bench.main_profile --shape tiny --idle     # every thread, waiting or not

Called in the parent process. Runs `py-spy record --threads --format raw`
(py-spy is not a dependency: `pip install py-spy` in the venv) on the main
process only, not the workers, then sums the samples three ways, each as
seconds and as microseconds per input file:

- by thread: the event loop (MainThread) and the threads it hands work to;
- by stage of a file's way through the main process (STAGES, first match);
- by the innermost ingest function on the stack, with the library call
  under it (what ingest asked for, and what did the work);
- inclusive, per ingest function (the command line's frames left out):
  every ingest function on a stack is charged for the sample once.

With `--gil`, a sample is the thread that held the GIL at that instant: the
main process's serial work, which no number of workers shrinks (it misses
only C code that lets go of the GIL, such as hashing large buffers). With
`--idle`, every thread counts at every sample, waiting or not: wall time.
Without either, py-spy means to keep only running threads, but where it
cannot tell a waiting thread from a running one (as on the machine of the
results in bench/README.md) it counts them all, as `--idle` does.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import corpus, ingest_job
from .compiled import byte_compile

DEFAULT_SCRATCH = Path(__file__).resolve().parent / ".scratch" / "main_profile"
# `thread (123): MainThread;frame;frame 42`: the thread, its name, the stack, the count.
LINE = re.compile(r"^thread \((?P<tid>\w+)\): (?P<stack>.*) (?P<count>\d+)$")
FRAME = re.compile(r"^(?P<function>.*) \((?P<where>[^()]*):\d+\)$")
# Default-executor threads (aiofiles, asyncio.to_thread) are asyncio_0, asyncio_1, ...
NUMBERED = re.compile(r"_\d+$")
# A sample's stage: the first rule any of its frames (or its thread) matches, in this order.
# Each rule is (stage, substrings of "function (path)" or of the thread's name).
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "start-up: imports, ledger, pool",
        ("_find_and_load", "Compute.start", "open_ledger"),
    ),
    ("log line per file (loop + log thread)", ("ingest/logs.py", "_monitor", "QueueListener")),
    ("read: aiofiles open/read/close", ("read_bytes (", "read_into_segment (", "aiofiles/")),
    ("hash: sha256", ("_sha256 (", "sha256_of_file (")),
    ("commit: parts, fsync, ledger", ("Committer._commit", "ingest/store/")),
    ("report: per-file outcome, metrics", ("Committer._report", "InFlight.resolved", "prometheus")),
    (
        "scan, settle, admit, claim",
        (
            "Watcher.",
            "Settler.",
            "Intake._admit",
            "Intake.run",
            "Intake._claim",
            "ingest/selection.py",
        ),
    ),
    (
        "dispatch: tasks, pickling, pipe",
        (
            "Dispatcher.",
            "ingest/aio/to_compute.py",
            "QueueFeeder",
            "ForkingPickler",
            "multiprocessing/",
        ),
    ),
    ("other ingest code", ("ingest/",)),
    ("asyncio loop: callbacks, futures, wake-ups", ("asyncio/",)),
)


@dataclass(frozen=True)
class Frame:
    function: str
    where: str  # the module's path as py-spy prints it, e.g. ingest/aio/read.py

    @property
    def ours(self) -> bool:
        return self.where.startswith("ingest/")

    def __str__(self) -> str:
        return f"{self.function} ({self.where})"


@dataclass(frozen=True)
class Stack:
    thread: str
    frames: tuple[Frame, ...]  # outermost first
    samples: int


def _frame(text: str) -> Frame:
    match = FRAME.match(text)
    if match is None:
        return Frame(text, "")
    return Frame(match["function"], match["where"])


def parse(lines: Iterator[str]) -> list[Stack]:
    """py-spy's raw (collapsed) output, one stack per line."""
    stacks = []
    for line in lines:
        match = LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        name, *frames = match["stack"].split(";")
        thread = NUMBERED.sub("_N", name)
        stacks.append(Stack(thread, tuple(_frame(f) for f in frames), int(match["count"])))
    return stacks


def _blame(stack: Stack) -> str:
    """The innermost ingest function, and the call under it that held the sample."""
    ours = [k for k, frame in enumerate(stack.frames) if frame.ours]
    if not ours:
        leaf = stack.frames[-1] if stack.frames else Frame("?", "")
        return f"(outside ingest) {leaf}"
    inner = ours[-1]
    own = stack.frames[inner]
    if inner == len(stack.frames) - 1:
        return f"{own} itself"
    return f"{own} -> {stack.frames[-1].function} ({stack.frames[-1].where})"


def stage(stack: Stack) -> str:
    # The command line's frames are under every sample of the loop: they name no stage.
    names = [stack.thread, *(str(f) for f in stack.frames if f.where != "ingest/cli.py")]
    for name, needles in STAGES:
        if any(needle in text for needle in needles for text in names):
            return name
    return "other"


def samples_table(
    title: str, counts: collections.Counter[str], rate: float, files: int, top: int
) -> None:
    """A markdown table of sample counts, as seconds, µs per file and shares, largest first."""
    total = sum(counts.values())
    print(f"\n{title}\n")
    print("| samples | s | µs per file | share | where |")
    print("|---|---|---|---|---|")
    for key, n in counts.most_common(top):
        seconds = n / rate
        print(f"| {n} | {seconds:.2f} | {seconds / files * 1e6:.0f} | {n / total:.1%} | {key} |")


def summarise(stacks: Sequence[Stack], rate: float, files: int, top: int) -> None:
    threads: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    blamed: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for stack in stacks:
        threads[stack.thread] += stack.samples
        stages[stage(stack)] += stack.samples
        blamed[_blame(stack)] += stack.samples
        for name in {str(f) for f in stack.frames if f.ours and f.where != "ingest/cli.py"}:
            inclusive[name] += stack.samples
    total = sum(threads.values())
    print(f"{total} samples at {rate:g} Hz = {total / rate:.2f} s, {files} files")
    samples_table("By thread", threads, rate, files, top)
    samples_table("By stage", stages, rate, files, top)
    samples_table("By innermost ingest function -> the call it was in", blamed, rate, files, top)
    samples_table("Inclusive, per ingest function", inclusive, rate, files, top)


def py_spy() -> str:
    """py-spy beside this interpreter, else on PATH; exits saying how to install it."""
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def record(
    data: corpus.Corpus, scratch: Path, rate: float, mode: list[str], on_success: str = "keep"
) -> Path:
    """Run `ingest once` over the corpus under py-spy; the raw samples' path."""
    ingest_job.reset(scratch)
    drop = ingest_job.drop_for(data.path, scratch, on_success)
    config = ingest_job.write_config(
        scratch / "config.toml", drop, scratch, {"watch": {"on_success": on_success}}
    )
    raw = scratch / "raw.txt"
    flags = ["--threads", "--format", "raw", "--rate", f"{rate:g}", "--output", str(raw)]
    command = [py_spy(), "record", *flags, *mode]
    subprocess.run(
        [*command, "--", *ingest_job.command("once", "--config", str(config))], check=True
    )
    return raw


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.main_profile", description=__doc__)
    parser.add_argument("--shape", type=corpus.parse_shapes, default=["tiny"])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--corpus-dir", type=Path, default=corpus.DEFAULT_ROOT)
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH)
    parser.add_argument("--rate", type=float, default=200.0, help="samples per second")
    parser.add_argument("--idle", action="store_true", help="count idle threads too")
    parser.add_argument("--gil", action="store_true", help="only the thread holding the GIL")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="summarise this py-spy raw file; run nothing")
    parser.add_argument("--on-success", choices=("keep", "archive", "delete"), default="keep",
                        help="archive and delete run over hard links to the corpus")
    args = parser.parse_args(argv)
    data = corpus.generate(args.shape[0], args.scale, args.seed, args.corpus_dir)
    byte_compile(Path(__file__).resolve().parent.parent / "ingest")
    mode = [flag for flag, on in (("--idle", args.idle), ("--gil", args.gil)) if on]
    raw = args.raw or record(data, args.scratch, args.rate, mode, args.on_success)
    with open(raw) as lines:
        summarise(parse(lines), args.rate, data.files, args.top)


if __name__ == "__main__":
    main()
