"""The service's own process does not load the workers' libraries: they cost its start-up
CPU, which every file and every MB of a run pays a share of."""

from __future__ import annotations

import json
import subprocess
import sys

from ingest.blocks import LINE_FORMATS
from ingest.compute.decode import BLOCK_DECODERS

WORKERS_ONLY = (
    "pyarrow.compute", "pyarrow.csv", "pyarrow.json", "pyarrow.dataset",
    "ingest.conform", "ingest.fitting", "ingest.compute.task", "ingest.compute.stream",
    "ingest.compute.decode", "ingest.compute.encode",
)


def test_the_service_imports_none_of_the_workers_modules() -> None:
    code = (
        "import json, sys; import ingest.cli, ingest.aio.service; "
        f"print(json.dumps(sorted(set({list(WORKERS_ONLY)!r}) & set(sys.modules))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == []


def test_every_format_cut_in_blocks_has_a_block_reader() -> None:
    assert tuple(BLOCK_DECODERS) == LINE_FORMATS
