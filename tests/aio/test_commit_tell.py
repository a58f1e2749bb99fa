"""A second signal exits at once: the files the commit under way has committed are told
first, by the commit's own record of them, since the loop that would tell them never
runs again. A real ledger, real files and the parts the worker's own function makes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from pathlib import Path
from typing import Any

from ingest.aio.commit import Aside, TaskOutput
from ingest.compute.task import process
from ingest.config import Features
from ingest.files import DropFile, mtime_ns
from ingest.jobs import Job, Task
from ingest.store.parts import Accepted

from .test_commit_reread import TEXT, _committer, _output


def test_files_committed_by_the_commit_under_way_are_told_before_an_exit_at_once(
    tmp_path: Path,
) -> None:
    committer, ledger, layout, told = _committer(tmp_path)
    for name in ("a.csv", "b.csv"):
        committer.add(_output(layout, name, TEXT.replace(b"x", name.encode())))
    copy = _output(layout, "c.csv", TEXT.replace(b"x", b"a.csv")).accepted[0]
    committer.set_aside(Aside(copy.file, copy.sha256, "duplicate", duplicate_of="a.csv"))
    # What the flush's thread does; its loop is held by the signal's handler, and has
    # told nothing.
    committer._commit(committer._pending)
    assert told == []

    committer.tell_committed_now()
    ledger.close()
    assert told == [("ingested", "a.csv"), ("ingested", "b.csv"), ("duplicate", "c.csv")]


def test_files_a_flush_has_told_are_not_told_again(tmp_path: Path) -> None:
    committer, ledger, layout, told = _committer(tmp_path)
    committer.add(_output(layout, "a.csv", TEXT))
    assert asyncio.run(committer.flush())
    committer.tell_committed_now()
    ledger.close()
    assert told == [("ingested", "a.csv")]


def test_an_output_told_in_part_when_the_signal_comes_is_told_the_rest_of(
    tmp_path: Path,
) -> None:
    """Its files are told 64 at a time, the loop let go in between: a second signal there
    left the rest of the output untold."""
    committer, ledger, layout, told = _committer(tmp_path)
    names = [f"f{i:03d}.csv" for i in range(150)]
    jobs, files = [], []
    for i, name in enumerate(names):
        data = f"id,v\n{i},{i * 2}\n".encode()
        path = layout.drop / name
        path.write_bytes(data)
        st = path.stat()
        files.append(DropFile(path, name, st.st_size, mtime_ns(st), time.time(), 0.0))
        jobs.append(Job(name, hashlib.sha256(data).hexdigest(), data))
    result = process(Task(tuple(jobs), Features()))
    committer.add(TaskOutput([
        Accepted(file, job.sha256, outcome.rows, dialect=outcome.dialect.describe())
        for file, job, outcome in zip(files, jobs, result.outcomes, strict=True)
        if outcome.dialect is not None
    ], list(result.parts)))
    told_by_flush = committer.on_resolved
    at_exit: list[str] = []

    def second_signal() -> None:  # as the loop runs the handler: between two batches
        committer.tell_committed_now()
        at_exit.extend(name for _, name in told)
        flushing.cancel()  # the process exits: nothing more is told

    def resolved(event: str, batch: Any, unpaused: Any = ()) -> None:
        told_by_flush(event, batch, unpaused)
        if len(told) == 64:
            asyncio.get_running_loop().call_soon(second_signal)

    committer.on_resolved = resolved  # type: ignore[method-assign]

    async def flush() -> None:
        nonlocal flushing
        flushing = asyncio.ensure_future(committer.flush())
        with contextlib.suppress(asyncio.CancelledError):
            await flushing

    flushing: asyncio.Future[bool]
    asyncio.run(flush())
    ledger.close()
    assert at_exit == names
