"""send = "paths": a worker reads a job's file itself, hashes it, and refuses one not as it settled.

Real files in tmp_path, run through `task.process` as a worker runs it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.aio.intake import path_job
from ingest.compute import inputs
from ingest.compute.task import process
from ingest.config import Features, parse
from ingest.files import DropFile, mtime_ns
from ingest.jobs import NOT_AS_SEEN, EncodedPart, Job, Task, TaskResult

CSV = b"timestamp,temperature\n1,20.5\n2,21.5\n3,22.5\n"


def _claimed(path: Path) -> Job:
    """A job with the file's path, its size and its sha256 to check."""
    data = path.read_bytes()
    return Job(
        path.name, hashlib.sha256(data).hexdigest(), b"", path=str(path), size=len(data),
    )


def _run(*jobs: Job) -> TaskResult:
    return process(Task(jobs, Features()))


def _records(result: TaskResult) -> list[dict[str, object]]:
    part = next(p for p in result.parts if p.table == "records")
    assert isinstance(part, EncodedPart)
    rows: list[dict[str, object]] = pq.read_table(io.BytesIO(part.data)).to_pylist()
    return rows


def test_a_worker_reads_the_file_at_the_path_it_is_sent_and_hashes_it(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(CSV)
    gz = tmp_path / "b.csv.gz"
    gz.write_bytes(gzip.compress(CSV))
    # As the service sends them: no sha256, the worker's to compute.
    jobs = [replace(_claimed(path), sha256="") for path in (tmp_path / "a.csv", gz)]

    result = _run(*jobs)

    assert [(o.rows, o.failure) for o in result.outcomes] == [(3, None), (3, None)]
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "a.csv", gz)]
    assert [o.sha256 for o in result.outcomes] == digests
    rows = _records(result)
    assert [r["temperature"] for r in rows] == [20.5, 21.5, 22.5] * 2
    assert [r["source_sha256"] for r in rows] == [digests[0]] * 3 + [digests[1]] * 3


@pytest.mark.parametrize(
    ("change", "error"),
    [
        # The same size, other bytes: only the sha256 tells them apart.
        (lambda p: p.write_bytes(CSV.replace(b"20.5", b"99.9")), "InputChanged"),
        (lambda p: p.write_bytes(CSV + b"4,23.5\n"), "InputChanged"),
        (lambda p: p.write_bytes(CSV[:-7]), "InputChanged"),
        (lambda p: p.unlink(), "InputVanished"),
        (lambda p: (p.unlink(), p.mkdir()), "InputUnreadable"),
        # Opened to read, a FIFO would wait for a writer for ever.
        (lambda p: (p.unlink(), os.mkfifo(p)), "InputUnreadable"),
    ],
    ids=["rewritten-same-size", "appended", "truncated", "deleted", "not-a-file", "fifo"],
)
def test_a_file_that_is_not_what_was_claimed_is_refused_and_never_encoded(
    tmp_path: Path, change: object, error: str
) -> None:
    good, victim = tmp_path / "good.csv", tmp_path / "victim.csv"
    good.write_bytes(CSV)
    victim.write_bytes(CSV)
    stat = victim.stat()
    claimed = _claimed(victim)
    change(victim)  # type: ignore[operator]
    if victim.is_file():  # as a careful forger would: size and mtime as they were seen
        os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    result = _run(_claimed(good), claimed)

    ok, refused = result.outcomes
    assert ok.failure is None and ok.rows == 3
    assert refused.failure is not None and refused.failure.error == error
    assert error in NOT_AS_SEEN  # resolved by the service, never quarantined
    assert refused.rows == 0
    # Only the good file's rows are in the task's parts.
    assert {r["source_file"] for r in _records(result)} == {"good.csv"}


def test_the_hash_pass_of_a_path_gives_its_sha256_and_length(tmp_path: Path) -> None:
    data = os.urandom(inputs.HASH_CHUNK_BYTES + 12_345)  # more than one chunk
    (tmp_path / "big.csv").write_bytes(data)
    assert inputs.sha256_of_path(str(tmp_path / "big.csv")) == (
        hashlib.sha256(data).hexdigest(), len(data)
    )
    (tmp_path / "empty.csv").write_bytes(b"")
    assert inputs.sha256_of_path(str(tmp_path / "empty.csv")) == (hashlib.sha256().hexdigest(), 0)
    with pytest.raises(FileNotFoundError):
        inputs.sha256_of_path(str(tmp_path / "gone.csv"))
    os.mkfifo(tmp_path / "fifo.csv")  # opened to read, it would wait for a writer for ever
    with pytest.raises(OSError, match="not a regular file"):
        inputs.sha256_of_path(str(tmp_path / "fifo.csv"))


@pytest.mark.parametrize("mtime_put_back", [False, True])
def test_a_file_written_again_at_its_size_before_its_worker_read_it(
    tmp_path: Path, mtime_put_back: bool
) -> None:
    """As the service sends a job: no sha256, the size and mtime it settled at. Written
    again at the same size, the file is refused for itself, as changed, rather than found
    changed at commit with every file of its task; with its mtime put back nothing can
    tell, and it is read as it is (README: a file rewritten in place)."""
    good, victim = tmp_path / "good.csv", tmp_path / "victim.csv"
    good.write_bytes(CSV)
    victim.write_bytes(CSV)
    settled = victim.stat()
    sent = [
        Job(p.name, "", b"", path=str(p), size=p.stat().st_size, mtime_ns=mtime_ns(p.stat()))
        for p in (good, victim)
    ]
    victim.write_bytes(CSV.replace(b"20.5", b"99.9"))
    later = settled.st_mtime_ns + (0 if mtime_put_back else 2_000_000_000)
    os.utime(victim, ns=(settled.st_atime_ns, later))

    ok, written = _run(*sent).outcomes

    assert ok.failure is None and ok.rows == 3
    if mtime_put_back:
        assert written.failure is None and written.rows == 3
        assert written.sha256 == hashlib.sha256(victim.read_bytes()).hexdigest()
    else:
        assert written.failure is not None and written.failure.error == "InputChanged"
        assert "written again" in written.failure.message
        assert written.rows == 0


@pytest.mark.parametrize(
    ("executor", "refused"),
    [("process", True), ("dask://local", True), ("dask://scheduler:8786", False)],
)
def test_only_a_local_worker_is_asked_to_check_the_mtime(
    tmp_path: Path, executor: str, refused: bool
) -> None:
    """Another machine's mount may keep mtimes coarser than the service's (sshfs, a CIFS
    share): its worker, asked to check one, would refuse every file as written again, and
    the service would offer it again, for ever. Such a job carries no mtime."""
    local = parse({"pipeline": {"executor": executor, "send": "paths"}}).pipeline.local_workers
    path = tmp_path / "a.csv"
    path.write_bytes(CSV)
    st = path.stat()
    file = DropFile(path, path.name, st.st_size, mtime_ns(st), 0.0, 0.0)
    job = path_job(file, "records", st.st_size, local)
    # As such a mount shows it: the same bytes, another mtime.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))

    [outcome] = _run(job).outcomes

    assert (outcome.failure is not None) is refused
    assert outcome.rows == (0 if refused else 3)
