"""Gzip decompressed a bounded piece at a time: what gzip.decompress reads, never more at once."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import pytest

from ingest.inflate import GzipError, Inflater, inner_name, plain_size


def inflate_all(data: bytes, feed: int, piece: int) -> tuple[bytes, int]:
    """Everything, fed `feed` bytes at a time and read `piece` bytes at a time;
    and the largest piece any read returned."""
    inflater, out, largest = Inflater(), [], 0
    for start in range(0, len(data), feed):
        inflater.feed(data[start:start + feed])
        while got := inflater.read(piece):
            largest = max(largest, len(got))
            out.append(got)
    while got := inflater.read(piece):
        largest = max(largest, len(got))
        out.append(got)
    inflater.close()
    return b"".join(out), largest


@pytest.mark.parametrize(("feed", "piece"), [(1, 7), (100, 1 << 10), (1 << 20, 1 << 16)])
def test_members_fed_in_any_chunks_read_as_gzip_decompress_reads_them(
    feed: int, piece: int
) -> None:
    text = b"".join(b"%d,%d\n" % (i, i * i) for i in range(20_000))
    data = gzip.compress(text) + gzip.compress(b"") + gzip.compress(text[:999]) + b"\0" * 8

    plain, largest = inflate_all(data, feed, piece)

    assert plain == gzip.decompress(data)
    assert largest <= piece


@pytest.mark.parametrize(("feed", "piece"), [(1, 3), (37, 100), (1 << 20, 1 << 20)])
def test_many_tiny_members_with_padding_between_read_as_gzip_decompress_reads_them(
    feed: int, piece: int
) -> None:
    # A writer that opens the file in append mode for every record makes a member of each.
    members = [gzip.compress(b"%d,%d\n" % (i, i * i)) for i in range(3_000)]
    members[100:100] = [b"\0" * 5, gzip.compress(b""), b"\0"]
    data = b"".join(members)

    plain, largest = inflate_all(data, feed, piece)

    assert plain == gzip.decompress(data)
    assert largest <= piece


def test_a_thousandfold_expansion_comes_out_no_larger_than_asked() -> None:
    data = gzip.compress(b"0" * (64 << 20), compresslevel=9)
    assert len(data) < (64 << 10)
    inflater = Inflater()
    inflater.feed(data)

    sizes = []
    while got := inflater.read(1 << 20):
        sizes.append(len(got))

    assert sum(sizes) == 64 << 20
    assert max(sizes) == 1 << 20


@pytest.mark.parametrize(
    "data",
    [gzip.compress(os.urandom(5000))[:-20], b"plain text, not gzip\n" * 10],
    ids=["truncated", "not gzip"],
)
def test_a_stream_that_is_not_complete_gzip_raises_with_an_offset(data: bytes) -> None:
    inflater = Inflater()
    inflater.feed(data)
    with pytest.raises(GzipError, match="not a complete gzip stream") as caught:
        while inflater.read(1 << 10):
            pass
        inflater.close()
    assert 0 <= caught.value.offset <= len(data)


def test_plain_size_counts_to_the_cap_and_no_further(tmp_path: Path) -> None:
    path = tmp_path / "zeros.csv.gz"
    path.write_bytes(gzip.compress(b"0\n" * (16 << 20)))

    assert plain_size(path, 1 << 40) == 32 << 20
    assert (1 << 20) < plain_size(path, 1 << 20) <= (3 << 20)


def test_plain_size_stops_at_bytes_that_are_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    good = gzip.compress(b"a,b\n1,2\n")
    path.write_bytes(good + b"garbage after the member")
    with pytest.raises(zlib.error):
        zlib.decompress(b"garbage", 31)
    assert plain_size(path, 1 << 20) == 8


def test_inner_name_is_what_the_file_holds() -> None:
    assert inner_name("a/b.CSV.GZ") == "a/b.CSV"
    assert inner_name("b.csv") == "b.csv"


def test_bytes_that_are_not_gzip_after_padding_are_reported_where_they_are() -> None:
    member = gzip.compress(b"a,b\n1,2\n")
    data = member + b"\0" * 100 + b"not gzip"
    inflater = Inflater()
    inflater.feed(data)
    assert inflater.read(1 << 10) == b"a,b\n1,2\n"
    with pytest.raises(GzipError) as caught:
        inflater.read(1 << 10)
    assert caught.value.offset == len(member) + 100
