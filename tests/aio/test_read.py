"""Reading a group of small files in one hop: each file's bytes, or one byte more than
the size it settled at when it grew, or a shorter read when it shrank, or its error."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from ingest import shared
from ingest.aio import read
from ingest.aio.read import read_files, read_files_into, read_into_segment

# (what the file holds, the size it settled at)
CASES = [
    (b"a,b\n1,2\n", 8),  # as settled
    (b"", 0),  # empty
    (b"a,b\n1,2\n3,4\n", 8),  # grew: one byte more is read, no more
    (b"a,b\n", 8),  # shrank
    (b"x" * 300_000, 300_000),  # larger than one read might return
]


def _write(tmp_path: Path) -> tuple[list[Path], list[int]]:
    paths = []
    for i, (content, _) in enumerate(CASES):
        path = tmp_path / f"f{i}.csv"
        path.write_bytes(content)
        paths.append(path)
    paths.append(tmp_path / "vanished.csv")
    return paths, [size for _, size in CASES] + [5]


def test_files_read_whole_return_their_bytes_or_one_byte_more(tmp_path: Path) -> None:
    paths, sizes = _write(tmp_path)
    read = asyncio.run(read_files(paths, sizes))
    expected = [content[: size + 1] for content, size in CASES]
    assert read[:-1] == expected
    assert isinstance(read[-1], FileNotFoundError)


def test_files_read_into_one_buffer_give_their_lengths_and_bytes(tmp_path: Path) -> None:
    paths, sizes = _write(tmp_path)
    buffer = bytearray(b"?" * (sum(sizes) + 1))
    view = memoryview(buffer)
    lengths = asyncio.run(read_files_into(paths, view, sizes))
    assert lengths[:-1] == [min(len(content), size + 1) for content, size in CASES]
    assert isinstance(lengths[-1], FileNotFoundError)
    offset = 0
    for content, size in CASES:
        kept = min(len(content), size)
        # A file's bytes, up to the size it settled at; nothing past its slice is touched.
        assert buffer[offset:offset + kept] == content[:kept]
        assert bytes(buffer[offset + kept:offset + size]) == b"?" * (size - kept)
        offset += size
    assert buffer[-6:] == b"?" * 6
    view.release()


@pytest.mark.parametrize("size", [0, 1, 7])
def test_a_file_that_grew_from_its_settled_size_is_one_byte_longer(
    tmp_path: Path, size: int
) -> None:
    path = tmp_path / "grew.csv"
    path.write_bytes(b"y" * (size + 50))
    (data,) = asyncio.run(read_files([path], [size]))
    assert data == b"y" * (size + 1)
    buffer = bytearray(size)
    (length,) = asyncio.run(read_files_into([path], memoryview(buffer), [size]))
    assert length == size + 1 and buffer == b"y" * size


def _splicing_now_and_then(monkeypatch: pytest.MonkeyPatch) -> None:
    """sendfile as a file system that splices some calls and refuses others (EINVAL), so
    that the copy alternates it with a read and a write of 4 KB; only the file system is
    stood in for, since none here refuses to splice."""
    real = os.sendfile
    calls = 0

    def sendfile(out: int, fd: int, at: int, count: int) -> int:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(out, fd, at, min(count, 1000))

    monkeypatch.setattr(os, "sendfile", sendfile)
    monkeypatch.setattr(read, "COPY_CHUNK_BYTES", 4096)


@pytest.mark.parametrize(
    ("fresh", "splices"), [(True, True), (True, False), (False, True)],
    ids=["new segment", "new segment, splicing now and then", "kept segment"],
)
def test_files_read_into_a_shared_segment_give_their_lengths_and_bytes(
    tmp_path: Path, fresh: bool, splices: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new segment is filled with sendfile (or, where the file system refuses it, a read
    and a write), a kept one through its mapping: the same lengths and bytes each way, and
    nothing written past a file's place."""
    if not splices:
        _splicing_now_and_then(monkeypatch)
    paths, sizes = _write(tmp_path)
    segment = shared.create("ingest-test-" + tmp_path.name[-8:] + "-", sum(sizes) + 1)
    assert segment is not None
    try:
        view = shared.view(segment)
        view[:] = b"?" * len(view)
        lengths = asyncio.run(read_into_segment(paths, segment, sizes, fresh))
        assert lengths[:-1] == [min(len(content), size + 1) for content, size in CASES]
        assert isinstance(lengths[-1], FileNotFoundError)
        offset = 0
        for content, size in CASES:
            kept = min(len(content), size)
            assert bytes(view[offset:offset + kept]) == content[:kept]
            assert bytes(view[offset + kept:offset + size]) == b"?" * (size - kept)
            offset += size
        assert bytes(view[-6:]) == b"?" * 6
        view.release()
    finally:
        shared.remove(segment)
