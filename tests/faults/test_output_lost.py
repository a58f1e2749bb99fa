"""An output folder removed or moved away under a running writer: the writer stops
rather than commit beside a second writer that locked the new folder, or retry for ever."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from ..conftest import Folder, Service, wait_for, write_csv


@pytest.mark.parametrize("how", ["removed", "moved away"])
def test_a_writer_whose_output_folder_goes_stops_and_a_new_writer_commits_each_file_once(
    folder: Folder, service: Callable[..., Service], how: str
) -> None:
    # Its lock stayed on a file no other process finds: a second `once` locked a new one,
    # and the first went on committing into the new folder (rows twice), or retried a
    # commit into a missing one for ever.
    folder.write_config(watch={"settle_ms": 0}, pipeline={"workers": 1})
    svc = service()
    svc.wait_ready()
    expected = {"a.csv": len(write_csv(folder.drop / "a.csv", 5, 1))}
    wait_for(lambda: folder.rows_per_file() == expected, 30, "a.csv")
    if how == "removed":
        shutil.rmtree(folder.output)
    else:
        folder.output.rename(folder.root / "output.old")

    expected["b.csv"] = len(write_csv(folder.drop / "b.csv", 6, 2))
    code = svc.proc.wait(30)

    text = svc.text()
    assert code == 1, text
    assert f"the output folder {folder.output} was removed or replaced" in text, text
    assert "Traceback" not in text
    assert (folder.drop / "b.csv").exists(), "not committed: left for the next run"
    again = folder.ingest("once")
    assert again.returncode == 0, again.stderr
    assert folder.rows_per_file() == {"b.csv": 6}, "the new folder holds b.csv once"
