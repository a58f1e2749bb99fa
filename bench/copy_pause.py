"""How long copying a block into a shared segment holds the GIL: the longest pause a
thread ticking every 0.5 ms sees while another thread copies it, and the copy's CPU.

    python -m bench.copy_pause --mb 16 --repeat 3

Into a new segment, a kept one whose pages the service's mapping has touched, or a kept
one filled before through its file (its pages in memory, not yet in this process's
page tables); through the mapping in one assignment, through it a megabyte at a time
(`stream.COPY_PIECE_BYTES`, as `ingest.aio.stream` copies into a kept segment), or
written through the segment's file with `pwrite` (as it writes a new one). The ticking
thread stands for the event loop: it runs only when it gets the GIL. Medians of
`--repeat`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory

from ingest import shared
from ingest.aio.stream import COPY_PIECE_BYTES


def _pause(copy: Callable[[], None]) -> tuple[float, float]:
    """The longest gap between ticks while `copy` runs in another thread, and its CPU (ms)."""
    gaps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.0005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.01)
    cpu: list[float] = []

    def timed() -> None:
        started = time.thread_time()
        copy()
        cpu.append(time.thread_time() - started)

    worker = threading.Thread(target=timed)
    worker.start()
    worker.join()
    stop.set()
    ticker.join()
    return max(gaps) * 1000, cpu[0] * 1000


def _whole(data: bytes, segment: SharedMemory) -> Callable[[], None]:
    def copy() -> None:
        shared.view(segment)[:len(data)] = data
    return copy


def _pieces(data: bytes, segment: SharedMemory) -> Callable[[], None]:
    def copy() -> None:
        target, source = shared.view(segment), memoryview(data)
        for start in range(0, len(data), COPY_PIECE_BYTES):
            end = min(start + COPY_PIECE_BYTES, len(data))
            target[start:end] = source[start:end]
    return copy


def _pwrite(data: bytes, segment: SharedMemory) -> Callable[[], None]:
    def copy() -> None:
        fd, written = shared.descriptor(segment), 0
        while written < len(data):
            written += os.pwrite(fd, memoryview(data)[written:], written)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(args.mb << 20)
    print("| segment | copy | longest pause, ms | copy's CPU, ms |")
    print("|---|---|---:|---:|")
    for state in ("new", "kept, mapped", "kept, filled through its file"):
        for name, how in (("one assignment", _whole), ("a MB at a time", _pieces),
                          ("pwrite", _pwrite)):
            pauses, cpus = [], []
            for _ in range(args.repeat):
                segment = shared.create("copy-pause", len(data))
                if segment is None:
                    raise SystemExit("no shared memory here")
                try:
                    if state == "kept, mapped":
                        shared.view(segment)[:len(data)] = data
                    elif state != "new":
                        _pwrite(data, segment)()
                    pause, cpu = _pause(how(data, segment))
                finally:
                    shared.remove(segment)
                pauses.append(pause)
                cpus.append(cpu)
            print(f"| {state} | {name} | {statistics.median(pauses):.1f}"
                  f" | {statistics.median(cpus):.1f} |")


if __name__ == "__main__":
    main()
