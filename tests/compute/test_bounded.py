"""A compressed file is decoded in a worker no further than the service measured it."""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.compute.task import process
from ingest.config import Features
from ingest.footprint import of_bytes
from ingest.inflate import plain_size
from ingest.jobs import EncodedPart, Failure, Job, Task, TaskResult

CSV = b"t,x\n" + b"".join(b"%d,%d\n" % (i, i % 7) for i in range(10_000))


def run(data: bytes, in_memory: int, name: str = "a.csv.gz") -> TaskResult:
    job = Job(name, hashlib.sha256(data).hexdigest(), data, in_memory=in_memory)
    return process(Task((job,), Features()))


def failure(result: TaskResult) -> Failure:
    (outcome,) = result.outcomes
    assert outcome.failure is not None and not result.parts
    return outcome.failure


def test_a_measured_gzip_file_decodes_as_the_csv_it_holds() -> None:
    data = gzip.compress(CSV[:30_000]) + gzip.compress(CSV[30_000:]) + b"\0" * 4

    result = run(data, len(data) + len(CSV))

    (outcome,) = result.outcomes
    assert outcome.failure is None and outcome.rows == 10_000
    (records,) = [p for p in result.parts if p.table == "records"]
    assert isinstance(records, EncodedPart)
    table = pq.read_table(pa.BufferReader(records.data))
    assert table["x"].to_pylist() == [i % 7 for i in range(10_000)]


def test_a_file_that_expands_past_its_measure_is_refused_as_too_large() -> None:
    data = gzip.compress(CSV)

    found = failure(run(data, len(data) + len(CSV) - 1))

    assert found.error == "TooLarge"
    assert f"{len(CSV) - 1} bytes it was measured at" in found.message


def test_a_truncated_measured_gzip_file_is_a_decode_error_at_its_offset() -> None:
    data = gzip.compress(CSV)[:-12]

    found = failure(run(data, len(data) + len(CSV)))

    assert found.error == "DecodeError" and "gzip" in found.message
    assert found.offset is not None and 0 < found.offset <= len(data)


def _measured(data: bytes, tmp_path: Path) -> int:
    """What the service charges a gzip'd file: its bytes and what they decompress to."""
    path = tmp_path / "m.csv.gz"
    path.write_bytes(data)
    return len(data) + plain_size(path, 1 << 40)


def _flipped(data: bytes, at: int) -> bytes:
    damaged = bytearray(data)
    damaged[at] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize("damage", [
    lambda gz: gz[:-8] + b"\0\0\0\0" + gz[-4:],  # its CRC
    lambda gz: gz[:-4] + b"\1\0\0\0",  # its ISIZE
    lambda gz: _flipped(gz, len(gz) // 2),  # its deflated bytes
], ids=["crc", "isize", "deflate"])
def test_a_damaged_gzip_file_is_a_decode_error_not_too_large(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    for plain in (b"a,b\n1,x\n2,y\n", CSV):
        data = damage(gzip.compress(plain))

        found = failure(run(data, _measured(data, tmp_path)))

        assert found.error == "DecodeError" and "gzip" in found.message, found
        assert found.offset is not None


def test_an_npz_decodes_at_its_measure_and_is_refused_past_it() -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.arange(1000.0))
    data = buffer.getvalue()
    measure = of_bytes("a.npz", data).bytes
    assert measure > len(data) + 8000

    (fits,) = run(data, measure, "a.npz").outcomes
    grown = failure(run(data, measure - 1, "a.npz"))

    assert fits.failure is None and fits.rows == 1000
    assert grown.error == "TooLarge" and "rewritten in place" in grown.message


def test_an_npy_whose_header_claims_more_than_memory_mb_is_refused_before_it_is_read() -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|S0", "fortran_order": False, "shape": (30_000_000,)}
    )
    data = header.getvalue()  # 128 bytes: 30 million values of no width
    job = Job("nothing.npy", hashlib.sha256(data).hexdigest(), data)

    (outcome,) = process(Task((job,), Features(), memory_mb=64)).outcomes

    assert outcome.failure is not None and outcome.failure.error == "TooLarge"
    assert "more than memory_mb = 64 holds" in outcome.failure.message


def test_an_npy_within_memory_mb_is_read() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array(["a", "bc"]))
    data = buffer.getvalue()
    job = Job("t.npy", hashlib.sha256(data).hexdigest(), data)

    (outcome,) = process(Task((job,), Features(), memory_mb=1)).outcomes

    assert outcome.failure is None and outcome.rows == 2
