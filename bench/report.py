"""Medians, ranges and the markdown table; the machine the numbers came from."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import Corpus
from .measure import Sample

PACKAGES = ("numpy", "pyarrow", "pandas", "duckdb", "polars", "ingest")


@dataclass
class Entry:
    """Every run of one tool on one corpus, and whether its answer was right."""

    tool: str
    corpus: Corpus
    samples: list[Sample] = field(default_factory=list)
    check: str = "not checked"

    @property
    def good(self) -> list[Sample]:
        return [s for s in self.samples if s.returncode == 0]

    @property
    def failures(self) -> list[int]:
        return [s.returncode for s in self.samples if s.returncode != 0]

    def median_wall(self) -> float | None:
        good = self.good
        return statistics.median(s.wall_s for s in good) if good else None


def _spread(values: Sequence[float], fmt: str) -> str:
    median = statistics.median(values)
    return f"{median:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def _rate(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


HEADER = (
    "| shape | tool | wall s | CPU s | peak RSS MB | MB/s | files/s | wall / ingest | check |",
    "|---|---|---|---|---|---|---|---|---|",
)


def row(entry: Entry, ingest_wall: float | None) -> str:
    good = entry.good
    shape = entry.corpus.shape
    if not good:
        return (
            f"| {shape} | {entry.tool} | failed: exit {entry.failures} | | | | | | {entry.check} |"
        )
    wall = statistics.median(s.wall_s for s in good)
    ratio = f"{wall / ingest_wall:.2f}" if ingest_wall else "-"
    failed = f" ({len(entry.failures)} failed)" if entry.failures else ""
    return (
        f"| {shape} | {entry.tool}{failed} | {_spread([s.wall_s for s in good], '.2f')} "
        f"| {_spread([s.cpu_s for s in good], '.1f')} "
        f"| {_spread([s.peak_rss / 1e6 for s in good], '.0f')} "
        f"| {_rate(entry.corpus.bytes / 1e6 / wall)} | {_rate(entry.corpus.files / wall)} "
        f"| {ratio} | {entry.check} |"
    )


def targets(entries: Sequence[Entry]) -> list[str]:
    """ingest's wall time over the fastest peer's and over the hand-written pool's."""
    by_tool = {e.tool: e.median_wall() for e in entries}
    ingest = by_tool.pop("ingest", None)
    peers = {tool: wall for tool, wall in by_tool.items() if wall}
    if not ingest or not peers:
        return []
    fastest = min(peers, key=lambda tool: peers[tool])
    shape = entries[0].corpus.shape
    lines = [f"- {shape}: ingest / fastest peer ({fastest}) = {ingest / peers[fastest]:.2f}"]
    if "pool" in peers:
        lines.append(f"- {shape}: ingest / hand-written pool = {ingest / peers['pool']:.2f}")
    lines.append(f"- {shape}: ingest {_rate(entries[0].corpus.files / ingest)} files/s")
    return lines


def table(entries: Sequence[Entry]) -> list[str]:
    lines = list(HEADER)
    for shape in dict.fromkeys(e.corpus.shape for e in entries):
        group = [e for e in entries if e.corpus.shape == shape]
        ingest = next((e.median_wall() for e in group if e.tool == "ingest"), None)
        lines += [row(e, ingest) for e in group]
    return lines


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return "unknown"
    return f"{pages / 2**30:.0f} GiB"


def _revision() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "uncommitted"


def machine() -> list[str]:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} absent")
    return [
        f"- machine: {_cpu_model()}, {os.cpu_count()} cores, {_memory_gib()} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {', '.join(versions)}",
        f"- revision: {_revision()}",
    ]


def corpora(entries: Sequence[Entry]) -> list[str]:
    seen = {e.corpus.path: e.corpus for e in entries}
    return [
        f"- {c.shape} (scale {c.scale:g}, seed {c.seed}): {c.files} files x "
        f"{c.rows_per_file} rows, {c.bytes / 1e6:.0f} MB of {c.suffix[1:]}"
        for c in seen.values()
    ]
