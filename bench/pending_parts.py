"""What asking the ledger for its pending parts costs after a month of a commit a second.

    python -m bench.pending_parts --parts 2600000

Every start asks, and with Delta every commit (`delta_step.DeltaStep.plan`). Builds a
ledger of `--parts` committed parts (two part files each, as a commit to `records` and
`features` makes them), drops the `parts_pending` index as a ledger of an earlier
release lacks it, and times the question, best of five; then opens the ledger as the
service does (which makes the index), and times it again.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

from ingest.store.ledger import Ledger

SCRATCH = Path("bench/.scratch/pending_parts")


def build(path: Path, parts: int) -> None:
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    Ledger(path).close()  # the schema, as the service makes it
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX parts_pending")
        db.executemany(
            "INSERT INTO parts (id, state, paths, created) VALUES (?, 'committed', ?, 0)",
            (
                (f"{i:016x}", json.dumps([f"{table}/ingest_date=2026-12-03/part-{i:016x}-0.parquet"
                                          for table in ("records", "features")]))
                for i in range(parts)
            ),
        )


def best_ms(ledger: Ledger, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        ledger.pending_parts()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=2_600_000)
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = SCRATCH / "ledger.sqlite"
    build(path, args.parts)
    # Read-only: the service's open would make the index.
    before = Ledger(path, read_only=True)
    print(f"parts                 {args.parts} committed")
    print(f"without the index     {best_ms(before):.2f} ms")
    before.close()
    started = time.perf_counter()
    Ledger(path).close()
    print(f"open, making it       {time.perf_counter() - started:.2f} s (once)")
    after = Ledger(path)
    print(f"with the index        {best_ms(after):.3f} ms")
    after.close()
    for made in path.parent.glob(path.name + "*"):
        made.unlink()


if __name__ == "__main__":
    main()
