"""A file's column names as its table takes them.

Runs in a worker process, on each decoded file or run of files.
"""

from __future__ import annotations

import pyarrow as pa

from .csvread import unique_names
from .failures import DecodeError

RESERVED_COLUMNS = ("source_file", "source_sha256", "ingest_date", "_rescued_data")


def check_columns(table: pa.Table) -> pa.Table:
    """The table with unique column names (`a`, `a_1`; an empty one is `column<i>`);
    raises if a column takes a name ingest adds itself, in any case."""
    names = table.column_names
    clash = [name for name in names if name.casefold() in RESERVED_COLUMNS]
    if clash:
        raise DecodeError(f"column {clash[0]!r} is reserved for ingest's own use")
    unique = unique_names(names)
    return table if unique == names else table.rename_columns(unique)
