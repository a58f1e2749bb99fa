"""The service's own process does not load the workers' libraries: they cost its start-up
CPU, which every file and every MB of a run pays a share of."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from ingest.blocks import JSON_LINES, LINE_FORMATS
from ingest.compute.decode import decode_block
from ingest.store.ledger import Ledger

from .conftest import FAST, Folder, write_csv

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


def _once_loading(folder: Folder) -> list[str]:
    """`ingest once` in a process of its own; which of pyarrow, numpy and prometheus_client
    (needed only with a metrics port) it loaded."""
    seen = folder.root / "loaded.json"
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: open(sys.argv[1], 'w').write(json.dumps(sorted(\n"
        "    m for m in ('pyarrow', 'numpy', 'prometheus_client') if m in sys.modules))))\n"
        "from ingest.cli import main\n"
        "sys.exit(main('once', '--config', sys.argv[2]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(seen), str(folder.config)], cwd=folder.root,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(seen.read_text())
    return loaded


def test_runs_of_text_files_load_neither_pyarrow_nor_numpy_in_the_service(
    folder: Folder,
) -> None:
    """Parts whose schema is their table's, known by its bytes: a new table's first ones,
    then, on the next run, those of a table the ledger holds (and whose schemas start-up
    compared with the parts once, the first run)."""
    folder.write_config(**FAST, **{"tables.events": {"patterns": ["*.jsonl"]}})
    for i in range(3):
        write_csv(folder.drop / f"a{i}.csv", rows=50, seed=i)
    (folder.drop / "e.jsonl").write_text('{"k": 1, "v": 0.5}\n{"k": 2, "v": 1.5}\n')
    assert _once_loading(folder) == []
    for i in range(3, 6):
        write_csv(folder.drop / f"a{i}.csv", rows=50, seed=i)
    assert _once_loading(folder) == []
    assert folder.rows_per_file() == {f"a{i}.csv": 50 for i in range(6)}
    assert folder.rows_per_file("events") == {"e.jsonl": 2}
    ledger = Ledger(folder.output / "_ingest" / "ledger.sqlite", read_only=True)
    try:
        recorded = ledger.schemas()
    finally:
        ledger.close()
    for table in ("records", "events", "features"):
        part = folder.parts(table)[0]
        assert pq.read_schema(part).remove_metadata().serialize().to_pybytes() == (
            recorded[table][1]
        )


def test_a_table_widened_is_read_with_pyarrow(folder: Folder) -> None:
    """What the service's process may not take by bytes it reads: a file bringing a new
    column widens the table, with pyarrow."""
    write_csv(folder.drop / "a.csv", rows=20, seed=1)
    assert _once_loading(folder) == []
    write_csv(folder.drop / "b.csv", rows=20, seed=2, columns=5)
    assert "pyarrow" in _once_loading(folder)
    assert folder.rows_per_file() == {"a.csv": 20, "b.csv": 20}


@pytest.mark.parametrize("suffix", LINE_FORMATS)
def test_every_format_cut_in_blocks_has_a_block_reader(suffix: str) -> None:
    sample = b'{"a": 1}\n' if suffix in JSON_LINES else b"a,b\n1,2\n"
    first, _ = decode_block(f"x{suffix}", sample, None)
    later, _ = decode_block(f"x{suffix}", sample.splitlines(keepends=True)[-1], first.schema)
    assert first.column("a").to_pylist() == later.column("a").to_pylist() == [1]
