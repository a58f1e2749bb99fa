"""Committed part files made through the real commit protocol, many and small, fast."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from ingest.config import load
from ingest.files import DropFile
from ingest.jobs import EncodedPart
from ingest.partfile import footer, to_parquet
from ingest.store.crashpoints import CrashPlan
from ingest.store.layout import Layout
from ingest.store.ledger import Ledger
from ingest.store.parts import Accepted, publish

from ..conftest import Folder


def layout_of(folder: Folder) -> Layout:
    layout = Layout.of(load(folder.config))
    layout.make_dirs()
    return layout


def seed_parts(
    folder: Folder, parts: int, rows: int, table: str = "records", start: int = 0
) -> dict[str, int]:
    """`parts` commits of one input each (`s<i>.csv`, never dropped: only its rows exist),
    `rows` rows each with an int64 column `v`; returns rows per input."""
    layout = layout_of(folder)
    ledger = Ledger(layout.ledger)
    expected: dict[str, int] = {}
    try:
        for i in range(start, start + parts):
            name = f"s{i:05d}.csv"
            sha = hashlib.sha256(name.encode()).hexdigest()
            data = pa.table({
                "v": pa.array(range(i * rows, (i + 1) * rows), pa.int64()),
                "source_file": pa.array([name] * rows),
                "source_sha256": pa.array([sha] * rows),
            })
            encoded = to_parquet(data, "zstd", footer([(name, sha, rows)]))
            part = EncodedPart(table, encoded, (name,))
            file = DropFile(str(folder.drop / name), name, 100 + i, i, 0.0, 0.0)
            publish(ledger, layout, [Accepted(file, sha, rows)], [part], [], CrashPlan())
            expected[name] = rows
    finally:
        ledger.close()
    return expected
