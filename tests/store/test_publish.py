"""`publish`: a task's parts are committed whole, or not at all when an input changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow as pa

from ingest.files import DropFile, mtime_ns
from ingest.jobs import EncodedPart
from ingest.partfile import footer, to_parquet
from ingest.store.crashpoints import CrashPlan
from ingest.store.ledger import Ledger
from ingest.store.parts import Accepted, publish

from ..conftest import Folder
from .seed import layout_of


def _seen(path: Path) -> DropFile:
    st = os.stat(path)
    return DropFile(path, path.name, st.st_size, mtime_ns(st), 0.0, 0.0)


def test_a_task_with_one_changed_input_commits_none_and_names_the_one(folder: Folder) -> None:
    layout = layout_of(folder)
    for name in ("a.csv", "b.csv"):
        (folder.drop / name).write_text("v\n1\n")
    files = [_seen(folder.drop / "a.csv"), _seen(folder.drop / "b.csv")]
    with (folder.drop / "b.csv").open("a") as out:  # after it was read
        out.write("2\n")
    shas = [hashlib.sha256(f.rel.encode()).hexdigest() for f in files]
    accepted = [Accepted(f, sha, 1) for f, sha in zip(files, shas, strict=True)]
    data = pa.table({"v": [1, 1], "source_file": [f.rel for f in files], "source_sha256": shas})
    sources = footer([(e.file.rel, e.sha256, 1) for e in accepted])
    part = EncodedPart("records", to_parquet(data, "zstd", sources), tuple(f.rel for f in files))
    ledger = Ledger(layout.ledger)
    try:
        published = publish(ledger, layout, accepted, [part], [], CrashPlan())
    finally:
        ledger.close()

    assert published.committed == []
    assert [e.file.rel for e in published.changed] == ["a.csv", "b.csv"]
    assert published.moved == {"b.csv"}
    assert not folder.parts("records")
