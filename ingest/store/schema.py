"""One schema per table: each table's schema, versioned in the ledger, and the parts
that must meet it before they are visible.

Called in the committer's thread (and at start-up in a thread), never on the
event loop, except `specs`, which only reads what is already in memory.

Whenever a reader can list a table, all of its parts have the identical Arrow
schema. A worker fits each file to the table's schema as it knew it when the
task left; at commit, a part that brings a new column or a wider type first
widens the table: every committed part is rewritten to the wider schema,
atomically for readers, and the new version is recorded; then the part is
published. A part encoded against an older schema is fitted to the current one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import Config
from ..conform import fit
from ..jobs import EncodedPart, TableSpec
from ..widen import IDENTITY, merge_schemas
from .crashpoints import CrashPlan
from .layout import Layout
from .ledger import Ledger
from .parts import StagedPart

log = logging.getLogger("ingest.schema")

Part = EncodedPart | StagedPart


def to_bytes(schema: pa.Schema) -> bytes:
    data: bytes = schema.serialize().to_pybytes()
    return data


def from_bytes(data: bytes) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(data))


def same(a: pa.Schema, b: pa.Schema) -> bool:
    """Identical names, order and types, and the same untyped marks on fields."""
    equal: bool = a.remove_metadata().equals(b.remove_metadata(), check_metadata=True)
    return equal


class Schemas:
    """Each table's current schema, loaded from the ledger at start-up."""

    def __init__(self, config: Config, current: dict[str, tuple[int, bytes]]):
        self.config = config
        self._current = dict(current)  # table -> (version, IPC bytes)

    def specs(self, tables: Iterable[str]) -> tuple[TableSpec, ...]:
        """What a task's worker needs to know of its tables. Called on the event loop."""
        specs = []
        for name in sorted(tables):
            version, schema = self._current.get(name, (0, None))
            hints = self.config.table(name).columns
            specs.append(TableSpec(name, hints, schema, version))
        return tuple(specs)

    def version(self, table: str) -> int:
        return self._current.get(table, (0, b""))[0]

    def schema(self, table: str) -> pa.Schema | None:
        found = self._current.get(table)
        return from_bytes(found[1]) if found else None

    def settle(
        self, ledger: Ledger, layout: Layout, parts: Sequence[Part], crash: CrashPlan
    ) -> list[Part]:
        """Called in the committer's thread before `publish`: widen each part's table if
        the part needs it, and fit the part to its table's schema."""
        return [self._settle(ledger, layout, part, crash) for part in parts]

    def _settle(self, ledger: Ledger, layout: Layout, part: Part, crash: CrashPlan) -> Part:
        incoming = _schema_of(part)
        table = part.table
        current = self.schema(table)
        if current is None:
            self._record(ledger, table, incoming)
            return part
        if same(incoming, current):
            return part
        hinted = frozenset(name for name, _ in self.config.table(table).columns)
        tail = () if table == "features" else IDENTITY
        merged = merge_schemas(current, incoming, hinted, tail)
        if not same(merged, current):
            self._widen(ledger, layout, table, current, merged, crash)
        if same(incoming, merged):
            return part
        return _refit(part, merged, self.config.output.compression)

    def _record(self, ledger: Ledger, table: str, schema: pa.Schema) -> int:
        version = self.version(table) + 1
        data = to_bytes(schema.remove_metadata())
        ledger.add_schema(table, version, data)
        self._current[table] = (version, data)
        return version

    def _widen(
        self, ledger: Ledger, layout: Layout, table: str, old: pa.Schema, new: pa.Schema,
        crash: CrashPlan,
    ) -> None:
        from .compact import rewrite_table

        version = self.version(table) + 1
        for line in changes(old, new):
            log.warning("table %s schema v%d: %s", table, version, line)
        rewrite_table(ledger, layout, table, new, crash, schema_version=version)
        self._record(ledger, table, new)



def adopt(ledger: Ledger, layout: Layout) -> None:
    """Called at start-up, in a thread: the parts on disk are the truth for each table's
    schema. A crash may have come between a rewrite and the ledger's record of its
    schema, or the ledger may have been rebuilt: the schema of a committed part is
    then recorded as the table's next version."""
    current = ledger.schemas()
    committed = ledger.committed_paths()
    for folder in layout.table_dirs():
        part = next(
            (p for p in sorted(folder.glob("*/part-*.parquet"))
             if layout.relative_output(p) in committed),
            None,
        )
        if part is None:
            continue
        schema = pq.read_schema(part).remove_metadata()
        version, known = current.get(folder.name, (0, b""))
        if not known or not same(from_bytes(known), schema):
            ledger.add_schema(folder.name, version + 1, to_bytes(schema))


def changes(old: pa.Schema, new: pa.Schema) -> list[str]:
    """One line per column that a widening adds or retypes."""
    lines = []
    before = {f.name: f for f in old}
    for field in new:
        if field.name not in before:
            lines.append(f"column {field.name!r} added as {field.type}")
        elif not same(pa.schema([before[field.name]]), pa.schema([field])):
            was = before[field.name].type
            lines.append(f"column {field.name!r} widened from {was} to {field.type}")
    return lines


def _schema_of(part: Part) -> pa.Schema:
    if part.schema:
        return from_bytes(part.schema)
    if isinstance(part, StagedPart):
        return pq.read_schema(part.temp).remove_metadata()
    return pq.read_schema(pa.py_buffer(part.data)).remove_metadata()


def _refit(part: Part, schema: pa.Schema, compression: str) -> Part:
    """A part encoded against an older schema of its table, rewritten to the current one."""
    from ..compute.encode import to_parquet

    source = part.temp if isinstance(part, StagedPart) else pa.py_buffer(part.data)
    table = pq.read_table(source)
    footer = dict(table.schema.metadata or {})
    data = to_parquet(fit(table.replace_schema_metadata(None), schema), compression, footer)
    if isinstance(part, EncodedPart):
        return replace(part, data=data, schema=to_bytes(schema))
    temp = Path(f"{part.temp}.fit")
    temp.write_bytes(data)
    temp.replace(part.temp)
    return replace(part, durable=False, schema=to_bytes(schema))
