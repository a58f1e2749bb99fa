"""The benchmark runner: ingest against its peers, side by side, on the same corpora.

    python -m bench.run --shapes small,large,tiny --repeat 3

For each shape, every tool runs `--repeat` times, round-robin, the order
rotated each round so no tool always runs first or after the same
neighbour. Each run is a fresh process with a fresh output folder. The
first good run of each tool is checked: row counts per file against the
corpus, and features against ingest's (or, without ingest, the pyarrow
loop's) to 1e-9 relative. The table goes to stdout and to `--results`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from . import check, coordinator, corpus, ingest_job, report, service
from .compiled import byte_compile
from .measure import measure
from .peers import PEERS
from .peers import command as peer_command

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCRATCH = Path(__file__).resolve().parent / ".scratch"
DEFAULT_RESULTS = Path(__file__).resolve().parent / ".results"
TOOLS = (*PEERS, "ingest")
# Too slow or too memory-hungry to be worth a run on one 3 GB file.
HUGE_SKIPS = frozenset({"pandas", "pyarrow", "pool"})
# Whose features are the reference when ingest is not in the run.
FALLBACK_REFERENCE = ("pyarrow", "pool", "duckdb", "polars", "pandas")


def _tools(text: str) -> list[str]:
    return corpus.parse_choices(text, list(TOOLS), "tool")


def _command(tool: str, data: corpus.Corpus, out: Path, send: str = "auto") -> list[str]:
    if tool != "ingest":
        return peer_command(sys.executable, tool, str(data.path), str(out))
    overrides = {"pipeline": {"send": send}} if send != "auto" else None
    config = ingest_job.write_config(out / "config.toml", data.path, out, overrides)
    return ingest_job.command("once", "--config", str(config))


def _output_dir(tool: str, out: Path) -> Path:
    return out / "output" if tool == "ingest" else out


def _warm(data: corpus.Corpus) -> None:
    """Read every input once, so no tool pays for a cold page cache that the next does not."""
    for path in data.input_files():
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


def _reference(outputs: dict[str, check.Output]) -> str | None:
    for tool in ("ingest", *FALLBACK_REFERENCE):
        if tool in outputs:
            return tool
    return None


def _check(entries: dict[str, report.Entry], outputs: dict[str, check.Output]) -> None:
    reference = _reference(outputs)
    for tool, entry in entries.items():
        if tool not in outputs:
            if not entry.good:
                entry.check = "no good run"
            continue
        expected = {p.name: entry.corpus.rows_per_file for p in entry.corpus.input_files()}
        problems = check.compare_rows(expected, outputs[tool])
        if reference is not None and tool != reference:
            problems += check.compare_features(outputs[reference], outputs[tool])
        entry.check = check.verdict(problems)
        if tool == reference:
            entry.check += " (reference)"


def _repeat(shape: str, args: argparse.Namespace) -> int:
    one_file = corpus.SHAPES[shape].files == 1
    return int(args.repeat_big) if one_file and args.repeat_big else int(args.repeat)


def bench_shape(
    data: corpus.Corpus, tools: Sequence[str], args: argparse.Namespace
) -> list[report.Entry]:
    """Run every tool `repeat` times on one corpus; check the first good run of each."""
    repeat = _repeat(data.shape, args)
    entries = {tool: report.Entry(tool, data) for tool in tools}
    outputs: dict[str, check.Output] = {}
    scratch: Path = args.scratch / data.path.name
    _warm(data)
    for round_ in range(repeat):
        shift = round_ % len(tools)
        for tool in [*tools[shift:], *tools[:shift]]:
            out = scratch / tool
            ingest_job.reset(out)
            log = scratch / f"{tool}-{round_}.log"
            command = _command(tool, data, out, args.send)
            # ingest runs in its own folder: a revision before db64b3b started its forkserver
            # with the working folder first on its path, so, run in the repository, its
            # workers imported the working tree whatever PYTHONPATH named. The peers are
            # modules of this package, found from the repository.
            cwd = out if tool == "ingest" else ROOT
            sample = measure(command, log, cwd=cwd, timeout_s=args.timeout)
            entries[tool].samples.append(sample)
            status = "ok" if sample.returncode == 0 else f"exit {sample.returncode}, see {log}"
            print(
                f"  {data.shape} round {round_ + 1}/{repeat} {tool:8s} "
                f"{sample.wall_s:7.2f} s  {sample.peak_rss / 1e6:6.0f} MB  {status}",
                flush=True,
            )
            if sample.returncode == 0 and args.check and tool not in outputs:
                try:
                    outputs[tool] = check.load(_output_dir(tool, out))
                except (OSError, ValueError) as exc:
                    entries[tool].check = f"unreadable output: {exc}"
            shutil.rmtree(out, ignore_errors=True)
    _check(entries, outputs)
    return list(entries.values())


def _write(lines: list[str], raw: list[dict[str, object]], results: Path) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results / f"run-{stamp}.md"
    path.write_text("\n".join(lines) + "\n")
    (results / f"run-{stamp}.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    shutil.copyfile(path, results / "latest.md")
    return path


def _raw(entries: Sequence[report.Entry]) -> list[dict[str, object]]:
    return [
        {
            "shape": e.corpus.shape,
            "tool": e.tool,
            "corpus": asdict(e.corpus),
            "check": e.check,
            "samples": [asdict(s) for s in e.samples],
        }
        for e in entries
    ]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shapes", type=corpus.parse_shapes, default=["small", "large", "tiny"])
    p.add_argument(
        "--peers",
        type=_tools,
        default=None,
        help=f"tools to run, from {','.join(TOOLS)} (default: all; ingest only if its CLI works)",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per tool and shape (default 3)")
    p.add_argument(
        "--repeat-big",
        type=int,
        default=None,
        help="runs per tool on the one-file shapes, big and huge (default: --repeat)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink the corpora: file count for small/tiny, rows for large/huge",
    )
    p.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    p.add_argument("--corpus-dir", type=Path, default=corpus.DEFAULT_ROOT)
    p.add_argument(
        "--scratch",
        type=Path,
        default=DEFAULT_SCRATCH,
        help="outputs and logs of the runs (emptied per run)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        help="folder for run-<time>.md, run-<time>.json and latest.md",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="skip the row-count and feature check",
    )
    p.add_argument("--keep-huge", action="store_true", help="keep the huge corpus afterwards")
    p.add_argument(
        "--send", choices=("auto", "bytes", "paths"), default="auto",
        help='ingest\'s [pipeline] send: "bytes" puts each file in shared memory for its worker,'
        ' "paths" has the worker read it; the default, auto, is paths on the local pool',
    )
    p.add_argument(
        "--service",
        action="store_true",
        help="also measure the service figures (see python -m bench.service)",
    )
    return p


def _select_tools(requested: list[str] | None) -> list[str]:
    if requested is not None:
        if "ingest" in requested and not ingest_job.available():
            sys.exit("ingest was requested but `ingest --help` does not run")
        return requested
    tools = list(PEERS)
    if ingest_job.available():
        tools.append("ingest")
    else:
        print("ingest is not runnable yet; measuring the peers only", flush=True)
    return tools


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    tools = _select_tools(args.peers)
    byte_compile(Path(__file__).resolve().parent, ROOT / "ingest")
    entries: list[report.Entry] = []
    for shape in args.shapes:
        started = datetime.datetime.now()
        data = corpus.generate(shape, args.scale, args.seed, args.corpus_dir)
        print(
            f"{shape}: {data.files} files, {data.bytes / 1e6:.0f} MB "
            f"(ready in {(datetime.datetime.now() - started).total_seconds():.0f} s)",
            flush=True,
        )
        chosen = [t for t in tools if shape != "huge" or t not in HUGE_SKIPS]
        try:
            entries += bench_shape(data, chosen, args)
        finally:
            if not corpus.SHAPES[shape].cached and not args.keep_huge:
                corpus.remove(data)
    lines = [
        "# ingest benchmark",
        "",
        f"`python -m bench.run {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        *report.machine(),
        *report.corpora(entries),
        "",
        "Median of each tool's runs (per shape: "
        f"{', '.join(f'{s} {_repeat(s, args)}' for s in args.shapes)}), (min-max) in brackets.",
        "",
        *report.table(entries),
        "",
    ]
    for shape in args.shapes:
        lines += report.targets([e for e in entries if e.corpus.shape == shape])
    lines += ["", *coordinator.report(entries)]
    if args.service:
        lines += ["", *service.report(service.run_all(service.options_from(args)))]
    path = _write(lines, _raw(entries), args.results)
    print("\n".join(lines))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
