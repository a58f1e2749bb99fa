"""The least CPU the main process spends on each file, with no pipeline around it.

    python -m bench.floor --shape tiny

What the service's process must do for every input whatever its event loop, queues
and tasks cost, each step run alone over a copy of a cached corpus, with the
service's own functions: the scan's listing and stat, the read (open, read to the
end, close), the commit's check that the file is as it was read, the ledger's row,
the per-file log line (formatted and written by the log thread, to /dev/null), and
the move into the archive. The workers' share (parse, features, Parquet) and
everything between the steps are left out, so the sum is a floor under the
`tiny` figure that `bench.main_ab` measures, not an estimate of it.

CPU is `getrusage(RUSAGE_SELF)`, every thread of this process, user and system
apart. Called in the parent process.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ingest import logs
from ingest.aio.read import _read_all
from ingest.config import Config
from ingest.files import DropFile
from ingest.selection import scan
from ingest.store.dispose import after_success
from ingest.store.layout import Layout
from ingest.store.ledger import Ledger
from ingest.store.parts import Accepted, unchanged

from . import corpus as corpora

SCRATCH = Path(__file__).resolve().parent / ".scratch"
# Files per ledger transaction and per log record: about what a commit of `tiny` holds.
BATCH = 1000


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _timed(name: str, files: int, step: Callable[[], object]) -> tuple[str, float, float]:
    user, system = _cpu()
    step()
    after = _cpu()
    return name, (after[0] - user) / files * 1e6, (after[1] - system) / files * 1e6


def _batches(items: list[DropFile]) -> list[list[DropFile]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def measure(corpus: Path, scratch: Path) -> list[tuple[str, float, float]]:
    drop = scratch / "drop"
    shutil.copytree(corpus, drop)
    layout = Layout(drop, scratch / "output", scratch / "quarantine", scratch / "archive")
    layout.state.mkdir(parents=True)
    patterns = Config().watch.patterns

    found: list[tuple[Path, os.stat_result]] = []
    rows = [_timed("scan: list, stat", 1, lambda: found.extend(scan(drop, patterns)))]
    count = len(found)
    rows[0] = (rows[0][0], rows[0][1] / count, rows[0][2] / count)
    now, mono = time.time(), time.monotonic()
    files = [
        DropFile(path, layout.relative(path), st.st_size, st.st_mtime_ns, now, mono)
        for path, st in found
    ]
    groups = _batches(files)

    def read() -> None:
        for group in groups:
            _read_all([f.path for f in group], [f.size for f in group])

    def check() -> None:
        for file in files:
            unchanged(file)

    ledger = Ledger(layout.ledger)
    digest = "0" * 64

    def record() -> None:
        for group in groups:
            ledger.finish_part(None, [Accepted(f, digest, 10).record(None) for f in group])

    with open(os.devnull, "w") as devnull:
        logging.getLogger().handlers.clear()
        stderr = os.dup(2)
        os.dup2(devnull.fileno(), 2)
        try:
            listener = logs.configure()

            def log_lines() -> None:
                for group in groups:
                    logs.outcomes("ingested", [(f.rel, {"rows": 10}) for f in group])
                listener.stop()  # the log thread has written every line

            rows += [
                _timed("read: open, read, close", count, read),
                _timed("commit: unchanged check", count, check),
                _timed("ledger: a row per file", count, record),
                _timed("log: a line per file", count, log_lines),
            ]
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)
    ledger.close()

    def archive() -> None:
        for group in groups:
            made: set[str] = set()  # as a commit's flush shares them
            for file in group:
                after_success(layout, file, digest, "archive", made)

    rows.append(_timed("archive: move each input", count, archive))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="tiny", choices=sorted(corpora.SHAPES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    corpus = corpora.generate(args.shape).path
    runs = []
    SCRATCH.mkdir(parents=True, exist_ok=True)
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=SCRATCH) as scratch:
            runs.append(measure(corpus, Path(scratch)))
    print(f"{args.shape}: the main process's least CPU per file, median of {args.repeat}\n")
    print("| step | user µs | system µs | total µs |")
    print("|---|---|---|---|")
    total = [0.0, 0.0]
    for index, (name, _, _) in enumerate(runs[0]):
        user = sorted(run[index][1] for run in runs)[len(runs) // 2]
        system = sorted(run[index][2] for run in runs)[len(runs) // 2]
        total[0] += user
        total[1] += system
        print(f"| {name} | {user:.1f} | {system:.1f} | {user + system:.1f} |")
    print(f"| **sum** | {total[0]:.1f} | {total[1]:.1f} | **{sum(total):.1f}** |")


if __name__ == "__main__":
    main()
