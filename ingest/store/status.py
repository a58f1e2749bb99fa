"""`ingest status`: what the ledger and the drop folder say, without touching either."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pyarrow as pa

from ..config import Config
from ..files import mtime_ns
from ..logs import utf8
from ..selection import scan
from . import watch_mode
from .known import Key
from .layout import Layout
from .ledger import Ledger, check_not_lost

# The quarantined files the text shows, the newest: a screen, not a service's lifetime.
QUARANTINED_SHOWN = 20


def collect(config: Config) -> dict[str, Any]:
    layout = Layout.of(config)
    counts: dict[str, int] = {}
    vanished = 0
    last: float | None = None
    quarantined: list[dict[str, Any]] = []
    tables: dict[str, dict[str, int]] = {}
    # Every input in the drop folder the ledger does not hold is the backlog.
    waiting: list[Key] = []
    if layout.drop.exists():
        waiting = [
            (layout.relative(path), st.st_size, mtime_ns(st))
            for path, st in scan(layout.drop, config.watch.patterns)
        ]
    backlog = len(waiting)
    check_not_lost(layout, "there is nothing to count from")
    if layout.ledger.exists():
        ledger = Ledger(layout.ledger, read_only=True)
        try:
            counts = ledger.counts()
            vanished = ledger.vanished_count()
            last = ledger.last_ingest()
            quarantined = [
                {"file": r.path, "error": r.error, "message": r.message, "attempts": r.attempts}
                for r in ledger.quarantined()
            ]
            backlog -= len(ledger.states(waiting))
            tables = _tables(ledger)
        finally:
            ledger.close()
    if layout.delta:
        _add_delta_versions(layout, tables)
    return {
        # A byte that is not UTF-8 as \xNN, as the log writes names: JSON would carry it
        # as a lone surrogate (`\udce4`), which strict readers refuse.
        "drop": utf8(str(layout.drop)),
        "output": utf8(str(layout.output)),
        "counts": {s: counts.get(s, 0) for s in ("ingested", "duplicate", "quarantined")},
        # Not an input's fate, so not among the counts: files seen and gone before they
        # were read, which `ingest explain` shows.
        "vanished": vanished,
        "last_ingest": (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last is not None else None
        ),
        "backlog": backlog,
        "quarantined": quarantined,
        "tables": tables,
        # How a running `ingest run` hears the drop folder; None when none runs.
        "watcher": watch_mode.read(layout.state),
    }


def _tables(ledger: Ledger) -> dict[str, dict[str, int]]:
    """Each table's schema version, its column count and the inputs it holds."""
    try:
        files = ledger.files_per_table()
        schemas = ledger.schemas()
    except sqlite3.OperationalError:  # a ledger from before tables, opened read-only
        return {}
    files["features"] = sum(files.values())
    return {
        name: {
            "schema_version": version,
            "columns": len(pa.ipc.read_schema(pa.py_buffer(schema))),
            "files": files.get(name, 0),
        }
        for name, (version, schema) in sorted(schemas.items())
    }


def _add_delta_versions(layout: Layout, tables: dict[str, dict[str, int]]) -> None:
    """Each Delta table's log version and the last txn version of ours in it."""
    from . import delta

    for name, shown in tables.items():
        found = delta.open_table(layout, name)
        if found is not None:
            shown["delta_version"] = found.version()
            shown["delta_txn"] = delta.txn_version(layout, name)


def render(status: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(status, indent=2)
    c = status["counts"]
    lines = [
        f"drop:        {status['drop']}",
        f"output:      {status['output']}",
        f"ingested:    {c['ingested']}",
        f"duplicates:  {c['duplicate']}",
        f"quarantined: {c['quarantined']}",
        f"vanished:    {status['vanished']}",
        f"backlog:     {status['backlog']}",
        f"last ingest: {status['last_ingest'] or 'never'}",
        f"watcher:     {_watcher(status['watcher'])}",
    ]
    for name, t in status["tables"].items():
        delta = (
            f", Delta v{t['delta_version']} (txn {t['delta_txn']})" if "delta_version" in t else ""
        )
        lines.append(
            f"table {name}: schema v{t['schema_version']}, {t['columns']} columns,"
            f" {t['files']} files{delta}"
        )
    quarantined = status["quarantined"]
    if len(quarantined) > QUARANTINED_SHOWN:
        lines.append(
            f"  ... {len(quarantined) - QUARANTINED_SHOWN} quarantined before these:"
            " `ingest status --json` lists every one"
        )
    for q in quarantined[-QUARANTINED_SHOWN:]:
        lines.append(f"  {q['file']}: {q['error']}: {q['message']}")
    return "\n".join(lines)


def _watcher(watcher: dict[str, Any] | None) -> str:
    if watcher is None:
        return "not running"
    shown = f"{watcher['mode']} (pid {watcher['pid']}, since {watcher['since']})"
    if watcher.get("reason"):
        shown += f": {watcher['reason']}"
    if watcher.get("deaf"):
        shown += f"; hears nothing: {watcher['deaf']}"
    return shown
