"""Small CSVs delimited by `;`, tabs or `|`, against the same files with commas.

    python -m bench.delimited --files 2000 --repeat 3

Copies the first `--files` files of the `tiny` corpus into a folder per delimiter, the
comma replaced (the corpus has no other comma), then runs `ingest once` over each
folder and DuckDB's `read_csv` of each, auto-detected, copied into one Parquet file,
round-robin, `--repeat` times. Each run is measured as `bench.run` measures one (wall
time and the whole process tree's CPU); prints the medians. Another checkout's ingest:
`PYTHONPATH=<checkout> python -m bench.delimited`, run from a folder outside this one.
Called in the parent process.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

from . import corpus, ingest_job
from .measure import Sample, measure

SCRATCH = Path(__file__).resolve().parent / ".scratch" / "delimited"
DELIMITERS = {"comma": b",", "semicolon": b";", "tab": b"\t", "pipe": b"|"}
DUCKDB = (
    "import duckdb, sys; duckdb.sql(f\"COPY (SELECT * FROM read_csv('{sys.argv[1]}/*.csv',"
    " filename = true)) TO '{sys.argv[2]}'\")"
)


def _folders(files: int) -> dict[str, Path]:
    source = sorted(corpus.generate("tiny", 1.0).input_files())[:files]
    folders = {}
    for name, delimiter in DELIMITERS.items():
        folder = SCRATCH / "drop" / name
        if not folder.is_dir() or len(list(folder.iterdir())) != len(source):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for path in source:
                (folder / path.name).write_bytes(path.read_bytes().replace(b",", delimiter))
        folders[name] = folder
    return folders


def _ingest(drop: Path, state: Path) -> Sample:
    ingest_job.reset(state)
    config = ingest_job.write_config(state / "config.toml", drop, state)
    return measure(ingest_job.command("once", "--config", str(config)), state / "log.txt")


def _duckdb(drop: Path, state: Path) -> Sample:
    ingest_job.reset(state)
    command = [sys.executable, "-c", DUCKDB, str(drop), str(state / "out.parquet")]
    return measure(command, state / "log.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folders = _folders(args.files)
    samples: dict[tuple[str, str], list[Sample]] = {}
    for _ in range(args.repeat):
        for name, drop in folders.items():
            for tool, run in (("ingest", _ingest), ("duckdb", _duckdb)):
                sample = run(drop, SCRATCH / "state" / tool)
                if sample.returncode != 0:
                    raise SystemExit(f"{tool} on {name} exited {sample.returncode}")
                samples.setdefault((name, tool), []).append(sample)
    print(f"{args.files} files of tiny, medians of {args.repeat}:")
    print("| delimiter | tool | wall s | tree CPU s |")
    print("|---|---|---|---|")
    for (name, tool), done in samples.items():
        wall = statistics.median(s.wall_s for s in done)
        cpu = statistics.median(s.cpu_s for s in done)
        print(f"| {name} | {tool} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
