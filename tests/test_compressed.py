"""Compressed inputs keep the memory bound: gzip'd CSV is read in blocks, and a file that
would expand past memory_mb is refused before it is read. Real processes, real files."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .conftest import ROOT, Folder, write_csv
from .test_stream import STREAMING, assert_features_exact, big_csv, features_of, records_of

MB = 1 << 20


def test_a_gzipped_csv_larger_than_memory_mb_is_ingested_in_blocks_exactly(
    folder: Folder,
) -> None:
    folder.write_config(**STREAMING)
    big_csv(folder.root / "big.csv", rows=60_000)
    whole = pa_csv.read_csv(folder.root / "big.csv")
    path = folder.drop / "big.csv.gz"
    path.write_bytes(gzip.compress((folder.root / "big.csv").read_bytes()))
    assert path.stat().st_size < 1 << 20 < (folder.root / "big.csv").stat().st_size
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # of the bytes on disk

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "reading it in blocks" in result.stderr and "rows=60000" in result.stderr
    assert len(folder.parts("records")) >= 10, "the file should have been read in many blocks"
    got = records_of(folder).sort_by("timestamp")
    for name in whole.column_names:
        assert got[name].combine_chunks().equals(whole[name].combine_chunks()), name
    assert set(got["source_sha256"].to_pylist()) == {digest}
    assert_features_exact(features_of(folder), whole)
    assert not list((folder.output / "_ingest" / "tmp").iterdir())


def test_a_truncated_gzipped_csv_read_in_blocks_is_quarantined_whole(folder: Folder) -> None:
    folder.write_config(**STREAMING)
    big_csv(folder.root / "big.csv", rows=60_000)
    data = gzip.compress((folder.root / "big.csv").read_bytes())
    (folder.drop / "cut.csv.gz").write_bytes(data[: len(data) * 3 // 4])

    result = folder.ingest("once")

    assert result.returncode == 3, result.stderr
    report = json.loads((folder.quarantine / "cut.csv.gz.error.json").read_text())
    assert report["error"] == "DecodeError"
    assert "gzip" in report["message"] and report["offset"] > 0
    assert not folder.parts("records") and not folder.parts("features")
    assert not list((folder.output / "_ingest" / "tmp").iterdir())


def test_a_small_gzipped_csv_is_charged_what_it_becomes_and_read_whole(folder: Folder) -> None:
    # 600 KB of CSV from a few KB: over a quarter of memory_mb = 1 once decompressed.
    folder.write_config(pipeline={"workers": 1, "memory_mb": 4}, watch={"settle_ms": 0})
    text = b"t,x\n" + b"".join(b"%d,%d\n" % (i, i % 10) for i in range(60_000))
    (folder.drop / "a.csv.gz").write_bytes(gzip.compress(text))

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "reading it in blocks" not in result.stderr
    assert folder.query("SELECT count(*), sum(x) FROM records") == [(60_000, 270_000)]


# ---- compression bombs: the whole process tree under memory_mb plus its fixed cost ----

BOMB_MB = 64  # memory_mb for the bombs
PLAIN_MB = 100  # what each bomb expands to
RATIO = 1000  # ...from at most a thousandth of that on disk
# Deflate's bound is about 1032:1, neared only over long runs: each member of the gzip'd
# CSV is 4 MB of rows that are two numbers and half a megabyte of one letter. With rows of
# 10 KB the file expands 650-fold; with members of 1 MB, 980-fold.
MEMBER_MB = 4
NOTE = MB // 2 - 8
# Short rows first, as a file that grows wide further on: they are what the dialect is
# told from. Lines longer than the 64 KB head the plain check reads would send the file to
# DuckDB's sniffer, which costs the process that runs it some 70 MB once: a fixed cost,
# beside the point here.
FIRST_ROWS = 10


def gzip_bomb(path: Path) -> tuple[int, int]:
    """PLAIN_MB of CSV gzip'd over a thousandfold, in members of MEMBER_MB.
    Returns the rows of half a megabyte and the bytes of CSV."""
    note = "a" * NOTE
    per_member = MEMBER_MB * MB // len(f"{PLAIN_MB},9,{note}\n")
    first = b"k,j,note\n" + b"".join(b"0,%d,a\n" % j for j in range(FIRST_ROWS))
    plain = len(first)
    with path.open("wb") as out:
        out.write(gzip.compress(first))
        for k in range(PLAIN_MB // MEMBER_MB):
            rows = "".join(f"{k},{j},{note}\n" for j in range(per_member)).encode()
            out.write(gzip.compress(rows, compresslevel=9))
            plain += len(rows)
    return PLAIN_MB // MEMBER_MB * per_member, plain


def other_bombs(drop: Path) -> list[str]:
    """An .npz, a Parquet and an Arrow file of PLAIN_MB of zeros, each at most 100 KB, and
    an .npy of a header alone, of 30 million values of no width (`|S0`): each still a
    Python object and a place in a column on its way to the table."""
    zeros = np.zeros(PLAIN_MB * MB // 8)
    np.savez_compressed(drop / "zeros.npz", x=zeros)
    table = pa.table({"x": zeros})
    pq.write_table(table, drop / "zeros.parquet", compression="zstd")
    with ipc.new_file(drop / "zeros.arrow", table.schema,
                      options=ipc.IpcWriteOptions(compression="zstd")) as out:
        out.write_table(table)
    with (drop / "nothing.npy").open("wb") as out:
        np.lib.format.write_array_header_1_0(
            out, {"descr": "|S0", "fortran_order": False, "shape": (30_000_000,)}
        )
    names = ["zeros.npz", "zeros.parquet", "zeros.arrow", "nothing.npy"]
    for name in names:
        assert (drop / name).stat().st_size * RATIO < PLAIN_MB * MB, name
    return names


def peak_tree_rss(folder: Folder) -> tuple[int, subprocess.CompletedProcess[str]]:
    """`ingest once`, with the peak of the summed RSS of it and all its children."""
    proc = psutil.Popen(
        [sys.executable, "-m", "ingest", "once", "--config", str(folder.config)],
        cwd=folder.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            total = 0
            try:
                for p in [proc, *proc.children(recursive=True)]:
                    total += p.memory_info().rss
            except psutil.Error:
                pass  # a process that just ended
            peak = max(peak, total)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        done.set()
        sampler.join()
    return peak, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _libraries_rss() -> int:
    """What loading pyarrow (with numpy), and the two modules of ours that the service's
    process then uses for a file read in blocks, adds to an interpreter's RSS."""
    code = (
        "import psutil; before = psutil.Process().memory_info().rss; import pyarrow.parquet;"
        " import ingest.bytescan, ingest.widen;"
        " print(psutil.Process().memory_info().rss - before)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return int(done.stdout)


def fixed_cost_and_bomb_folder(tmp_path: Path) -> tuple[int, Folder]:
    """The tree's peak over one tiny file, with what pyarrow and numpy weigh loaded, and an
    empty folder of the same config. The service's process loads them for a file read in
    blocks (numpy cuts it, pyarrow reads its parts' schema), not for a tiny CSV: they are
    a fixed cost, not the data's. The peak is the larger of two runs: a short run on busy
    cores can end between two of the sampler's looks at its peak."""
    config: dict[str, dict[str, object]] = {
        "pipeline": {"workers": 2, "memory_mb": BOMB_MB}, "watch": {"settle_ms": 0},
        "output": {"flush_s": 0.05},
    }
    peaks = []
    for run in range(2):
        tiny = Folder(tmp_path / f"tiny{run}")
        tiny.drop.mkdir(parents=True)
        tiny.write_config(**config)
        write_csv(tiny.drop / "tiny.csv", rows=10, seed=1)
        peak, result = peak_tree_rss(tiny)
        assert result.returncode == 0, result.stderr
        peaks.append(peak)
    fixed = max(peaks) + _libraries_rss()
    bombs = Folder(tmp_path / "bombs")
    bombs.drop.mkdir(parents=True)
    bombs.write_config(**config)
    return fixed, bombs


def test_compression_bombs_keep_the_process_tree_near_memory_mb(tmp_path: Path) -> None:
    fixed, bombs = fixed_cost_and_bomb_folder(tmp_path)
    rows, plain = gzip_bomb(bombs.drop / "bomb.csv.gz")
    assert plain > (PLAIN_MB - 1) * MB
    assert (bombs.drop / "bomb.csv.gz").stat().st_size * RATIO < plain
    refused = other_bombs(bombs.drop)

    peak, result = peak_tree_rss(bombs)

    assert result.returncode == 3, result.stderr
    assert "bomb.csv.gz: " in result.stderr and "reading it in blocks" in result.stderr
    assert bombs.query(
        "SELECT count(*), count(DISTINCT k), count(*) FILTER (WHERE length(note) = 1),"
        f" count(*) FILTER (WHERE length(note) = {NOTE}) FROM records"
    ) == [(FIRST_ROWS + rows, PLAIN_MB // MEMBER_MB, FIRST_ROWS, rows)]
    for name in refused:
        report = json.loads((bombs.quarantine / f"{name}.error.json").read_text())
        assert report["error"] == "TooLarge", report
        assert f"memory_mb = {BOMB_MB}" in report["message"], report
    extra = (peak - fixed) / MB
    print(f"fixed cost {fixed / MB:.0f} MB, peak {peak / MB:.0f} MB, extra {extra:.0f} MB")
    # Read whole, the .csv.gz alone took the tree 420 MB above its fixed cost, the others 4 GB
    # (the .npy alone, 2.9 GB);
    # a plain CSV of the same 100 MB, read in blocks, takes it about 85 MB above.
    assert extra < 2 * BOMB_MB, (
        f"the tree peaked {extra:.0f} MB above its fixed cost ({fixed / MB:.0f} MB)"
        f" with memory_mb = {BOMB_MB}"
    )


def test_gzipped_json_lines_are_read_whole_or_in_blocks_when_the_patterns_allow_them(
    folder: Folder,
) -> None:
    folder.write_config(
        pipeline=STREAMING["pipeline"], watch={"settle_ms": 0, "patterns": ["*.jsonl.gz"]}
    )
    rows = [{"t": i, "x": i % 11, "note": "n" * (i % 5)} for i in range(40_000)]
    text = "".join(json.dumps(row) + "\n" for row in rows).encode()
    assert len(text) > 1 << 20
    (folder.drop / "big.jsonl.gz").write_bytes(gzip.compress(text))
    small = text[: text.rfind(b"\n", 0, 10_000) + 1]
    (folder.drop / "small.jsonl.gz").write_bytes(gzip.compress(small))
    small_rows = small.count(b"\n")

    result = folder.ingest("once")

    assert result.returncode == 0, result.stderr
    assert "big.jsonl.gz: " in result.stderr and "reading it in blocks" in result.stderr
    assert "small.jsonl.gz: " not in result.stderr
    assert sorted(folder.query("SELECT source_file, count(*), sum(x) FROM records GROUP BY 1")) == [
        ("big.jsonl.gz", 40_000, sum(i % 11 for i in range(40_000))),
        ("small.jsonl.gz", small_rows, sum(i % 11 for i in range(small_rows))),
    ]


SHORT_PLAIN_MB = 16  # of two-byte rows: 8 million of them


def test_a_gzipped_csv_of_two_byte_rows_keeps_the_process_tree_near_memory_mb(
    tmp_path: Path,
) -> None:
    """Each row costs a worker its source columns beside its text, some 80 bytes: blocks
    of the usual size in bytes would hold 40 times their size in rows. Blocks are cut by
    rows too, so the bound holds for the shortest rows there are."""
    fixed, bombs = fixed_cost_and_bomb_folder(tmp_path)
    rows = SHORT_PLAIN_MB * MB // 2 - 1
    with (bombs.drop / "zeros.csv.gz").open("wb") as out:
        out.write(gzip.compress(b"v\n" + b"0\n" * rows, compresslevel=9))
    assert (bombs.drop / "zeros.csv.gz").stat().st_size * RATIO < SHORT_PLAIN_MB * MB

    peak, result = peak_tree_rss(bombs)

    assert result.returncode == 0, result.stderr
    assert "reading it in blocks" in result.stderr
    assert bombs.query("SELECT count(*), sum(v) FROM records") == [(rows, 0)]
    extra = (peak - fixed) / MB
    print(f"fixed cost {fixed / MB:.0f} MB, peak {peak / MB:.0f} MB, extra {extra:.0f} MB")
    assert extra < 2 * BOMB_MB, (
        f"the tree peaked {extra:.0f} MB above its fixed cost ({fixed / MB:.0f} MB)"
        f" with memory_mb = {BOMB_MB}"
    )
