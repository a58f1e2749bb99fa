"""A table's pinned CSV dialect reaches the ledger even when the first try to save it fails."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ingest.config import Config
from ingest.dialect import Dialect, dialect_to_json
from ingest.store.ledger import Ledger
from ingest.store.schema import Schemas


def test_a_pin_the_ledger_failed_to_save_is_saved_with_the_next_commit(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()  # made, with its tables, then opened where writes fail
    schemas = Schemas(Config(), {})
    schemas.pin("sensors", Dialect(delimiter=";", decimal=","), "a.csv")
    readonly = Ledger(path, read_only=True)
    with pytest.raises(sqlite3.OperationalError):
        schemas.save_pins(readonly)
    readonly.close()
    schemas.pin("events", Dialect(delimiter="\t"), "b.tsv")

    ledger = Ledger(path)
    schemas.save_pins(ledger)
    pinned = ledger.dialects()
    ledger.close()
    assert sorted(pinned) == ["events", "sensors"]
    assert Schemas(Config(), {}, pinned).spec("sensors").dialect == Dialect(
        delimiter=";", decimal=","
    )


def test_a_pin_of_one_column_gives_way_to_the_first_that_shows_a_delimiter(
    tmp_path: Path,
) -> None:
    """In the service and in the ledger, and across a restart; a pin that shows one stays,
    and so does a pin the ledger kept before pins said whether they showed one."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    schemas = Schemas(Config(), {})
    one = Dialect(delimited=False)
    semi = Dialect(delimiter=";", quote="")
    schemas.pin("ids", one, "a.csv")
    schemas.save_pins(ledger)
    schemas.pin("ids", one, "b.csv")  # one column again: nothing new
    schemas.pin("ids", semi, "c.csv")
    schemas.pin("ids", Dialect(delimiter="|", quote=""), "d.csv")  # too late
    schemas.save_pins(ledger)
    assert schemas.spec("ids").dialect == semi
    ledger.pin_dialects([("ids", dialect_to_json(Dialect(delimiter="|")), "d.csv")])
    assert Schemas(Config(), {}, ledger.dialects()).spec("ids").dialect == semi

    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:  # from before `delimited`
        db.execute("INSERT INTO dialects VALUES ('old', '{\"delimiter\": \",\"}', 'x.csv', 0)")
    restarted = Schemas(Config(), {}, ledger.dialects())
    restarted.pin("old", semi, "y.csv")
    restarted.save_pins(ledger)
    assert Schemas(Config(), {}, ledger.dialects()).spec("old").dialect == Dialect()
    ledger.close()
