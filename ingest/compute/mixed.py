"""JSON Lines whose column mixes kinds of value: `1` on one line, `"x"` on the next.

Runs in a worker process, on the error path only: Arrow's reader refuses such a
file ("changed from number to string"). It is read here line by line instead,
and a mixed column is given as text, each value as written; the table's rules
then decide its type (a column mostly of numbers stays numeric, and the rest
of its values are rescued).
"""

from __future__ import annotations

import json

import pyarrow as pa

from ..conform import typed_text

# Python's json gives these kinds; bool before int, since bool is an int to isinstance.
_KINDS = (bool, int, float, str, list, dict)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    for kind in _KINDS:
        if isinstance(value, kind):
            return "number" if kind in (int, float) else kind.__name__
    return type(value).__name__


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def read_mixed(data: bytes) -> pa.Table | None:
    """A JSON Lines file of objects read row by row; None if a line is not an object
    (the caller then reports Arrow's own error)."""
    rows = []
    for line in data.decode("utf-8-sig").splitlines():
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                return None
            rows.append(row)
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for name, value in row.items():
            kinds.setdefault(name, set()).add(_kind(value))
    mixed = {name for name, found in kinds.items() if len(found - {"null"}) > 1}
    columns = {}
    for name in kinds:
        values = [row.get(name) for row in rows]
        if name not in mixed:
            try:
                columns[name] = pa.array(values)
                continue
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # Kinds mixed inside a list or an object (`[1, "a"]`): as a mixed column.
                mixed.add(name)
        columns[name] = pa.array([_text(value) for value in values], pa.string())
    return typed_text(pa.table(columns), untyped=mixed) if columns else pa.table({})
