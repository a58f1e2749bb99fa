"""The four folders are distinct and none is inside another: a config error otherwise, before
anything is created or moved."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from ingest.config import Config, Paths
from ingest.errors import ConfigError
from ingest.folders import check_distinct

from .conftest import Folder, write_csv

KEYS = ("drop", "output", "quarantine", "archive")
# Every ordered pair (inner, outer): `inner` is configured inside `outer`.
NESTED = list(itertools.permutations(KEYS, 2))


def _paths(**chosen: str) -> dict[str, str]:
    return {key: chosen.get(key, f"{key}_folder") for key in KEYS}


def _tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.parametrize(("inner", "outer"), NESTED)
def test_a_folder_inside_another_exits_2_naming_both_keys_and_moves_nothing(
    folder: Folder, inner: str, outer: str
) -> None:
    paths = _paths(**{outer: "data", inner: "data/inner"})
    folder.write_config(paths=paths, watch={"settle_ms": 0})
    drop = folder.root / paths["drop"]
    write_csv(drop / "a.csv", rows=10, seed=1)
    before = _tree(folder.root)

    result = folder.ingest("once", timeout=60)

    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert (
        f'[paths] {inner} = "{folder.root / "data" / "inner"}" is inside'
        f' [paths] {outer} = "{folder.root / "data"}"'
    ) in line
    assert _tree(folder.root) == before, "nothing created, moved or archived"


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(KEYS, 2)))
def test_two_keys_naming_one_folder_are_a_config_error(first: str, second: str) -> None:
    same = Path("/srv/ingest/shared")
    paths = {key: Path(f"/srv/ingest/{key}") for key in KEYS} | {first: same, second: same}
    with pytest.raises(ConfigError) as caught:
        check_distinct(Config(paths=Paths(**paths)))
    assert str(caught.value).startswith(
        f'[paths] {first} = "{same}" is the same folder as [paths] {second} = "{same}"'
    )


def test_a_symlink_that_leads_into_the_drop_folder_is_resolved(folder: Folder) -> None:
    (folder.drop / "out").mkdir()
    os.symlink(folder.drop / "out", folder.root / "output_link")
    folder.write_config(paths={"output": "output_link"}, watch={"settle_ms": 0})
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    before = _tree(folder.root)

    result = folder.ingest("once", timeout=60)

    assert result.returncode == 2, result.stderr
    assert f'[paths] output = "{folder.drop / "out"}" is inside' in result.stderr
    assert f'[paths] drop = "{folder.drop}"' in result.stderr
    assert _tree(folder.root) == before


def test_the_output_flag_is_checked_too(folder: Folder) -> None:
    result = folder.ingest("once", "--output", str(folder.drop / "out"), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "[paths] output" in result.stderr and "is inside [paths] drop" in result.stderr
    assert not (folder.drop / "out").exists()


def test_status_refuses_nested_folders_as_well(folder: Folder) -> None:
    folder.write_config(paths={"archive": "drop/archive"})
    result = folder.ingest("status", timeout=60)
    assert result.returncode == 2
    assert "[paths] archive" in result.stderr and "[paths] drop" in result.stderr


def test_siblings_with_a_common_prefix_are_not_nested() -> None:
    paths = Paths(Path("/d/data"), Path("/d/data_out"), Path("/d/data-q"), Path("/d/data.a"))
    check_distinct(Config(paths=paths))


def test_the_default_folders_are_distinct(folder: Folder) -> None:
    write_csv(folder.drop / "a.csv", rows=10, seed=1)
    result = folder.ingest("once", timeout=60)
    assert result.returncode == 0, result.stderr
