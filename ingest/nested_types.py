"""Arrow types rebuilt with some of the types inside them changed, at any depth."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa


def holds(kind: pa.DataType, found: Callable[[pa.DataType], bool]) -> bool:
    """Is `found` true of `kind`, or of a type inside it at any depth (a list's values, a
    struct's fields, a map's keys and items)?"""
    return found(kind) or any(holds(kind.field(i).type, found) for i in range(kind.num_fields))


def mapped(
    kind: pa.DataType, change: Callable[[pa.DataType], pa.DataType | None]
) -> pa.DataType:
    """`kind` with `change` applied to it and to each type inside its lists, structs and
    maps: where `change` gives a type, that type stands; where it gives None, the type's
    own children are looked at (a list of any kind becomes a `list_`)."""
    changed = change(kind)
    if changed is not None:
        return changed
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(mapped(kind.value_type, change)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(mapped(kind.value_type, change)))
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(
            kind.value_field.with_type(mapped(kind.value_type, change)), kind.list_size
        )
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(mapped(f.type, change)) for f in kind])
    if pa.types.is_map(kind):
        return pa.map_(mapped(kind.key_type, change), mapped(kind.item_type, change))
    return kind
