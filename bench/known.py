"""What the main process holds of past inputs, and what asking the ledger costs.

    python -m bench.known --files 1000000

Builds a ledger of `--files` synthetic ingested inputs (paths of about 50 characters),
then, each in a fresh process: the RSS and CPU of loading what the service keeps in
memory (`Ledger.known`) with the default bound and with a bound above the ledger's
size (everything held, as before the bound); and the CPU per file of the lookups a
service past its bound makes instead (`Ledger.states` for a settled batch of new
files, `Ledger.originals` for a task's sha256s), in batches as the service asks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ingest.store.known import KNOWN_FILES
from ingest.store.ledger import Ledger

SCRATCH = Path("bench/.scratch/known")


def build(path: Path, files: int) -> None:
    if path.exists():
        path.unlink()
    Ledger(path).close()  # the schema, as the service makes it
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO files (path, size, mtime_ns, sha256, state, rows, done_at)"
            " VALUES (?, ?, ?, ?, 'ingested', 10, 0)",
            (
                (f"sensors/site-{i % 97:02}/2026-12-03/device-{i:09}.csv", 1000 + i % 7,
                 1_764_000_000_000_000_000 + i, hashlib.sha256(str(i).encode()).hexdigest())
                for i in range(files)
            ),
        )


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_load(path: Path, capacity: int) -> dict[str, float]:
    ledger = Ledger(path)
    before, cpu = _rss_kb(), _cpu()
    known = ledger.known(capacity)
    took = _cpu() - cpu
    grown = _rss_kb() - before
    return {"capacity": capacity, "held": len(known.keys), "whole": known.whole,
            "rss_mb": grown / 1024, "cpu_s": took}


def measure_lookups(path: Path, files: int, batch: int) -> dict[str, float]:
    ledger = Ledger(path, read_only=True)
    new = [(f"incoming/device-{i:09}.csv", 1000, 1) for i in range(20 * batch)]
    old = [(f"sensors/site-{i % 97:02}/2026-12-03/device-{i:09}.csv", 1000 + i % 7,
            1_764_000_000_000_000_000 + i) for i in range(0, files, files // (20 * batch))]
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(0, files, 997)]
    out: dict[str, float] = {}
    for name, query, items in (("states_new", ledger.states, new),
                               ("states_known", ledger.states, old),
                               ("originals", ledger.originals, digests[:20 * batch])):
        cpu = _cpu()
        for start in range(0, len(items), batch):
            query(items[start:start + batch])  # type: ignore[operator]
        out[f"{name}_us"] = (_cpu() - cpu) / len(items) * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = SCRATCH / f"ledger-{args.files}.sqlite"
    if args.child:
        what, value = args.child
        result = (measure_load(path, int(value)) if what == "load"
                  else measure_lookups(path, args.files, int(value)))
        print(json.dumps(result))
        return
    SCRATCH.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        started = time.monotonic()
        build(path, args.files)
        print(f"built a ledger of {args.files:,} inputs in {time.monotonic() - started:.1f} s")
    # Held whole first (which drops the sha256 index), then past the bound (which makes
    # it, as a service does once its memory no longer holds every input).
    runs = [("load", str(args.files + 1)), ("load", str(KNOWN_FILES)),
            ("load", str(KNOWN_FILES)), ("lookups", str(args.batch))]
    for what, value in runs:
        child = subprocess.run(
            [sys.executable, "-m", "bench.known", "--files", str(args.files),
             "--child", what, value],
            capture_output=True, text=True, check=True,
        )
        print(what, child.stdout.strip())


if __name__ == "__main__":
    main()
