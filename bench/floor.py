"""The least CPU the main process spends on each file and each MB, with no pipeline around it.

    python -m bench.floor --shape tiny
    python -m bench.floor --shape large

What the service's process must do for every input whatever its event loop, queues
and tasks cost, each step run alone over a copy of a cached corpus, with the
service's own functions: the scan's listing and stat, the read (open, read to the
end, close), the commit's check that the file is as it was read, the ledger's row,
the per-file log line (formatted and written by the log thread, to /dev/null), and
the move into the archive. The workers' share (parse, features, Parquet) and
everything between the steps are left out, so the sum is a floor under the
`tiny` figure that `bench.main_ab` measures, not an estimate of it.

Per MB, the copy that hands a file's bytes to a local worker: the files, once read
untimed so that the page cache holds them, read into shared segments as the intake
reads them (one a file of a MB or more, else groups
of up to 64 files and 16 MB), first into new segments (with sendfile, as for a
segment made for them), then twice again into those segments (through their
mapping, as for a segment kept for reuse: the first time its pages are mapped into
this process, then they are mapped already), then the segments removed. Each row
is one way a MB is handed over, not a step of one: they are not summed. And once per
run, whatever the corpus: `ingest once` over an empty drop folder (start-up, the
workers' start, exit), the main process's CPU read as `bench.main_ab` reads it.

CPU is `getrusage(RUSAGE_SELF)`, every thread of this process, user and system
apart. Called in the parent process.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

from ingest import logs, shared
from ingest.aio.intake import GROUP_BYTES, GROUP_FILES
from ingest.aio.read import _read_all, _read_all_into, _send_all
from ingest.config import Config
from ingest.files import DropFile
from ingest.selection import scan
from ingest.store.dispose import after_success
from ingest.store.layout import Layout
from ingest.store.ledger import Ledger
from ingest.store.parts import Accepted, unchanged

from . import corpus as corpora
from . import ingest_job, main_ab

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


def _segment_groups(files: list[DropFile]) -> list[list[DropFile]]:
    """The files as the intake puts them in segments: alone from a MB, else grouped."""
    groups: list[list[DropFile]] = []
    group: list[DropFile] = []
    for file in files:
        if file.size >= shared.SHARED_MIN_BYTES:
            groups.append([file])
            continue
        group.append(file)
        if len(group) >= GROUP_FILES or sum(f.size for f in group) >= GROUP_BYTES:
            groups.append(group)
            group = []
    return groups + ([group] if group else [])


def per_mb(files: list[DropFile], prefix: str) -> list[tuple[str, float, float]]:
    """The copy into shared segments, new then kept, and their removal: CPU per MB."""
    groups = _segment_groups(files)
    mb = sum(f.size for f in files) / 1e6
    segments: list[SharedMemory] = []

    def new() -> None:
        for group in groups:
            sizes = [f.size for f in group]
            segment = shared.create(prefix, sum(sizes))
            assert segment is not None, "/dev/shm is full"
            segments.append(segment)
            _send_all([f.path for f in group], os.dup(shared.descriptor(segment)), sizes)

    def kept() -> None:
        for group, segment in zip(groups, segments, strict=True):
            _read_all_into([f.path for f in group], shared.view(segment), [f.size for f in group])

    def remove() -> None:
        while segments:
            shared.remove(segments.pop())

    for group in groups:  # in the page cache, as a file just written is: no disk time
        _read_all([f.path for f in group], [f.size for f in group])
    try:
        rows = [
            _timed("copy into new segments (sendfile)", 1, new),
            _timed("again, kept: the first reuse maps their pages", 1, kept),
            _timed("again, kept: pages mapped", 1, kept),
            _timed("remove the segments", 1, remove),
        ]
    finally:
        remove()  # those left by a step that failed: /dev/shm outlives this process
    # _timed's figures are µs per its count (1): µs over MB, then ms.
    return [(name, user / mb / 1e3, system / mb / 1e3) for name, user, system in rows]


def start_up(scratch: Path) -> tuple[float, float]:
    """`ingest once` over an empty drop folder: its main process's CPU, user and system."""
    state = scratch / "empty"
    state.mkdir()
    (state / "drop").mkdir()
    config = ingest_job.write_config(state / "config.toml", state / "drop", state)
    returncode, run = main_ab.once(Path(ingest_job.__file__).resolve().parents[1], config, state)
    if returncode != 0:
        raise SystemExit(f"ingest exited {returncode}: see {state / 'log.txt'}")
    return run.user_s, run.system_s


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


def _table(
    title: str, unit: str, runs: list[list[tuple[str, float, float]]], summed: bool = True
) -> None:
    print(f"{title}\n")
    print(f"| step | user {unit} | system {unit} | total {unit} |")
    print("|---|---|---|---|")
    total = [0.0, 0.0]
    for index, (name, _, _) in enumerate(runs[0]):
        user = statistics.median([run[index][1] for run in runs])
        system = statistics.median([run[index][2] for run in runs])
        total[0] += user
        total[1] += system
        print(f"| {name} | {user:.2f} | {system:.2f} | {user + system:.2f} |")
    if summed:
        print(f"| **sum** | {total[0]:.2f} | {total[1]:.2f} | **{sum(total):.2f}** |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="tiny", choices=sorted(corpora.SHAPES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    generated = corpora.generate(args.shape)
    runs, copies, starts = [], [], []
    SCRATCH.mkdir(parents=True, exist_ok=True)
    prefix = f"ingest-floor-{os.getpid()}-"
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=SCRATCH) as scratch:
            found = [
                DropFile(path, path.name, st.st_size, st.st_mtime_ns, 0.0, 0.0)
                for path, st in scan(generated.path, Config().watch.patterns)
            ]
            copies.append(per_mb(found, prefix))
            runs.append(measure(generated.path, Path(scratch)))
            starts.append(start_up(Path(scratch)))
    mb = generated.bytes / 1e6
    _table(f"{args.shape}: the main process's least CPU per file, median of {args.repeat}",
           "µs", runs)
    _table(f"{args.shape}: a local worker's bytes handed over, CPU per MB ({mb:.0f} MB),"
           f" median of {args.repeat}", "ms", copies, summed=False)
    user = statistics.median([u for u, _ in starts])
    system = statistics.median([s for _, s in starts])
    print(f"`ingest once` over an empty drop folder: {user + system:.3f} s of the main process's"
          f" CPU (user {user:.3f}, system {system:.3f}); over this corpus"
          f" {(user + system) / generated.files * 1e6:.0f} µs per file,"
          f" {(user + system) / mb * 1e3:.2f} ms per MB")


if __name__ == "__main__":
    main()
