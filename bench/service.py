"""Service figures: what a running `ingest` does for files as they arrive.

    python -m bench.service --only latency,backlog,huge,idle

- latency: files renamed one at a time, `--interval-ms` apart, into the drop
  folder of a running `ingest run` (`settle_ms = 50`, `flush_s = 0`); the
  time from the rename until a part file naming the file is in `records/`
  (and in `features/`), found by listing the dataset every `POLL_S`.
- backlog: `ingest once` over about `--backlog-gb` of small files with
  `memory_mb = 512`: peak RSS of the tree, and the event-loop lag p99 that
  ingest reports at exit, with every worker saturated.
- huge: `ingest once` over one ~3 GB CSV with `memory_mb = 512`: peak RSS,
  and the file must be ingested (in blocks), not quarantined.
- idle: `ingest run` on an empty drop folder for `--idle-s`: the CPU its main
  process (all threads) and its whole tree spend a second while nothing comes,
  which an unattended service spends all day.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from . import corpus, ingest_job
from .measure import Sample, TreeSampler, measure

DEFAULT_SCRATCH = Path(__file__).resolve().parent / ".scratch"
DEFAULT_RESULTS = Path(__file__).resolve().parent / ".results"
# MB of CSV in one full `small` corpus (2,000 files), to turn --backlog-gb into a scale.
SMALL_CORPUS_MB = 348
# Listing the dataset this often bounds the error of each latency sample.
POLL_S = 0.002
PARTS = ("records", "features")
_LAG = re.compile(r"loop lag p99 ([0-9.]+) ms")
FIGURES = ("latency", "backlog", "huge", "idle")
FIRST_FILE_PAUSE_S = 1.0
# Before the idle window: the pool's workers and the first tick's work have started.
IDLE_SETTLE_S = 3.0


@dataclass(frozen=True)
class Options:
    corpus_dir: Path = corpus.DEFAULT_ROOT
    scratch: Path = DEFAULT_SCRATCH
    seed: int = corpus.DEFAULT_SEED
    only: tuple[str, ...] = FIGURES
    latency_files: int = 200
    interval_ms: float = 150.0
    settle_ms: int = 50
    memory_mb: int = 512
    backlog_gb: float = 2.0
    huge_scale: float = 1.0
    timeout_s: float = 1800.0
    idle_s: float = 20.0


@dataclass
class Figures:
    """Each figure as a (name, value, target) row; absent figures were not run."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Visibility:
    """Finds when each source file first appears in a committed part of one table."""

    def __init__(self, table_dir: Path) -> None:
        self.table_dir = table_dir
        self.first_seen: dict[str, float] = {}
        self._parts: set[str] = set()

    def _listing(self) -> list[str]:
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.table_dir):
            dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
            found += [os.path.join(dirpath, n) for n in filenames if n.endswith(".parquet")]
        return found

    def poll(self) -> None:
        fresh = [p for p in self._listing() if p not in self._parts]
        # A part is complete when its name appears, so the listing time is its visible time.
        now = time.perf_counter()
        for part in fresh:
            self._parts.add(part)
            names = pq.read_table(part, columns=["source_file"]).column(0).unique()
            for name in names.to_pylist():
                self.first_seen.setdefault(name, now)


def _lag_p99(log: Path) -> str:
    found = _LAG.findall(log.read_text(errors="replace"))
    return f"{float(found[-1]):.1f} ms" if found else "not reported"


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q, method="linear"))


def _wait_visible(views: Sequence[Visibility], names: Sequence[str], deadline: float) -> bool:
    while time.perf_counter() < deadline:
        for view in views:
            view.poll()
        if all(n in v.first_seen for v in views for n in names):
            return True
        time.sleep(POLL_S)
    return False


def _drop_one_at_a_time(
    sources: list[Path], staging: Path, drop: Path, views: Sequence[Visibility], interval_s: float
) -> dict[str, float]:
    """Write each file beside the drop folder and rename it in at once, as a careful producer does.

    Writing just before the rename gives each file a fresh mtime, so the time
    measured includes whatever settling ingest applies to a file that new.
    """
    dropped: dict[str, float] = {}
    start = time.perf_counter()
    for index, source in enumerate(sources):
        due = start + index * interval_s
        while (now := time.perf_counter()) < due:
            for view in views:
                view.poll()
            time.sleep(min(POLL_S, max(0.0, due - now)))
        staged = Path(shutil.copyfile(source, staging / source.name))
        dropped[source.name] = time.perf_counter()
        os.rename(staged, drop / source.name)
    return dropped


def _wait_watching(log: Path, deadline: float) -> bool:
    """Until the service logs that it watches the drop folder: its start-up is done."""
    while time.perf_counter() < deadline:
        if b"watching " in log.read_bytes():
            return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def latency(opts: Options, figures: Figures) -> None:
    """Rename files into a running `ingest run` and time until each is visible."""
    scale = max(opts.latency_files + 1, 2) / corpus.SHAPES["small"].files
    data = corpus.generate("small", round(scale, 4), opts.seed, opts.corpus_dir)
    state = opts.scratch / "service-latency"
    ingest_job.reset(state)
    staging, drop = state / "staging", state / "drop"
    staging.mkdir()
    drop.mkdir()
    sources = data.input_files()[: opts.latency_files + 1]
    config = ingest_job.write_config(
        state / "config.toml",
        drop,
        state,
        {"watch": {"settle_ms": opts.settle_ms}, "output": {"flush_s": 0}},
    )
    output = state / "output"
    views = [Visibility(output / table) for table in PARTS]
    log = opts.scratch / "service-latency.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ingest_job.command("run", "--config", str(config)), stdout=out, stderr=out
        )
    sampler = TreeSampler(process.pid)
    sampler.start()
    try:
        # The first file is dropped once the service says it is watching, after a pause
        # for its start-up to finish: timed on its own, since it meets whatever start-up
        # left undone (a worker's first task, the committer's first ledger write).
        if not _wait_watching(log, time.perf_counter() + 120):
            figures.notes.append(f"latency: the service never said it was watching; see {log}")
            return
        time.sleep(FIRST_FILE_PAUSE_S)
        first = _drop_one_at_a_time(sources[:1], staging, drop, views, 0.0)
        if not _wait_visible(views, list(first), time.perf_counter() + 120):
            figures.notes.append(f"latency: the first file never became visible; see {log}")
            return
        name, dropped_at = next(iter(first.items()))
        waited = max(view.first_seen[name] for view in views) - dropped_at
        figures.rows.append((
            f"first file after start-up ({FIRST_FILE_PAUSE_S:g} s after `watching`),"
            " drop-to-visible in both tables", f"{waited * 1000:.0f} ms", "as fast as the others",
        ))
        dropped = _drop_one_at_a_time(sources[1:], staging, drop, views, opts.interval_ms / 1000)
        _wait_visible(views, list(dropped), time.perf_counter() + 30)
    finally:
        code = _stop(process)
        sampler.stop()
    _latency_rows(opts, views, dropped, figures)
    figures.rows.append(
        ("peak RSS, ingest run while dropping", f"{sampler.peak_rss / 1e6:.0f} MB", "")
    )
    figures.rows.append(("loop lag p99, files arriving", _lag_p99(log), "< 10 ms"))
    if code != 0:
        figures.notes.append(f"latency: `ingest run` exited {code} on SIGINT; see {log}")
    shutil.rmtree(state, ignore_errors=True)


def _tree_cpu_s(root: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the root process (all threads) and of its whole tree, so far."""
    own = sum(root.cpu_times()[:2])
    tree = own
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            tree += sum(child.cpu_times()[:2])
    return own, tree


def idle(opts: Options, figures: Figures) -> None:
    """CPU a running `ingest run` spends a second while no file arrives."""
    state = opts.scratch / "service-idle"
    ingest_job.reset(state)
    drop = state / "drop"
    drop.mkdir()
    config = ingest_job.write_config(state / "config.toml", drop, state, {})
    log = opts.scratch / "service-idle.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ingest_job.command("run", "--config", str(config)), stdout=out, stderr=out
        )
    try:
        if not _wait_watching(log, time.perf_counter() + 120):
            figures.notes.append(f"idle: the service never said it was watching; see {log}")
            return
        time.sleep(IDLE_SETTLE_S)
        root = psutil.Process(process.pid)
        own_before, tree_before = _tree_cpu_s(root)
        started = time.perf_counter()
        time.sleep(opts.idle_s)
        own_after, tree_after = _tree_cpu_s(root)
        elapsed = time.perf_counter() - started
    finally:
        code = _stop(process)
    label = f"ingest run, empty drop folder, {elapsed:.0f} s"
    for what, used in (
        ("main process", own_after - own_before),
        ("whole tree", tree_after - tree_before),
    ):
        figures.rows.append(
            (f"{label}: CPU of its {what}", f"{used / elapsed * 1000:.1f} ms a second", "")
        )
    if code != 0:
        figures.notes.append(f"idle: `ingest run` exited {code} on SIGINT; see {log}")
    shutil.rmtree(state, ignore_errors=True)


def _latency_rows(
    opts: Options, views: Sequence[Visibility], dropped: dict[str, float], figures: Figures
) -> None:
    for table, view in zip(PARTS, views, strict=True):
        waits = [
            (view.first_seen[n] - t) * 1000 for n, t in dropped.items() if n in view.first_seen
        ]
        lost = len(dropped) - len(waits)
        if not waits:
            figures.notes.append(f"latency: no file became visible in {table}")
            continue
        label = f"drop-to-visible in {table}, {len(waits)} files {opts.interval_ms:g} ms apart"
        p50, p99 = _percentile(waits, 50), _percentile(waits, 99)
        figures.rows.append((f"{label}, p50", f"{p50:.0f} ms", f"<= {opts.settle_ms + 30} ms"))
        figures.rows.append((f"{label}, p99", f"{p99:.0f} ms", f"<= {opts.settle_ms + 100} ms"))
        if lost:
            figures.notes.append(f"latency: {lost} files never became visible in {table}")


def _once(data: corpus.Corpus, state: Path, opts: Options) -> tuple[Sample, Path]:
    ingest_job.reset(state)
    config = ingest_job.write_config(
        state / "config.toml", data.path, state, {"pipeline": {"memory_mb": opts.memory_mb}}
    )
    log = state.parent / f"{state.name}.log"
    command = ingest_job.command("once", "--config", str(config))
    return measure(command, log, timeout_s=opts.timeout_s), log


def _records_rows(state: Path) -> int:
    return int(ds.dataset(state / "output" / "records", partitioning="hive").count_rows())


def backlog(opts: Options, figures: Figures) -> None:
    """`ingest once` over a backlog of small files, with memory_mb = 512."""
    scale = round(opts.backlog_gb * 1000 / SMALL_CORPUS_MB, 3)
    data = corpus.generate("small", scale, opts.seed, opts.corpus_dir)
    state = opts.scratch / "service-backlog"
    sample, log = _once(data, state, opts)
    label = (
        f"{data.bytes / 1e9:.2f} GB backlog, {data.files} small files, memory_mb {opts.memory_mb}"
    )
    figures.rows.append((f"peak RSS, {label}", f"{sample.peak_rss / 1e6:.0f} MB", "near memory_mb"))
    figures.rows.append((f"wall, {label}", f"{sample.wall_s:.1f} s", ""))
    figures.rows.append(("loop lag p99, workers saturated (backlog)", _lag_p99(log), "< 10 ms"))
    rows = _records_rows(state) if sample.returncode == 0 else 0
    if sample.returncode != 0 or rows != data.rows:
        figures.notes.append(
            f"backlog: exit {sample.returncode}, {rows} of {data.rows} rows; see {log}"
        )
    shutil.rmtree(state, ignore_errors=True)


def huge(opts: Options, figures: Figures) -> None:
    """`ingest once` over one file larger than memory_mb; generated here, deleted after."""
    data = corpus.generate("huge", opts.huge_scale, opts.seed, opts.corpus_dir)
    state = opts.scratch / "service-huge"
    try:
        sample, log = _once(data, state, opts)
    finally:
        corpus.remove(data)
    rows = _records_rows(state) if sample.returncode == 0 else 0
    label = f"{data.bytes / 1e9:.2f} GB CSV, memory_mb {opts.memory_mb}"
    figures.rows.append(
        (
            f"peak RSS, one {label}",
            f"{sample.peak_rss / 1e6:.0f} MB",
            f"< {opts.memory_mb + 300} MB",
        )
    )
    figures.rows.append((f"wall, one {label}", f"{sample.wall_s:.1f} s", ""))
    verdict = "ingested" if sample.returncode == 0 and rows == data.rows else "NOT ingested"
    figures.rows.append(("huge file outcome", f"{verdict}: {rows} of {data.rows} rows", "ingested"))
    if verdict != "ingested":
        figures.notes.append(f"huge: exit {sample.returncode}; see {log}")
    shutil.rmtree(state, ignore_errors=True)


def run_all(opts: Options) -> Figures:
    figures = Figures()
    if not ingest_job.available():
        figures.notes.append("ingest is not runnable; no service figures")
        return figures
    steps = {"latency": latency, "backlog": backlog, "huge": huge, "idle": idle}
    for name in opts.only:
        print(f"service: {name}", flush=True)
        steps[name](opts, figures)
    return figures


def report(figures: Figures) -> list[str]:
    lines = ["## Service figures", "", "| figure | value | target |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in figures.rows]
    lines += ["", *(f"- {note}" for note in figures.notes)]
    return lines


def options_from(args: argparse.Namespace) -> Options:
    """Service options matching a `bench.run` invocation: its scale shrinks every figure."""
    return Options(
        corpus_dir=args.corpus_dir,
        scratch=args.scratch,
        seed=args.seed,
        latency_files=max(10, round(200 * min(1.0, args.scale))),
        backlog_gb=2.0 * args.scale,
        huge_scale=args.scale,
        timeout_s=args.timeout,
    )


def _figures(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown figure(s) {unknown}; known: {list(FIGURES)}")
    return names


def main(argv: Sequence[str] | None = None) -> None:
    defaults = Options()
    p = argparse.ArgumentParser(
        prog="python -m bench.service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--only", type=_figures, default=FIGURES, help="latency,backlog,huge,idle")
    p.add_argument("--latency-files", type=int, default=defaults.latency_files)
    p.add_argument("--interval-ms", type=float, default=defaults.interval_ms)
    p.add_argument("--settle-ms", type=int, default=defaults.settle_ms)
    p.add_argument("--memory-mb", type=int, default=defaults.memory_mb)
    p.add_argument("--backlog-gb", type=float, default=defaults.backlog_gb)
    p.add_argument(
        "--huge-scale",
        type=float,
        default=defaults.huge_scale,
        help="fraction of the ~3 GB huge file to generate",
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--corpus-dir", type=Path, default=defaults.corpus_dir)
    p.add_argument("--scratch", type=Path, default=defaults.scratch)
    p.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds per run")
    p.add_argument("--idle-s", type=float, default=defaults.idle_s, help="idle window, seconds")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = p.parse_args(argv)
    opts = Options(
        args.corpus_dir,
        args.scratch,
        args.seed,
        args.only,
        args.latency_files,
        args.interval_ms,
        args.settle_ms,
        args.memory_mb,
        args.backlog_gb,
        args.huge_scale,
        args.timeout,
        args.idle_s,
    )
    lines = report(run_all(opts))
    print("\n".join(lines))
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.results / f"service-{stamp}.md"
    path.write_text("\n".join(["# ingest service figures", "", *lines]) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
