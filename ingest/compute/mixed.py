"""JSON Lines whose column mixes kinds of value: `1` on one line, `"x"` on the next.

Runs in a worker process, on the error path only: Arrow's reader refuses such a
file ("changed from number to string"). It is read here line by line instead,
and a mixed column is given as text, each value as written; the table's rules
then decide its type (a column mostly of numbers stays numeric, and the rest
of its values are rescued).
"""

from __future__ import annotations

import json
import math

import pyarrow as pa

from ..conform import typed_text
from .failures import DecodeError

# Python's json gives these kinds; bool before int, since bool is an int to isinstance.
_KINDS = (bool, int, float, str, list, dict)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    for kind in _KINDS:
        if isinstance(value, kind):
            return "number" if kind in (int, float) else kind.__name__
    return type(value).__name__


def _kinds_at(value: object, at: tuple[str, ...], kinds: dict[tuple[str, ...], set[str]]) -> None:
    """The kinds of value found at each place inside `value` (`at` and below: a list's
    items, an object's fields by name). Arrow takes `true` for 1.0 in a list of floats,
    and in a struct's float field: a place holding two kinds is found here instead."""
    kind = _kind(value)
    kinds.setdefault(at, set()).add(kind)
    if kind == "list":
        for item in value:  # type: ignore[attr-defined]
            _kinds_at(item, (*at, "[]"), kinds)
    elif kind == "dict":
        for key, item in value.items():  # type: ignore[attr-defined]
            _kinds_at(item, (*at, key), kinds)


def _mixes_kinds(values: list[object]) -> bool:
    kinds: dict[tuple[str, ...], set[str]] = {}
    for value in values:
        _kinds_at(value, (), kinds)
    return any(len(found - {"null"}) > 1 for found in kinds.values())


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: Arrow's reader refuses it so, and so does this
        raise ValueError("Number too big to be stored in double")
    return value


def _integer(text: str) -> int | float:
    value = int(text)
    # Past 64 bits Arrow's reader takes an integer as a float, and so does this.
    return value if -(2**63) <= value < 2**63 else float(value)


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    found: dict[str, object] = {}
    for key, value in pairs:
        if key in found:  # Arrow's reader refuses it too; json.loads keeps the last
            raise ValueError(f"the key {key!r} is given twice in one object")
        found[key] = value
    return found


def read_mixed(data: bytes) -> pa.Table | None:
    """A JSON Lines file of objects read row by row; None if a line is not an object
    (the caller then reports Arrow's own error). Raises DecodeError, with its line, for a
    line that is not JSON as Arrow's reader takes it."""
    rows = []
    # Lines end at "\n" alone: `str.splitlines` also ends one at U+2028, U+0085 and the
    # like, which a JSON string may hold as they are.
    for number, line in enumerate(data.decode("utf-8-sig").split("\n"), start=1):
        if line.strip():
            try:
                row = json.loads(
                    line, parse_float=_finite, parse_int=_integer, object_pairs_hook=_object,
                )
            except (ValueError, OverflowError) as exc:  # an integer of 400 digits: the latter
                raise DecodeError(str(exc), line=number) from None
            if not isinstance(row, dict):
                return None
            rows.append(row)
    names = dict.fromkeys(name for row in rows for name in row)
    mixed: set[str] = set()
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if _mixes_kinds(values):
            mixed.add(name)
        else:
            try:
                columns[name] = pa.array(values)
                continue
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # Kinds mixed inside a list or an object (`[1, "a"]`): as a mixed column.
                mixed.add(name)
        columns[name] = pa.array([_text(value) for value in values], pa.string())
    return typed_text(pa.table(columns), untyped=mixed) if columns else pa.table({})
