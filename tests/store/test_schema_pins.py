"""A table's pinned CSV dialect reaches the ledger even when the first try to save it fails."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ingest.config import Config
from ingest.dialect import Dialect
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
