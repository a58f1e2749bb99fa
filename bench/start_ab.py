"""What one `ingest once` of one small file costs, start-up and all, for two checkouts of
ingest, interleaved.

    python -m bench.start_ab --pairs 15 --old /tmp/old --new .

What a scheduled run over a folder that holds a file or two pays each time, and every test
that starts the service: the main process, the forkserver and the pool's workers, their
imports and warm-ups, for one file of three lines. Each checkout is a folder holding the
`ingest` package (`git archive <rev> ingest | tar -x -C /tmp/old`), put first on
PYTHONPATH. Runs alternate old/new, the order swapped each pair, each in a fresh output
folder. Per checkout: the medians of wall time, of the whole tree's CPU and of the main
process's (`bench.measure`), and their spread. Called in the parent process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from . import ingest_job
from .compiled import byte_compile
from .measure import Sample, measure

SCRATCH = Path(__file__).resolve().parent / ".scratch" / "start_ab"
ONE_FILE = b"timestamp,v\n1,1.5\n2,2.5\n"


def _once(checkout: Path, state: Path) -> Sample:
    shutil.rmtree(state, ignore_errors=True)
    drop = state / "drop"
    drop.mkdir(parents=True)
    (drop / "one.csv").write_bytes(ONE_FILE)
    config = ingest_job.write_config(state / "config.toml", drop, state, {})
    sample = measure(
        [sys.executable, "-m", "ingest", "once", "--config", str(config)], state / "log.txt",
        cwd=state, env=dict(os.environ, PYTHONPATH=str(checkout.resolve())), timeout_s=120,
    )
    if sample.returncode != 0:
        raise SystemExit(f"ingest exited {sample.returncode}: see {state / 'log.txt'}")
    return sample


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.start_ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=15)
    p.add_argument("--old", type=Path, required=True)
    p.add_argument("--new", type=Path, required=True)
    args = p.parse_args(argv)
    byte_compile(args.old / "ingest", args.new / "ingest")
    runs: dict[str, list[Sample]] = {"old": [], "new": []}
    for pair in range(args.pairs):
        for who in ("old", "new") if pair % 2 == 0 else ("new", "old"):
            run = _once(getattr(args, who), SCRATCH / who)
            runs[who].append(run)
            print(f"{who}: wall {run.wall_s:.3f} s, tree CPU {run.cpu_s:.3f} s,"
                  f" main {run.main_cpu_s:.3f} s", flush=True)
    for who, done in runs.items():
        print(f"{who} median of {len(done)}: " + ", ".join(
            f"{name} {statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"
            for name, values in (
                ("wall", [r.wall_s for r in done]),
                ("tree CPU", [r.cpu_s for r in done]),
                ("main CPU", [r.main_cpu_s for r in done]),
            )
        ))


if __name__ == "__main__":
    main()
