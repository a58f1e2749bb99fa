"""The CSV corpus and fuzzed CSVs through a real `ingest once`: ingested or quarantined, never
fatal, with the rows DuckDB's auto-detection reads."""

from __future__ import annotations

import json
import random
import shutil
from typing import Any

import duckdb
import pytest

from ..compute.test_dialects import CORPUS, DECIMAL_COMMA, FILES, NOT_UTF8
from ..compute.test_fuzzed_csv import PIECES
from ..conftest import Folder

ONCE = {"watch": {"settle_ms": 0}, "pipeline": {"workers": 2}, "output": {"flush_s": 0.2}}


def table_of(name: str) -> str:
    """Each corpus file has a table of its own: the first file of a table pins its dialect."""
    return "t_" + "".join(c if c.isalnum() else "_" for c in name.lower().removesuffix(".csv"))


def own_tables(names: list[str]) -> dict[str, dict[str, object]]:
    return {f"tables.{table_of(name)}": {"patterns": [name]} for name in names}


def duckdb_rows(name: str) -> int:
    options = ", decimal_separator = ','" if name in DECIMAL_COMMA else ""
    path = (CORPUS / name).as_posix()
    ((count,),) = duckdb.sql(f"SELECT count(*) FROM read_csv('{path}'{options})").fetchall()
    return int(count)


def test_the_corpus_is_ingested_with_duckdbs_rows_and_latin1_is_quarantined(
    folder: Folder,
) -> None:
    for name in FILES:
        shutil.copy(CORPUS / name, folder.drop / name)
    folder.write_config(**ONCE, **own_tables(list(FILES)))

    result = folder.ingest("once", timeout=120)

    assert result.returncode == 3, result.stderr
    good = sorted(set(FILES) - NOT_UTF8)
    counts = {}
    for name in good:
        if folder.parts(table_of(name)):
            counts.update(folder.query(
                f"SELECT source_file, count(*) FROM {table_of(name)} GROUP BY 1"
            ))
    expected = {name: duckdb_rows(name) for name in good if duckdb_rows(name)}
    assert counts == expected
    report = json.loads((folder.quarantine / "latin1.csv.error.json").read_text())
    assert "UTF-8" in report["message"] and report["offset"] == 13
    status = json.loads(folder.ingest("status", "--json").stdout)
    assert status["counts"]["ingested"] == len(good)
    assert status["counts"]["quarantined"] == 1
    assert folder.query(
        f"SELECT column0, column2 FROM {table_of('headerless_pipe.csv')}"
        " ORDER BY column0"
    ) == [(123, "text1"), (345, "text2"), (567, "text3")]
    assert folder.query(
        f"SELECT Temperatur FROM {table_of('semicolon_decimal_comma.csv')} ORDER BY Datum"
    ) == [(12.5,), (-1.25,), (0.75,)]
    assert folder.query(
        f"SELECT address FROM {table_of('quoted_newlines.csv')} ORDER BY id"
    ) == [("12 High St\nFlat 2",), ("Main Rd 4",), ("Old Lane\n\nBack door",)]
    features = folder.query(
        "SELECT source_column, mean FROM features WHERE source_file = 'notes_before_header.csv'"
    )
    assert features == [("value", 1.75)]


def test_fuzzed_csvs_are_each_ingested_or_quarantined_and_once_exits_0_or_3(
    folder: Folder,
) -> None:
    rng = random.Random(12)
    names = []
    for index in range(8):
        header = rng.choice([b"a,b,c\n", b"a;b;c\n", b"", b"x|y\n", b"# note\n"])
        body = b"".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 150)))
        names.append(f"fuzz{index}.csv")
        (folder.drop / names[-1]).write_bytes(header + body)
    folder.write_config(**ONCE)

    result = folder.ingest("once", timeout=120)

    assert result.returncode in (0, 3), result.stderr
    status = json.loads(folder.ingest("status", "--json").stdout)
    counts = status["counts"]
    assert counts["ingested"] + counts["quarantined"] + counts["duplicate"] == len(names)
    reports = {p.name.removesuffix(".error.json") for p in folder.quarantine.glob("*.json")}
    assert len(reports) == counts["quarantined"]
    assert not reports & {str(f) for (f,) in _ingested(folder)}, "a file both ways"
    assert reports <= set(names)


def _ingested(folder: Folder) -> list[tuple[object, ...]]:
    if not folder.parts("records"):
        return []
    return folder.query("SELECT DISTINCT source_file FROM records")


def test_each_files_dialect_is_logged_once_at_debug_level(folder: Folder) -> None:
    (folder.drop / "pipe.csv").write_bytes((CORPUS / "headerless_pipe.csv").read_bytes())
    (folder.drop / "euro.csv").write_bytes((CORPUS / "semicolon_decimal_comma.csv").read_bytes())
    folder.write_config(**ONCE, **own_tables(["pipe.csv", "euro.csv"]))

    result = folder.ingest("once", "--log-level", "DEBUG")

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if ": read as " in line]
    assert len(lines) == 2, lines
    assert any("DEBUG" in line and "pipe.csv: read as delimiter='|' quote=none header=no" in line
               for line in lines), lines
    assert any("euro.csv: read as delimiter=';'" in line and "decimal=','" in line
               for line in lines), lines


def test_the_first_file_of_a_table_pins_its_dialect_for_the_files_after_it(
    folder: Folder,
) -> None:
    folder.write_config(**ONCE)
    (folder.drop / "first.csv").write_bytes(b"a;b\n1;2,5\n3;4,5\n")
    assert folder.ingest("once").returncode == 0
    # Detected alone, this one is plain: read with the table's dialect, it still parses.
    (folder.drop / "second.csv").write_bytes(b"a;b\n5;6\n")
    # This one cannot be read with the table's ';': two columns become one.
    (folder.drop / "third.csv").write_bytes(b"a,b,c\n1,2,3\n")
    result = folder.ingest("once")
    assert result.returncode == 3, result.stderr

    assert folder.query("SELECT a, b FROM records ORDER BY a") == [(1, 2.5), (3, 4.5), (5, 6.0)]
    report = json.loads((folder.quarantine / "third.csv.error.json").read_text())
    assert "delimiter=';'" in report["message"], report["message"]
    explained = json.loads(folder.ingest("explain", "first.csv", "--json").stdout)
    assert "delimiter=';'" in explained["versions"][0]["dialect"]
    assert "decimal=','" in explained["versions"][0]["dialect"]


@pytest.mark.parametrize("first", ["whole", "in-blocks"])
def test_a_tables_first_file_of_one_column_pins_no_delimiter_the_first_that_shows_one_does(
    folder: Folder, first: str
) -> None:
    """A file of one column shows no delimiter: a later `;` file was quarantined for the
    `,` it was taken to pin. Read whole or in blocks; the first file that shows a delimiter
    pins it, for that run and the next. (Files of one column are never parsed together:
    only plain files, whose header shows a delimiter, are.)"""
    config: dict[str, Any] = dict(ONCE)
    if first == "in-blocks":
        config["pipeline"] = {**ONCE["pipeline"], "memory_mb": 64}  # over 16 MB: in blocks
    folder.write_config(**config)
    ids = b"".join(b"%d\n" % i for i in range(1, 3_000_000 if first == "in-blocks" else 3))
    (folder.drop / "ids.csv").write_bytes(b"id\n" + ids)
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    assert "pinned by ids.csv: delimiter=none (one column)" in done.stderr, done.stderr

    (folder.drop / "semi.csv").write_bytes(b"id;name\n-1;x\n-2;y\n")
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    assert "pinned by semi.csv: delimiter=';'" in done.stderr, done.stderr
    (folder.drop / "semi2.csv").write_bytes(b"id;name\n-3;z\n")
    (folder.drop / "comma.csv").write_bytes(b"id,name\n-4,w\n")
    done = folder.ingest("once")
    assert done.returncode == 3, done.stderr  # the table's delimiter is ';' now, for good
    assert folder.query("SELECT id, name FROM records WHERE id < 0 ORDER BY id DESC") == [
        (-1, "x"), (-2, "y"), (-3, "z"),
    ]
    assert (folder.quarantine / "comma.csv").exists()


def test_a_file_read_in_blocks_after_a_one_column_pin_is_cut_in_its_own_delimiter(
    folder: Folder,
) -> None:
    """The cutter of a file read in blocks was given the one-column pin's `,`: in a `;` file
    it took a quote opening a field for a literal one, cut a quoted field with a line end in
    it, and the file was quarantined ("a quoted field is never closed")."""
    folder.write_config(**{**ONCE, "pipeline": {**ONCE["pipeline"], "memory_mb": 64}})
    (folder.drop / "ids.csv").write_bytes(b"id\n1\n2\n")
    assert folder.ingest("once").returncode == 0
    rows = 400_000  # 19 MB: over a quarter of memory_mb, read in blocks
    (folder.drop / "semi.csv").write_bytes(b"id;note;k\n" + b"".join(
        b'%d;"note %d, first line\nsecond; line";%d\n' % (i, i, i % 7) for i in range(rows)
    ))
    done = folder.ingest("once")
    assert done.returncode == 0, done.stderr
    assert "reading it in blocks" in done.stderr
    assert folder.query(
        "SELECT count(*), count(DISTINCT note), max(k) FROM records WHERE source_file = 'semi.csv'"
    ) == [(rows, rows, 6)]
