"""A mixed drop folder for end-to-end runs: CSVs, JSON Lines, a gzip'd CSV, one file big
enough for shared memory, and copies of some files under other names."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from dataclasses import dataclass

from .conftest import Folder, write_csv
from .invariants import check_exactly_once


@dataclass
class Corpus:
    rows: dict[str, int]  # rows per input, copies included
    copies: list[tuple[str, str]]  # (original, copy): the same bytes under two names


def write_corpus(folder: Folder, csvs: int = 12, rows: int = 50) -> Corpus:
    counts: dict[str, int] = {}
    for i in range(csvs):
        counts[f"s{i:02d}.csv"] = len(write_csv(folder.drop / f"s{i:02d}.csv", rows, i))
    for i in range(3):
        lines = [json.dumps({"timestamp": t, "v": t * 0.5 + i}) for t in range(rows + i)]
        (folder.drop / f"e{i}.jsonl").write_text("\n".join(lines) + "\n")
        counts[f"e{i}.jsonl"] = rows + i
    plain = folder.root / "z.csv"
    counts["z.csv.gz"] = len(write_csv(plain, rows, 100))
    (folder.drop / "z.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    # Over shared.SHARED_MIN_BYTES: with send = "bytes", the local pool gets it through
    # shared memory.
    counts["big.csv"] = len(write_csv(folder.drop / "big.csv", 40_000, 101))
    copies = [("s00.csv", "copy_of_s00.csv"), ("e1.jsonl", "sub/copy_of_e1.jsonl")]
    (folder.drop / "sub").mkdir()
    for original, copy in copies:
        shutil.copy(folder.drop / original, folder.drop / copy)
        counts[copy] = counts[original]
    return Corpus(counts, copies)


def check_corpus_once(folder: Folder, corpus: Corpus) -> None:
    """Exactly once, with one name of each copied pair ingested (whichever came first)
    and the other recorded as its duplicate."""
    with sqlite3.connect(folder.output / "_ingest" / "ledger.sqlite") as db:
        duplicates = {p for (p,) in db.execute("SELECT path FROM files WHERE state = 'duplicate'")}
    for pair in corpus.copies:
        assert len(duplicates & set(pair)) == 1, (pair, duplicates)
    expected = {name: n for name, n in corpus.rows.items() if name not in duplicates}
    assert len(expected) == len(corpus.rows) - len(corpus.copies)
    check_exactly_once(folder, expected, set(), duplicates)
