"""A day's trickle through `ingest run`'s compaction rule, by file sizes alone:

    python -m bench.compaction_model --part-kb 170 --gb 14
    python -m bench.compaction_model --part-kb 170 --gb 14 --every-small
    python -m bench.compaction_model --part-kb 170 --gb 2 --spread 0.1 --first-kb 1.5

Real part files and merges take seconds a megabyte (`bench.compaction --trickle`
measures them); this runs the rule instead, on sizes: parts of `--part-kb` (each
drawn between `--spread` and 2 - `--spread` times that; after one of `--first-kb`, if
given: a few rows' file among bigger ones) are committed one at a time to
today's partition until `--gb` have come, and after each, while the partition is
due (`autocompact`: more files than its bytes need, plus OPEN_SLACK), the files
`compact.smallest` picks are merged, in bins of `target_file_mb` (`compact.bins_of`),
a merged file's size taken as the sum of its parts'. `--every-small` merges every
file under half the target instead, the rule before. Prints the bytes the merges
wrote over the bytes committed, and the most files under half the target the
partition held after a commit's merges.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from ingest.store.autocompact import OPEN_SLACK
from ingest.store.compact import BIG_ENOUGH, bins_of, smallest


def run(
    part_bytes: float, total_bytes: float, target: int, every_small: bool,
    spread: float = 0.5, first_bytes: float = 0,
) -> str:
    rng = random.Random(1)
    sizes: dict[Path, int] = {}
    committed = written = most = made = 0
    while committed < total_bytes:
        made += 1
        part = Path(f"part-{made}")
        drawn = part_bytes * rng.uniform(spread, 2 - spread)
        sizes[part] = int(first_bytes if made == 1 and first_bytes else drawn)
        committed += sizes[part]
        while len(sizes) - max(1, -(-sum(sizes.values()) // target)) > OPEN_SLACK:
            small = [p for p in sizes if sizes[p] < target * BIG_ENOUGH]
            taken = small if every_small else smallest(small, sizes)
            bins = [b for b in bins_of(taken, sizes, target) if len(b) > 1]
            if not bins:
                break
            for merged in bins:
                made += 1
                size = sum(sizes.pop(p) for p in merged)
                sizes[Path(f"part-{made}")] = size
                written += size
        most = max(most, sum(1 for p in sizes if sizes[p] < target * BIG_ENOUGH))
    return (
        f"{committed / 1e9:.1f} GB in parts of about {part_bytes / 1e3:g} KB: compaction wrote"
        f" {written / committed:.1f} times the bytes committed; at most {most} files under"
        f" half the target; {len(sizes)} files at the end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part-kb", type=float, default=170)
    parser.add_argument("--gb", type=float, default=14)
    parser.add_argument("--target-mb", type=int, default=128)
    parser.add_argument("--every-small", action="store_true")
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--first-kb", type=float, default=0)
    args = parser.parse_args()
    print(run(args.part_kb * 1e3, args.gb * 1e9, args.target_mb << 20, args.every_small,
              args.spread, args.first_kb * 1e3))


if __name__ == "__main__":
    main()
