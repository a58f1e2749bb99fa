"""A quoted field that never closes, in a file read in blocks: the main process's CPU,
the run's wall time and the event loop's lag, for two checkouts of ingest, interleaved.

    python -m bench.open_quote --mb 16 --pairs 3 --old /tmp/old --new .

Writes one CSV of about `--mb` MB whose second line opens a quote that no later line
closes, and runs `python -m ingest once` over it with `memory_mb = 1` (blocks of 64 KB)
and each checkout first on PYTHONPATH (as `bench.main_ab` does). No block can end
before the file does, so the block reader carries the whole file over from block to
block; the file is then quarantined as a DecodeError. Per run: wall time, the main
process's CPU (read from /proc before it is reaped) and the loop lag p99 its exit line
reports; then medians per checkout. Called in the parent process.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import ingest_job, main_ab
from .compiled import byte_compile

SCRATCH = Path(__file__).resolve().parent / ".scratch" / "open_quote"
LAG = re.compile(r"loop lag p99 ([0-9.]+) ms")


@dataclass(frozen=True)
class Run:
    wall_s: float
    main_cpu_s: float
    lag_p99_ms: float


def _write(path: Path, mb: float) -> None:
    """The header, a line that opens a quote, then lines of two numbers up to `mb` MB."""
    with open(path, "wb") as out:
        out.write(b'timestamp,x\n1,"never closed\n')
        start = 0
        while out.tell() < mb * 1e6:
            out.write(b"".join(b"%d,%d.5\n" % (i, i) for i in range(start, start + 100_000)))
            start += 100_000


def _once(checkout: Path, drop: Path, state: Path) -> Run:
    shutil.rmtree(state, ignore_errors=True)
    config = ingest_job.write_config(
        state / "config.toml", drop, state,
        {"pipeline": {"memory_mb": 1}, "watch": {"settle_ms": 0, "on_success": "keep"}},
    )
    returncode, run = main_ab.once(checkout, config, state)
    text = (state / "log.txt").read_text()
    lag = LAG.search(text)
    if returncode != 3 or lag is None or "DecodeError" not in text:
        raise SystemExit(f"expected the file quarantined (exit 3): see {state / 'log.txt'}")
    return Run(run.wall_s, run.user_s + run.system_s, float(lag.group(1)))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.open_quote", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=16.0)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--old", type=Path, required=True)
    p.add_argument("--new", type=Path, required=True)
    args = p.parse_args(argv)
    drop = SCRATCH / "drop"
    shutil.rmtree(drop, ignore_errors=True)
    drop.mkdir(parents=True)
    _write(drop / "open.csv", args.mb)
    print(f"open.csv: {(drop / 'open.csv').stat().st_size / 1e6:.1f} MB")
    byte_compile(args.old / "ingest", args.new / "ingest")
    runs: dict[str, list[Run]] = {"old": [], "new": []}
    for pair in range(args.pairs):
        for who in ("old", "new") if pair % 2 == 0 else ("new", "old"):
            run = _once(getattr(args, who), drop, SCRATCH / who)
            runs[who].append(run)
            print(f"{who}: wall {run.wall_s:.2f} s, main CPU {run.main_cpu_s:.2f} s,"
                  f" loop lag p99 {run.lag_p99_ms:.1f} ms", flush=True)
    for who, done in runs.items():
        print(
            f"{who} median: wall {statistics.median(r.wall_s for r in done):.2f} s,"
            f" main CPU {statistics.median(r.main_cpu_s for r in done):.2f} s,"
            f" loop lag p99 {statistics.median(r.lag_p99_ms for r in done):.1f} ms"
        )


if __name__ == "__main__":
    main()
