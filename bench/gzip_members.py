"""Measuring a gzip file of many tiny members, as the service does before it reads one:
CPU seconds of `ingest.inflate.plain_size`, against the file's size.

    python -m bench.gzip_members --mb 0.5,2 --repeat 3

A writer that opens its file in append mode for every record (`gzip.open(path, "ab")`)
makes a member of each. Each file here is `gzip.compress(b"1,2\\n")` (24 bytes) repeated
to about `--mb` MB; then, for scale, one member of 64 MB of CSV text. The time should
grow with the size, not faster: compare the two member files' seconds per MB. For an
older package, run it outside the checkout with that package first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

from ingest.inflate import plain_size


def _best(path: Path, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        plain_size(path, 1 << 40)
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", default="0.5,2")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    member = gzip.compress(b"1,2\n")
    with tempfile.TemporaryDirectory() as scratch:
        for mb in (float(m) for m in args.mb.split(",")):
            path = Path(scratch) / "members.csv.gz"
            path.write_bytes(member * int(mb * 1e6 / len(member)))
            took = _best(path, args.repeat)
            print(f"{mb:g} MB of {len(member)}-byte members: {took:.2f} s, {took / mb:.2f} s a MB")
        text = b"".join(b"%d,%d.5,abc\n" % (i, i) for i in range(3_000_000))
        path = Path(scratch) / "one.csv.gz"
        path.write_bytes(gzip.compress(text, 6))
        took = _best(path, args.repeat)
        print(f"one member, {path.stat().st_size / 1e6:.1f} MB of gzip, {len(text) / 1e6:.0f} MB"
              f" of text: {took:.3f} s")


if __name__ == "__main__":
    main()
