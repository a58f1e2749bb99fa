"""ingest's main process beside its tree, and the wall time more cores could give at best.

Called in the parent process, once every run is measured. The main process
(the coordinator: watching, reading, hashing, dispatching, committing) does
serial work that more workers do not shrink, so ingest can never finish
before its main process does. The projection below is a bound from CPU
seconds, not a measurement on a bigger machine:

- ingest on N cores: max(main-process CPU, tree CPU / N);
- a peer on N cores: tree CPU / N (as if its work spread perfectly).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from .report import Entry

CORES = (8, 16, 32)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _seconds(value: float) -> str:
    """A short duration: µs under 1 ms, ms under 1 s, else seconds."""
    if value < 0.001:
        return f"{value * 1e6:,.0f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def _cpu(entry: Entry) -> tuple[float, float]:
    """Median tree CPU and median main-process CPU of the good runs, in seconds."""
    good = entry.good
    return _median([s.cpu_s for s in good]), _median([s.main_cpu_s for s in good])


def bound(entry: Entry, cores: int) -> float:
    """The projected wall time on `cores` cores: a lower bound from CPU seconds."""
    tree, main = _cpu(entry)
    if entry.tool == "ingest":
        return max(main, tree / cores)
    return tree / cores


def main_process(entries: Sequence[Entry]) -> list[str]:
    """One row per shape: ingest's main-process CPU in seconds, per file, per MB, and its share."""
    lines = [
        "| shape | files | MB | ingest tree CPU s | main-process CPU s | per file | per MB "
        "| main share of tree |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        if entry.tool != "ingest" or not entry.good:
            continue
        corpus = entry.corpus
        tree, main = _cpu(entry)
        shares = [s.main_cpu_s / s.cpu_s for s in entry.good if s.cpu_s > 0]
        main_runs = [s.main_cpu_s for s in entry.good]
        spread = f"{main:.2f} ({min(main_runs):.2f}-{max(main_runs):.2f})"
        lines.append(
            f"| {corpus.shape} | {corpus.files:,} | {corpus.bytes / 1e6:,.1f} | {tree:.2f} "
            f"| {spread} | {_seconds(main / corpus.files)} "
            f"| {_seconds(main / (corpus.bytes / 1e6))} | {_median(shares):.0%} |"
        )
    return lines


def projection(entries: Sequence[Entry]) -> list[str]:
    """Each tool's tree CPU and its projected wall time on 8, 16 and 32 cores."""
    heads = " | ".join(f"{n} cores s" for n in CORES)
    ratio_heads = " | ".join(f"{n} cores / ingest" for n in CORES)
    lines = [
        f"| shape | tool | tree CPU s | main-process CPU s | {heads} | {ratio_heads} |",
        "|---|---|---|---|" + "---|" * (2 * len(CORES)),
    ]
    for shape in dict.fromkeys(e.corpus.shape for e in entries):
        group = [e for e in entries if e.corpus.shape == shape and e.good]
        ingest = next((e for e in group if e.tool == "ingest"), None)
        for entry in group:
            tree, main = _cpu(entry)
            bounds = [bound(entry, n) for n in CORES]
            ratios = [
                f"{b / bound(ingest, n):.2f}" if ingest else "-"
                for b, n in zip(bounds, CORES, strict=True)
            ]
            own = f"{main:.2f}" if entry.tool == "ingest" else ""
            lines.append(
                f"| {shape} | {entry.tool} | {tree:.2f} | {own} | "
                + " | ".join(f"{b:.2f}" for b in bounds)
                + " | "
                + " | ".join(ratios)
                + " |"
            )
    return lines


def report(entries: Sequence[Entry]) -> list[str]:
    if not any(e.tool == "ingest" and e.good for e in entries):
        return []
    return [
        "## ingest's main process",
        "",
        "Its own CPU at exit (all of its threads, none of its children), median of the runs.",
        "",
        *main_process(entries),
        "",
        "## Projected wall time on more cores (a bound, not a measurement)",
        "",
        "ingest: max(main-process CPU, tree CPU / N); a peer: tree CPU / N. Medians of the runs.",
        "",
        *projection(entries),
    ]
