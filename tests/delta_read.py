"""Reading a Delta table in the test process through pyarrow's local filesystem.

deltalake's default filesystem for `to_pyarrow_table`/`to_pandas` is a Python-side
handler over its Rust object store; with pyarrow's I/O threads still holding it at
interpreter exit the process can abort ("terminate called without an active
exception", delta-io/delta-rs#2184, apache/arrow#34314), which would fail a passing
run. The local filesystem rooted at the table reads the same files, so the values
checked are the log's snapshot all the same.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs


def local(path: str | Path) -> pafs.FileSystem:
    return pafs.SubTreeFileSystem(str(Path(path).resolve()), pafs.LocalFileSystem())


def read_delta(path: str | Path, version: int | None = None,
               columns: list[str] | None = None) -> pa.Table:
    """The rows of the table's snapshot at `version` (the latest when None)."""
    from deltalake import DeltaTable

    return DeltaTable(str(path), version=version).to_pyarrow_table(
        columns=columns, filesystem=local(path))
