"""Taking a duplicate's rows out of its task's parts: real worker output, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.compute.task import process
from ingest.config import Features
from ingest.jobs import EncodedPart, Job, Task, WrittenPart
from ingest.store.parts import StagedPart
from ingest.store.strip import split, without

A = b"timestamp,temp,station\n1,20.5,x\n2,,y\n3,21.0,x\n"
B = b"timestamp,temp,station\n4,19.5,z\n5,18.0,z\n"


def _parts(tmp_path: Path, staged: bool) -> list[EncodedPart | StagedPart]:
    jobs = (Job("a.csv", "", A), Job("copy.csv", "", A), Job("b.csv", "", B))
    stage = str(tmp_path / "task-1") if staged else None
    result = process(Task(jobs, Features(), stage=stage))
    assert [o.failure for o in result.outcomes] == [None, None, None]
    assert result.outcomes[0].sha256 == result.outcomes[1].sha256 != result.outcomes[2].sha256
    return [StagedPart.written(p) if isinstance(p, WrittenPart) else p for p in result.parts]


def _read(part: EncodedPart | StagedPart) -> pa.Table:
    source = part.temp if isinstance(part, StagedPart) else pa.BufferReader(part.data)
    return pq.read_table(source)


@pytest.mark.parametrize("staged", [False, True], ids=["bytes", "staged"])
def test_a_copy_is_taken_out_of_every_part_footer_and_all(tmp_path: Path, staged: bool) -> None:
    parts = _parts(tmp_path, staged)
    before = {p.table: _read(p) for p in parts}

    kept = without(parts, {"copy.csv"}, "zstd")

    assert [p.table for p in kept] == [p.table for p in parts]
    for part in kept:
        table = _read(part)
        old = before[part.table]
        assert table.schema.remove_metadata().equals(old.schema.remove_metadata())
        assert part.sources == ("a.csv", "b.csv")
        names = table["source_file"].to_pylist()
        assert "copy.csv" not in names
        assert table.to_pylist() == [
            row for row in old.to_pylist() if row["source_file"] != "copy.csv"
        ]
        footer = json.loads((table.schema.metadata or {})[b"ingest.sources"])
        assert [name for name, _, _ in footer] == ["a.csv", "b.csv"]


@pytest.mark.parametrize("staged", [False, True], ids=["bytes", "staged"])
def test_a_part_of_nothing_but_copies_is_dropped(tmp_path: Path, staged: bool) -> None:
    parts = _parts(tmp_path, staged)

    assert without(parts, {"a.csv", "copy.csv", "b.csv"}, "zstd") == []
    assert list(tmp_path.iterdir()) == [], "its staged files are removed"


def test_parts_without_a_copy_are_left_as_they_are(tmp_path: Path) -> None:
    parts = _parts(tmp_path, staged=True)
    stamps = [p.temp.stat().st_mtime_ns for p in parts if isinstance(p, StagedPart)]

    assert without(parts, {"elsewhere.csv"}, "zstd") == parts
    assert [p.temp.stat().st_mtime_ns for p in parts if isinstance(p, StagedPart)] == stamps


@pytest.mark.parametrize("staged", [False, True], ids=["bytes", "staged"])
def test_a_split_puts_each_input_s_rows_on_its_side_and_loses_none(
    tmp_path: Path, staged: bool
) -> None:
    parts = _parts(tmp_path, staged)
    before = {p.table: _read(p) for p in parts}

    ones, others = split(parts, {"a.csv"}, "zstd")

    assert [p.table for p in ones] == [p.table for p in others] == [p.table for p in parts]
    for side, names in ((ones, ["a.csv"]), (others, ["copy.csv", "b.csv"])):
        for part in side:
            table = _read(part)
            assert part.sources == tuple(names)
            assert table.to_pylist() == [
                row for row in before[part.table].to_pylist() if row["source_file"] in names
            ]
            footer = json.loads((table.schema.metadata or {})[b"ingest.sources"])
            assert [name for name, _, _ in footer] == names
    if staged:
        temps = [p.temp for p in ones + others if isinstance(p, StagedPart)]
        assert len(set(temps)) == len(temps) == 2 * len(parts), "each half has its own file"
        assert sorted(tmp_path.iterdir()) == sorted(temps)


def test_a_part_of_one_side_only_goes_to_it_as_it_is(tmp_path: Path) -> None:
    parts = _parts(tmp_path, staged=True)
    ones, others = split(parts, {"a.csv", "copy.csv", "b.csv"}, "zstd")
    assert ones == parts
    assert others == []


def test_a_split_that_fails_leaves_the_parts_as_they_were(tmp_path: Path) -> None:
    parts = _parts(tmp_path, staged=True)
    before = {p.temp: p.temp.read_bytes() for p in parts if isinstance(p, StagedPart)}
    last = parts[-1]
    assert isinstance(last, StagedPart)
    broken = StagedPart(last.table, tmp_path / "gone.parquet", False, last.schema, last.sources)

    with pytest.raises(FileNotFoundError):
        split([*parts[:-1], broken], {"a.csv"}, "zstd")

    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before, "nothing written is left"
