"""The peers: the reference job done the way a user might script it instead.

Each module runs as its own process, `python -m bench.peers.<module> IN OUT`,
so the runner can measure the wall time, CPU time and memory of the whole
process tree, interpreter start-up and imports included, as a user would pay.
"""

from __future__ import annotations

# Name on the command line -> module under bench.peers.
PEERS: dict[str, str] = {
    "pandas": "pandas_loop",
    "pyarrow": "pyarrow_loop",
    "pool": "process_pool",
    "duckdb": "duckdb_sql",
    "polars": "polars_lazy",
}


def command(python: str, peer: str, input_dir: str, output_dir: str) -> list[str]:
    return [python, "-m", f"bench.peers.{PEERS[peer]}", input_dir, output_dir]
