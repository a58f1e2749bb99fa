"""What the ledger's commits cost per input, in CPU and on disk.

    python -m bench.ledger_rows --files 20000 --per-commit 64 --repeat 3

Commits `--files` synthetic inputs as the service's committer does, `--per-commit` a
commit: each a part of a records file and a features file (`Ledger.begin_part`, the
inputs' rows with `Ledger.finish_part`, both files holding every input), into a fresh
ledger in a fresh process. Reports the CPU per input of those calls (every thread of
the process: SQLite's work is in the calling thread), and the ledger's bytes per input
once its WAL is checkpointed into it. Medians of `--repeat` ledgers.

Another checkout's ledger, from a folder outside this one (the current folder comes
first on `sys.path`): `cd /tmp && PYTHONPATH=<checkout>:<this repo> python -m
bench.ledger_rows`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

SCRATCH = Path("bench/.scratch/ledger_rows")
DAY = "ingest_date=2026-12-05"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one(path: Path, files: int, per_commit: int) -> dict[str, float]:
    """In this process: commit `files` inputs into a new ledger at `path`."""
    from ingest.store.ledger import FileRecord, Ledger

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    ledger = Ledger(path)
    records = [
        FileRecord(
            f"sensors/site-{i % 97:02}/device-{i:09}.csv", 1000 + i % 7,
            1_764_000_000_000_000_000 + i, hashlib.sha256(str(i).encode()).hexdigest(),
            "ingested", rows=10, part=f"c{i // per_commit:08}", done_at=1.0,
        )
        for i in range(files)
    ]
    start = _cpu()
    for first in range(0, files, per_commit):
        part = f"c{first // per_commit:08}"
        paths = [f"{table}/{DAY}/part-{part}-0.parquet" for table in ("records", "features")]
        ledger.begin_part(part, paths, [1 << 20, 1 << 14])
        ledger.finish_part(part, records[first:first + per_commit])
    cpu = _cpu() - start
    ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()
    return {"cpu_us": cpu / files * 1e6, "bytes": path.stat().st_size / files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--per-commit", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.files, args.per_commit)))
        return
    SCRATCH.mkdir(parents=True, exist_ok=True)
    runs = []
    for n in range(args.repeat):
        out = subprocess.run(
            [sys.executable, "-m", "bench.ledger_rows", "--files", str(args.files),
             "--per-commit", str(args.per_commit), "--one", str(SCRATCH / f"ledger-{n}.sqlite")],
            check=True, capture_output=True, text=True,
        )
        runs.append(json.loads(out.stdout))
    cpu = statistics.median(r["cpu_us"] for r in runs)
    size = statistics.median(r["bytes"] for r in runs)
    print(f"{args.files} inputs, {args.per_commit} a commit, median of {args.repeat}:"
          f" {cpu:.1f} µs of CPU an input; the ledger {size:.0f} bytes an input")


if __name__ == "__main__":
    main()
