"""Where a worker's time goes on a file read in blocks: `process_block` on `big`'s blocks.

    python -m bench.block_profile --blocks 4 --repeat 3

Cuts the first blocks of the cached `big` corpus (see bench.corpus) between
records, as the service's block reader does, `BLOCK_BYTES` each; reads block 0
for the file's schema, then runs `ingest.compute.stream.process_block` on the
later blocks in this process, staging their parts in a scratch folder, and
prints the CPU time per block and per MB (the median of `--repeat` passes, the
process's CPU, pyarrow's threads and numpy's included), then the functions that
took it (cProfile, by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from ingest import memory
from ingest.blocks import Block
from ingest.compute.stream import process_block
from ingest.compute.task import pyarrow_without_pandas, warm
from ingest.config import Features

from .corpus import DEFAULT_ROOT, DEFAULT_SEED, corpus_name
from .task_profile import worker_threads

BLOCK_BYTES = 16 << 20  # as ingest.aio.stream reads a file too big to hold


def _cut(path: Path, blocks: int) -> list[bytes]:
    with open(path, "rb") as fh:
        data = fh.read(BLOCK_BYTES * blocks)
    pieces, start = [], 0
    for _ in range(blocks):
        end = data.rfind(b"\n", start, start + BLOCK_BYTES) + 1
        pieces.append(data[start:end])
        start = end
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--blocks", type=int, default=4, help="block 0 and the ones timed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    paths = sorted((DEFAULT_ROOT / corpus_name("big", 1.0, args.seed)).glob("*.csv"))
    if not paths:
        raise SystemExit("no corpus: run python -m bench.corpus --shapes big")
    memory.reuse_large_buffers()  # as `init_worker` does in each worker of the pool
    worker_threads()
    pyarrow_without_pandas()
    warm()
    first, *later = _cut(paths[0], args.blocks)
    name, sha256 = paths[0].name, "0" * 64
    schema = process_block(Block(name, sha256, 0, first, 1, b"", Features())).schema
    with tempfile.TemporaryDirectory() as scratch:
        blocks = [
            Block(name, sha256, i, data, 1, schema, Features(), stage=f"{scratch}/{i}.parquet")
            for i, data in enumerate(later, start=1)
        ]
        passes = []
        for _ in range(args.repeat):
            began = time.process_time()
            for block in blocks:
                assert process_block(block).failure is None
            passes.append(time.process_time() - began)
        profile = cProfile.Profile()
        profile.enable()
        for block in blocks:
            process_block(block)
        profile.disable()
    cpu = statistics.median(passes)
    mb = sum(len(b) for b in later) / 1e6
    print(f"{len(blocks)} blocks of {mb / len(blocks):.1f} MB: {cpu / len(blocks) * 1000:.0f} ms"
          f" of CPU per block, {cpu / mb * 1000:.2f} ms per MB")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
