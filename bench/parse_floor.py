"""The parse alone: one core's CPU per MB for ingest's reader and the peers' on a corpus's files.

    python -m bench.parse_floor --shape jsonl --files 200 --repeat 3
    python -m bench.parse_floor --shape small --files 200 --repeat 3

Every reader runs in this process on one thread (Polars with POLARS_MAX_THREADS=1, set
before it is imported; DuckDB with `threads = 1`) over the same files, read into the
page cache first:

- `ingest`: `ingest.compute.decode.decode`, the call a worker makes for each file
  of JSON Lines (for CSV, each file alone: the service parses small CSVs of one header
  together, which this does not show);
- `pyarrow`: `pyarrow.json.read_json` / `pyarrow.csv.read_csv` with no options;
- `polars`: `read_ndjson` / `read_csv`, file by file;
- `duckdb`: one `read_json` / `read_csv` over the files, as the benchmark's DuckDB
  peer reads its folder, with every column consumed by an aggregate so that none is skipped;
- for JSON Lines, the standard library's `json.loads` a line at a time, the rows then
  made an Arrow table (`Table.from_pylist`): a parser that returns Python objects;
- for JSON Lines, `pyarrow.json.read_json` once over all the files joined: what parsing
  a task's files together, as its small CSVs are, could save at most.

The figures are CPU time (`RUSAGE_SELF`), the median of `--repeat` passes, per file
and per MB of input. They bound what any pipeline built on the reader can do: a
job's CPU is at least its parse's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
from collections.abc import Callable
from pathlib import Path

from .corpus import DEFAULT_ROOT, DEFAULT_SEED, SHAPES, corpus_name

os.environ["POLARS_MAX_THREADS"] = "1"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _readers(paths: list[Path], folder: Path, suffix: str) -> dict[str, Callable[[], None]]:
    import duckdb
    import polars as pl
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json

    from ingest.compute.decode import decode

    datas = [(path.name, path.read_bytes()) for path in paths]
    is_json = suffix == ".jsonl"
    con = duckdb.connect()
    con.execute("SET threads = 1")
    listed = "[" + ", ".join(f"'{path}'" for path in paths) + "]"
    scan = (f"read_json({listed}, format = 'newline_delimited')" if is_json
            else f"read_csv({listed})")
    columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
    every = ", ".join(f'min("{name}")' for name in columns)

    def ingest() -> None:
        for name, data in datas:
            decode(name, data)

    def pyarrow() -> None:
        for _, data in datas:
            if is_json:
                pa_json.read_json(pa.BufferReader(data))
            else:
                pa_csv.read_csv(pa.BufferReader(data))

    def polars() -> None:
        for _, data in datas:
            if is_json:
                pl.read_ndjson(data)
            else:
                pl.read_csv(data)

    def duck() -> None:
        con.execute(f"SELECT count(*), {every} FROM {scan}").fetchall()

    def objects() -> None:
        for _, data in datas:
            pa.Table.from_pylist([json.loads(line) for line in data.splitlines()])

    joined_data = b"".join(data for _, data in datas)
    one_thread = pa_json.ReadOptions(use_threads=False)  # blocks of Arrow's 1 MB

    def joined() -> None:
        pa_json.read_json(pa.BufferReader(joined_data), read_options=one_thread)

    readers = {"ingest": ingest, "pyarrow": pyarrow, "polars": polars, "duckdb": duck}
    if is_json:
        readers["json.loads, then Arrow"] = objects
        readers["pyarrow, the files joined, one call"] = joined
    return readers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="jsonl", choices=("jsonl", "small", "tiny"))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    folder = DEFAULT_ROOT / corpus_name(args.shape, 1.0, args.seed)
    suffix = SHAPES[args.shape].suffix
    paths = sorted(folder.glob(f"*{suffix}"))[: args.files]
    if not paths:
        raise SystemExit(f"no corpus at {folder}: run python -m bench.corpus --shapes {args.shape}")
    megabytes = sum(path.stat().st_size for path in paths) / 1e6
    readers = _readers(paths, folder, suffix)
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(args.repeat):  # interleaved, so that a busy spell is shared
        for name, read in readers.items():
            start = _cpu()
            read()
            times[name].append(_cpu() - start)
    print(f"{args.shape}: {len(paths)} files, {megabytes:.1f} MB, one thread, "
          f"median of {args.repeat}")
    print("| reader | CPU s (min-max) | per file | per MB | against ingest |")
    print("|---|---|---|---|---|")
    ours = statistics.median(times["ingest"])
    for name, spent in times.items():
        median = statistics.median(spent)
        print(f"| {name} | {median:.3f} ({min(spent):.3f}-{max(spent):.3f}) "
              f"| {median / len(paths) * 1e3:.2f} ms | {median / megabytes * 1e3:.2f} ms "
              f"| {median / ours:.2f} |")


if __name__ == "__main__":
    main()
