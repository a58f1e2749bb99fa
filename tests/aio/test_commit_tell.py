"""A second signal exits at once: the files the commit under way has committed are told
first, by the commit's own record of them, since the loop that would tell them never
runs again. A real ledger, real files and the parts the worker's own function makes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ingest.aio.commit import Aside

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
