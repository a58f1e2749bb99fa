"""Where ingest's main process spends its time: `ingest once` over a corpus, under py-spy.

    python -m bench.main_profile --shape tiny            # on-CPU samples of every thread
    python -m bench.main_profile --shape tiny --idle     # idle threads too (wall time)

Called in the parent process. Runs `py-spy record --threads --format raw`
(py-spy is not a dependency: `pip install py-spy` in the venv) on the main
process only, not the workers, then sums the samples three ways, each as
seconds and as microseconds per input file:

- by thread: the event loop (MainThread) and the threads it hands work to;
- by the innermost ingest function on the stack, with the library call
  under it (what ingest asked for, and what did the work);
- inclusive, per ingest function (the command line's aside): every ingest
  function on a stack is charged for the sample once.

Without `--idle`, py-spy keeps only threads that were running, so the total
approaches the main process's CPU time; with it, a waiting thread counts too.
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

DEFAULT_SCRATCH = Path(__file__).resolve().parent / ".scratch" / "main_profile"
# `thread (123): MainThread;frame;frame 42`: the thread, its name, the stack, the count.
LINE = re.compile(r"^thread \((?P<tid>\w+)\): (?P<stack>.*) (?P<count>\d+)$")
FRAME = re.compile(r"^(?P<function>.*) \((?P<where>[^()]*):\d+\)$")
# Default-executor threads (aiofiles, asyncio.to_thread) are asyncio_0, asyncio_1, ...
NUMBERED = re.compile(r"_\d+$")


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


def _table(title: str, counts: collections.Counter[str], rate: float, files: int, top: int) -> None:
    total = sum(counts.values())
    print(f"\n{title}\n")
    print("| samples | s | µs per file | share | where |")
    print("|---|---|---|---|---|")
    for key, n in counts.most_common(top):
        seconds = n / rate
        print(f"| {n} | {seconds:.2f} | {seconds / files * 1e6:.0f} | {n / total:.1%} | {key} |")


def summarise(stacks: Sequence[Stack], rate: float, files: int, top: int) -> None:
    threads: collections.Counter[str] = collections.Counter()
    blamed: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for stack in stacks:
        threads[stack.thread] += stack.samples
        blamed[_blame(stack)] += stack.samples
        # The command line's frames sit under every sample of the loop: they would say nothing.
        for name in {str(f) for f in stack.frames if f.ours and f.where != "ingest/cli.py"}:
            inclusive[name] += stack.samples
    total = sum(threads.values())
    print(f"{total} samples at {rate:g} Hz = {total / rate:.2f} s, {files} files")
    _table("By thread", threads, rate, files, top)
    _table("By innermost ingest function -> the call it was in", blamed, rate, files, top)
    _table("Inclusive, per ingest function", inclusive, rate, files, top)


def record(data: corpus.Corpus, scratch: Path, rate: float, idle: bool) -> Path:
    """Run `ingest once` over the corpus under py-spy; the raw samples' path."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    ingest_job.reset(scratch)
    config = ingest_job.write_config(scratch / "config.toml", data.path, scratch)
    raw = scratch / "raw.txt"
    flags = ["--threads", "--format", "raw", "--rate", f"{rate:g}", "--output", str(raw)]
    command = [py_spy, "record", *flags, *(["--idle"] if idle else [])]
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
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="summarise this py-spy raw file; run nothing")
    args = parser.parse_args(argv)
    data = corpus.generate(args.shape[0], args.scale, args.seed, args.corpus_dir)
    raw = args.raw or record(data, args.scratch, args.rate, args.idle)
    with open(raw) as lines:
        summarise(parse(lines), args.rate, data.files, args.top)


if __name__ == "__main__":
    main()
