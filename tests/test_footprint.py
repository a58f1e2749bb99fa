"""What a file becomes in memory, found from its headers before it is read."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from ingest.footprint import Footprint, footprint, measured, of_bytes

CAP = 1 << 40


def test_a_gzip_file_counts_its_plain_bytes_up_to_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"1,2\n" * (1 << 20)))
    size = path.stat().st_size

    assert footprint(path, path.name, size, CAP).bytes == size + (4 << 20)
    assert footprint(path, path.name, size, 1 << 20).bytes < 3 << 20


def test_an_npz_counts_each_member_as_its_array_and_what_that_becomes(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez_compressed(path, x=np.zeros(1 << 20), n=np.zeros(1 << 18, dtype=np.int32))
    size = path.stat().st_size
    assert size < 1 << 16

    found = footprint(path, path.name, size, CAP)

    assert not found.unbounded
    # Each number as numpy holds it, then in 64 bits as the table does.
    assert found.bytes - size == (1 << 20) * (8 + 8) + (1 << 18) * (4 + 8)


def test_an_npy_header_that_claims_more_than_its_member_holds_counts_the_claim(
    tmp_path: Path,
) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (1 << 30,)}
    )
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 64)

    assert footprint(path, path.name, path.stat().st_size, CAP).bytes > 8 << 30


def _rewrite_declared_size(path: Path, declared: int) -> None:
    """Make the central directory claim `declared` bytes for the only member."""
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))


def test_an_npz_member_declaring_more_than_deflate_can_make_is_unbounded(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x=np.arange(1000.0))
    _rewrite_declared_size(path, 4_000_000_000)

    found = footprint(path, path.name, path.stat().st_size, CAP)

    assert "more than deflate can produce" in found.unbounded


def test_an_npz_member_compressed_with_lzma_is_unbounded(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(1000))
    path = tmp_path / "lzma.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_LZMA) as archive:
        archive.writestr("x.npy", buffer.getvalue())

    found = footprint(path, path.name, path.stat().st_size, CAP)

    assert "cannot be bounded" in found.unbounded


def test_a_parquet_column_of_equal_values_counts_every_decoded_value(tmp_path: Path) -> None:
    path = tmp_path / "zeros.parquet"
    pq.write_table(pa.table({"x": np.zeros(1 << 22)}), path, compression="zstd")
    size = path.stat().st_size
    assert size < 1 << 16

    assert footprint(path, path.name, size, CAP).bytes >= 8 << 22


@pytest.mark.parametrize("compression", [None, "zstd", "lz4"])
@pytest.mark.parametrize("kind", ["file", "stream"])
def test_an_arrow_file_counts_its_buffers_uncompressed(
    tmp_path: Path, kind: str, compression: str | None
) -> None:
    table = pa.table({
        "x": np.zeros(1 << 20), "s": pa.array(["abc", None] * (1 << 19)).dictionary_encode(),
    })
    path = tmp_path / "a.arrow"
    new = ipc.new_file if kind == "file" else ipc.new_stream
    with new(path, table.schema, options=ipc.IpcWriteOptions(compression=compression)) as out:
        out.write_table(table, max_chunksize=300_000)
    size = path.stat().st_size

    extra = footprint(path, path.name, size, CAP).bytes - size

    if compression is None:
        assert extra == 0, "an uncompressed file is decoded in place"
    else:
        assert extra == pytest.approx(table.nbytes, rel=0.01)


def test_a_parquet_file_with_a_damaged_footer_counts_its_size_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "damaged.parquet"
    pq.write_table(pa.table({"x": np.arange(1000.0)}), path)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[-8 - footer:-8] = b"\xff" * footer  # pyarrow raises OSError for this one
    path.write_bytes(bytes(data))

    assert footprint(path, path.name, len(data), CAP) == Footprint(len(data))


@pytest.mark.parametrize("name", ["bad.npz", "bad.parquet", "bad.arrow"])
def test_a_file_that_is_not_what_its_name_says_counts_its_size_on_disk(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"not that format at all\n" * 100)

    found = footprint(path, name, 2300, CAP)

    assert (found.bytes, found.unbounded) == (2300, "")


def test_only_compressed_formats_are_measured_by_the_service() -> None:
    assert all(measured(n) for n in ("a.csv.gz", "a.NPZ", "a.parquet", "a.arrow"))
    # An .npy's header is read by its worker (`compute/bounded.check_npy`), not the service.
    assert not any(measured(n) for n in ("a.csv", "a.jsonl", "a.npy"))


@pytest.mark.parametrize(("dtype", "per_value"), [
    ("<i1", 1 + 8), ("<f8", 8 + 8), ("|S0", 0 + 56), ("<U3", 12 + 12 + 56),
    ([("x", "<i4"), ("y", "<f8")], 12 + 8 + 8),
])
def test_an_npy_counts_its_array_and_what_its_values_become_in_a_table(
    tmp_path: Path, dtype: object, per_value: int
) -> None:
    path = tmp_path / "a.npy"
    with path.open("wb") as out:
        np.lib.format.write_array_header_1_0(
            out, {"descr": dtype, "fortran_order": False, "shape": (1000, 3)}
        )
    size = path.stat().st_size

    found = of_bytes(path.name, path.read_bytes())

    assert found.bytes == size + 3000 * per_value


@pytest.mark.parametrize("header", [
    b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',}\n" + b"\0" * 16,  # cut short
    b"\x93NUMPY\x01\x00\x46\x00{'descr': '<f8', 'fortran_order': False, 'shape': (-10000000,), }"
    b"          \n",  # a negative size, which numpy's header reader lets through
], ids=["cut-short", "negative-shape"])
def test_an_npy_header_that_is_no_header_counts_the_file_as_it_is_on_disk(
    tmp_path: Path, header: bytes
) -> None:
    path = tmp_path / "bad.npy"
    path.write_bytes(header)
    size = path.stat().st_size

    found = of_bytes(path.name, path.read_bytes())

    assert (found.bytes, found.unbounded) == (size, ""), "the decoder reports what is wrong"
