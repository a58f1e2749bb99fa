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
from typing import TYPE_CHECKING

from ..config import Config
from ..dialect import Dialect, dialect_from_json, dialect_to_json
from ..errors import ConfigError
from ..jobs import EncodedPart, TableSpec
from ..logs import shown
from .crashpoints import CrashPlan
from .layout import Layout
from .ledger import Ledger
from .parts import StagedPart

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("ingest.schema")

Part = EncodedPart | StagedPart

# pyarrow is loaded in the service's process only when a schema must be read: a table's
# parts that bring the schema it has (by their bytes, `Schemas.as_they_are`), or a new
# table's first, need none of it, and most commits are those.


def to_bytes(schema: pa.Schema) -> bytes:
    data: bytes = schema.serialize().to_pybytes()
    return data


def from_bytes(data: bytes) -> pa.Schema:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(data))


def same(a: pa.Schema, b: pa.Schema) -> bool:
    """Identical names, order and types, and the same untyped marks on fields. (A map's
    entries are named after its column in a schema read back from Parquet: not a change.)"""
    import pyarrow as pa

    a, b = a.remove_metadata(), b.remove_metadata()
    if a.equals(b, check_metadata=True):
        return True
    a, b = (pa.schema([_entries(f) for f in s]) for s in (a, b))
    equal: bool = a.equals(b, check_metadata=True)
    return equal


def _entries(field: pa.Field) -> pa.Field:
    import pyarrow as pa

    kind = field.type
    if pa.types.is_map(kind):
        kind = pa.map_(_entries(kind.key_field), _entries(kind.item_field))
    elif pa.types.is_list(kind):
        kind = pa.list_(_entries(kind.value_field))
    elif pa.types.is_struct(kind):
        kind = pa.struct([_entries(f) for f in kind])
    else:
        return field
    return field.with_type(kind)


class Schemas:
    """Each table's current schema and pinned CSV dialect, loaded from the ledger at
    start-up. The first CSV file of a table pins the dialect the rest are read with."""

    def __init__(
        self, config: Config, current: dict[str, tuple[int, bytes]],
        dialects: dict[str, str] | None = None,
    ):
        self.config = config
        self._current = dict(current)  # table -> (version, IPC bytes)
        self._dialects = {t: dialect_from_json(d) for t, d in (dialects or {}).items()}
        self._unsaved: list[tuple[str, str, str]] = []  # pins the ledger has yet to record
        self._check_hints()

    def _check_hints(self) -> None:
        """A hint added for a column its table holds as another type widens the column,
        if it can (to float64 from int64, to text from any plain type); one that cannot,
        which would rescue the column's values from then on, is a config error."""
        for table in self.config.tables:
            current = self._current.get(table.name)
            if current is None or not table.columns:
                continue
            from ..widen import HINTS, described, folded, hint_widens  # a table hinted

            held = {folded(f.name): f for f in from_bytes(current[1])}
            for column, hint in table.columns:
                field = held.get(folded(column))
                if field is None or field.type == HINTS[hint] or hint_widens(field, HINTS[hint]):
                    continue
                raise ConfigError(
                    f"{self.config.source}: [tables.{table.name}.columns] {column} ="
                    f" \"{hint}\", but table {table.name} holds {field.name} as"
                    f" {described(field)} (schema v{current[0]}): a hint widens a column (to"
                    " float64 from int64, to string from any plain type), it cannot narrow"
                    " one; remove"
                    " the hint"
                )

    def pin(self, table: str, dialect: Dialect, source_file: str) -> None:
        """Called on the event loop: the first CSV of a table pins its dialect for the
        files after it; a pin of one column (no delimiter shown) gives way to the first
        that shows one. The ledger records it with the next commit."""
        pinned = self._dialects.get(table)
        if pinned is not None and (pinned.delimited or not dialect.delimited):
            return
        self._dialects[table] = dialect
        self._unsaved.append((table, dialect_to_json(dialect), source_file))
        log.info(
            "table %s: CSV dialect pinned by %s: %s", table, shown(source_file), dialect.describe()
        )

    def save_pins(self, ledger: Ledger) -> None:
        """Called in the committer's thread, before the commit of the files that pinned."""
        pins, self._unsaved = self._unsaved, []
        if pins:
            try:
                ledger.pin_dialects(pins)
            except BaseException:
                self._unsaved[:0] = pins  # a failed commit (a full disk) saves them next time
                raise

    def specs(self, tables: Iterable[str]) -> tuple[TableSpec, ...]:
        """What a task's worker needs to know of its tables. Called on the event loop."""
        return tuple(self.spec(name) for name in sorted({*tables, "features"}))

    def spec(self, table: str) -> TableSpec:
        version, schema = self._current.get(table, (0, None))
        declared = self.config.table(table)
        return TableSpec(
            table, declared.columns, schema, version, declared.csv, self._dialects.get(table)
        )

    def version(self, table: str) -> int:
        return self._current.get(table, (0, b""))[0]

    def schema(self, table: str) -> pa.Schema | None:
        found = self._current.get(table)
        return from_bytes(found[1]) if found else None

    def settle(
        self, ledger: Ledger, layout: Layout, parts: Sequence[Part], crash: CrashPlan,
        files: Sequence[str] = (),
    ) -> list[Part]:
        """Called in the committer's thread before `publish`: widen each table the parts
        need widened, once, then fit every part to its table's schema. `files`: the inputs
        of the parts, named in the log when they widen a table."""
        if self.as_they_are(ledger, parts):
            return list(parts)
        incoming = [_schema_of(part) for part in parts]
        settled: dict[str, pa.Schema] = {}
        for table in dict.fromkeys(part.table for part in parts):
            mine = [(p, s) for p, s in zip(parts, incoming, strict=True) if p.table == table]
            named = sorted({f for p, _ in mine for f in (p.sources or files)})
            settled[table] = self._settle_table(
                ledger, layout, table, [s for _, s in mine], crash, named
            )
        compression = self.config.output.compression
        return [
            part if same(schema, settled[part.table])
            else _refit(part, settled[part.table], self.version(part.table), compression)
            for part, schema in zip(parts, incoming, strict=True)
        ]

    def typed_where_text(self, parts: Sequence[Part]) -> set[str]:
        """The tables of `parts` that hold as text a column one of their parts holds as
        numbers, flags or times: cast to text, its values would be spelled anew (`1.10`
        as `1.1`). A part with its table's schema as it is needs no look."""
        found: set[str] = set()
        for part in parts:
            current = self._current.get(part.table)
            if current is None or part.table in found or part.schema == current[1]:
                continue
            import pyarrow as pa

            from ..widen import folded, is_untyped

            text = {
                folded(f.name) for f in from_bytes(current[1])
                if pa.types.is_string(f.type) and not is_untyped(f)
            }
            if any(
                folded(f.name) in text and not pa.types.is_string(f.type)
                and not pa.types.is_null(f.type)
                for f in _schema_of(part)
            ):
                found.add(part.table)
        return found

    def as_they_are(self, ledger: Ledger, parts: Sequence[Part]) -> bool:
        """Whether every part has its table's schema as it is, or, for a table with none
        yet, the one its first part gives it, found by the schema's bytes alone: then
        `settle` would change nothing but record a new table's schema, which this does.

        A part's `settled`, from its worker, says its schema is what a table of it alone
        would hold; for such parts, equal bytes are equal schemas, and `_settle_table`
        makes the same schema of them."""
        found: dict[str, bytes] = {}
        for part in parts:
            if not (part.settled and part.schema):
                return False
            if found.setdefault(part.table, part.schema) != part.schema:
                return False
        if any(t in self._current and self._current[t][1] != b for t, b in found.items()):
            return False
        for table, schema in found.items():
            if table not in self._current:
                self._record_bytes(ledger, table, schema)
        return True

    def _settle_table(
        self, ledger: Ledger, layout: Layout, table: str, incoming: list[pa.Schema],
        crash: CrashPlan, files: list[str],
    ) -> pa.Schema:
        """The table's schema once it holds parts of these schemas, widened if need be."""
        from ..widen import merge_schemas, tail_of

        hinted = frozenset(name for name, _ in self.config.table(table).columns)
        current = self.schema(table)
        merged = current if current is not None else incoming[0]
        for schema in incoming:
            merged = merge_schemas(merged, schema, hinted, tail_of(table))
        if current is None:
            self._record(ledger, table, merged)
        elif not same(merged, current):
            self._widen(ledger, layout, table, current, merged, crash, files)
        return merged

    def _record(self, ledger: Ledger, table: str, schema: pa.Schema) -> int:
        return self._record_bytes(ledger, table, to_bytes(schema.remove_metadata()))

    def _record_bytes(self, ledger: Ledger, table: str, data: bytes) -> int:
        version = self.version(table) + 1
        ledger.add_schema(table, version, data)
        self._current[table] = (version, data)
        return version

    def _widen(
        self, ledger: Ledger, layout: Layout, table: str, old: pa.Schema, new: pa.Schema,
        crash: CrashPlan, files: list[str],
    ) -> None:
        from .compact import rewrite_table

        version = self.version(table) + 1
        by = ", ".join(shown(f) for f in files[:3])
        by += f" and {len(files) - 3} more" if len(files) > 3 else ""
        for line in changes(old, new):
            log.warning("table %s schema v%d: %s, by %s", table, version, line, by)
        output = self.config.output
        # Until the new schema is recorded, the parts may hold it while the ledger does
        # not: a crash in between has start-up compare them (`adopt`).
        ledger.mark_schemas_checked(False)
        rewrite_table(
            ledger, layout, table, new, crash, target_bytes=output.target_file_mb << 20,
            compression=output.compression, schema_version=version,
        )
        self._record(ledger, table, new)
        ledger.mark_schemas_checked(True)



def adopt(ledger: Ledger, layout: Layout) -> None:
    """Called at start-up, in a thread: the parts on disk are the truth for each table's
    schema. A crash may have come between a rewrite and the ledger's record of its
    schema, or the ledger may have been rebuilt: the schema of a committed part is
    then recorded as the table's next version. A ledger that says its schemas were
    checked since (`Ledger.schemas_checked`) is not checked again."""
    if ledger.schemas_checked():
        return
    _compare(ledger, layout)
    ledger.mark_schemas_checked(True)


def _compare(ledger: Ledger, layout: Layout) -> None:
    current = ledger.schemas()
    committed = ledger.committed_paths()
    for folder in (layout.output / name for name in layout.tables()):
        parts = [p for p in sorted(folder.glob("*/part-*.parquet"))
                 if layout.relative_output(p) in committed]
        if not parts:
            continue
        import pyarrow.parquet as pq

        schema = pq.read_schema(parts[0]).remove_metadata()
        version, known = current.get(folder.name, (0, b""))
        if not known:
            # A rebuilt ledger knows no version: the newest its parts were written with. (A
            # part that needed no rewrite to a wider schema keeps the older one its worker
            # wrote; a rewritten one has the new.)
            ledger.add_schema(folder.name, max(map(_written_version, parts)), to_bytes(schema))
        elif not same(from_bytes(known), schema):
            ledger.add_schema(folder.name, version + 1, to_bytes(schema))


def _written_version(part: Path) -> int:
    import pyarrow.parquet as pq

    from ..partfile import FOOTER_SCHEMA_VERSION

    written = (pq.read_metadata(part).metadata or {}).get(FOOTER_SCHEMA_VERSION, b"")
    return int(written) if written.isdigit() else 1


def changes(old: pa.Schema, new: pa.Schema) -> list[str]:
    """One line per column that a widening adds or retypes."""
    import pyarrow as pa

    from ..widen import described

    lines = []
    before = {f.name: f for f in old}
    for field in new:
        if field.name not in before:
            lines.append(f"column {field.name!r} added as {described(field)}")
        elif not same(pa.schema([before[field.name]]), pa.schema([field])):
            was = described(before[field.name])
            lines.append(f"column {field.name!r} widened from {was} to {described(field)}")
    return lines


def _schema_of(part: Part) -> pa.Schema:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if part.schema:
        return from_bytes(part.schema)
    if isinstance(part, StagedPart):
        return pq.read_schema(part.temp).remove_metadata()
    return pq.read_schema(pa.py_buffer(part.data)).remove_metadata()


def _refit(part: Part, schema: pa.Schema, version: int, compression: str) -> Part:
    """A part encoded against an older schema of its table, rewritten to the current one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..fitting import fit  # pyarrow.compute: the service's process loads it only here
    from ..partfile import FOOTER_SCHEMA_VERSION, to_parquet

    source = part.temp if isinstance(part, StagedPart) else pa.py_buffer(part.data)
    table = pq.read_table(source)
    footer = {**(table.schema.metadata or {}), FOOTER_SCHEMA_VERSION: str(version).encode()}
    data = to_parquet(fit(table.replace_schema_metadata(None), schema), compression, footer)
    if isinstance(part, EncodedPart):
        return replace(part, data=data, schema=to_bytes(schema))
    temp = Path(f"{part.temp}.fit")
    temp.write_bytes(data)
    temp.replace(part.temp)
    return replace(part, durable=False, schema=to_bytes(schema))
