"""What reading JSON Lines dates as dates costs a worker, per file.

    python -m bench.json_dates --rows 2000 --repeat 7

Decodes two generated JSON Lines files as a worker does (`decode`): one with a column
of dates alone (`"2024-01-05"`) beside a device name, two floats and an integer, and
the same with a column of timestamps beside them. Prints the CPU of one decode, the
median of `--repeat` passes of 100. Another checkout's, from a folder outside this one:
`cd /tmp && PYTHONPATH=<checkout>:<this repo> python -m bench.json_dates`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from ingest.compute.decode import decode


def corpus(rows: int, timestamps: bool) -> bytes:
    rng = random.Random(1)
    lines = []
    for i in range(rows):
        row: dict[str, object] = {
            "day": f"2024-01-{1 + i % 28:02d}", "device": f"dev-{i % 50}",
            "a": rng.random(), "b": rng.random(), "c": i,
        }
        if timestamps:
            row["at"] = f"2024-01-01T{i % 24:02d}:{i % 60:02d}:00Z"
        lines.append(json.dumps(row))
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for timestamps in (False, True):
        data = corpus(args.rows, timestamps)
        for _ in range(30):
            decode("a.jsonl", data)
        passes = []
        for _ in range(args.repeat):
            start = time.process_time()
            for _ in range(100):
                decode("a.jsonl", data)
            passes.append((time.process_time() - start) / 100 * 1000)
        kind = decode("a.jsonl", data).schema.field("day").type
        what = "dates and timestamps" if timestamps else "dates"
        print(f"{what}, {len(data) / 1e3:.0f} KB: {statistics.median(passes):.2f} ms a file"
              f" (the dates read as {kind})")


if __name__ == "__main__":
    main()
