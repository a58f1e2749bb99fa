"""The main process's CPU, user and system apart, of two checkouts of ingest, interleaved.

    python -m bench.main_ab --shape tiny --pairs 3 --old /tmp/old --new .

Each checkout is a folder holding the `ingest` package (`git archive <rev> ingest | tar -x
-C /tmp/old` makes one), put first on PYTHONPATH for `python -m ingest once` over the
cached corpus of `--shape`. Runs alternate old/new, the order swapped each pair, each
in a fresh output folder. Per run: wall time and the main process's own CPU as user
and system time (the whole tree's is `bench.run`'s to measure), read from
`/proc/<pid>/stat` once it has exited and before it is reaped (as `bench.measure`
does), and the loop lag p99 its exit line reports; then medians per checkout, with the
main process's CPU per file and per MB.
On a shared machine these CPU figures, not the wall times, are the ones to compare.
Called in the parent process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import corpus, ingest_job
from .compiled import byte_compile

SCRATCH = Path(__file__).resolve().parent / ".scratch" / "main_ab"
CLOCK = os.sysconf("SC_CLK_TCK")
LAG = re.compile(r"loop lag p99 ([0-9.]+) ms")


@dataclass(frozen=True)
class Run:
    wall_s: float
    user_s: float
    system_s: float
    lag_p99_ms: float = float("nan")  # the event loop's, as the exit line reports it


def _once(checkout: Path, drop: Path, state: Path, extra: dict[str, dict[str, str]]) -> Run:
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    drop = ingest_job.drop_for(drop, state, extra["watch"]["on_success"])
    config = ingest_job.write_config(state / "config.toml", drop, state, extra)
    returncode, run = once(checkout, config, state)
    if returncode != 0:
        raise SystemExit(f"ingest exited {returncode}: see {state / 'log.txt'}")
    return run


def once(checkout: Path, config: Path, state: Path) -> tuple[int, Run]:
    """`ingest once` of `checkout`, logging to `state`/log.txt: its exit code, its wall time
    and its main process's CPU, read before it is reaped."""
    env = dict(os.environ, PYTHONPATH=str(checkout.resolve()))
    started = time.perf_counter()
    with open(state / "log.txt", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest", "once", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=state,
        )
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        wall = time.perf_counter() - started
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        process.wait()
    lag = LAG.search((state / "log.txt").read_text(errors="replace"))
    return process.returncode, Run(
        wall, int(fields[11]) / CLOCK, int(fields[12]) / CLOCK,
        float(lag.group(1)) if lag else float("nan"),
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.main_ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="tiny")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--old", type=Path, required=True)
    p.add_argument("--new", type=Path, required=True)
    # auto: each side's own default (a release before `auto` sends bytes).
    p.add_argument("--send", choices=("auto", "bytes", "paths"), default="auto")
    p.add_argument("--on-success", choices=("keep", "archive", "delete"), default="keep",
                   help="archive and delete run over hard links to the corpus")
    p.add_argument("--corpus-dir", type=Path, default=corpus.DEFAULT_ROOT)
    args = p.parse_args(argv)
    data = corpus.generate(args.shape, args.scale, root=args.corpus_dir)
    byte_compile(args.old / "ingest", args.new / "ingest")
    extra: dict[str, dict[str, object]] = {"watch": {"on_success": args.on_success}}
    if args.send != "auto":
        extra["pipeline"] = {"send": args.send}
    runs: dict[str, list[Run]] = {"old": [], "new": []}
    for pair in range(args.pairs):
        for who in ("old", "new") if pair % 2 == 0 else ("new", "old"):
            run = _once(getattr(args, who), data.path, SCRATCH / who, extra)
            runs[who].append(run)
            print(f"{who}: wall {run.wall_s:.2f} s, main user {run.user_s:.2f} s,"
                  f" system {run.system_s:.2f} s, loop lag p99 {run.lag_p99_ms:.1f} ms",
                  flush=True)
    mb = data.bytes / 1e6
    for who, done in runs.items():
        main_cpu = statistics.median(r.user_s + r.system_s for r in done)
        print(
            f"{who} median: main {main_cpu:.2f} s"
            f" (user {statistics.median(r.user_s for r in done):.2f},"
            f" system {statistics.median(r.system_s for r in done):.2f}),"
            f" {main_cpu / data.files * 1e6:.0f} µs per file, {main_cpu / mb * 1e3:.2f} ms per MB;"
            f" wall {statistics.median(r.wall_s for r in done):.2f} s;"
            f" loop lag p99 {statistics.median(r.lag_p99_ms for r in done):.1f} ms"
        )


if __name__ == "__main__":
    main()
