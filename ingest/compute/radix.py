"""Exact quantiles of a column too big to hold, in a few passes over it.

Runs in a worker process. Every float64 maps to a uint64 *order key* that
sorts the same way, so a rank can be found digit by digit, 16 bits at a time:

1. the first pass (over the CSV, block by block) counts values per leading
   16 bits of their key; counts from different blocks simply add;
2. the counts say which 16-bit bucket holds rank r, and r's rank within it;
3. each later pass over the staged Parquet either collects the bucket's
   values, once there are at most `collect_limit` of them, or counts them by
   their next 16 bits, and step 2 repeats one digit deeper.

The result is the exact order statistic, so p05/p50/p95 equal numpy's
`percentile(..., method="linear")` of the whole column. Four digits pin any
64-bit key, so at most three passes follow the first; memory per wanted rank
is one 65,536-entry count table or `collect_limit` values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from ..blocks import ColumnPartial, Probe, ScanResult, Selection, Target

DIGIT_BITS = 16
DIGITS = 1 << DIGIT_BITS
KEY_BITS = 64
_SIGN = np.uint64(1 << 63)


def order_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys that sort like the float64 values (which must not be NaN)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    negative = (bits & _SIGN) != 0
    keys: np.ndarray = np.where(negative, ~bits, bits | _SIGN)
    return keys


def value_of(key: int) -> float:
    """The float64 whose order key is `key`."""
    bits = key ^ (1 << 63) if key >> 63 else ~key & ((1 << 64) - 1)
    value: float = np.array([bits], dtype=np.uint64).view(np.float64)[0].item()
    return value


def _under(keys: np.ndarray, bits: int, prefix: int) -> np.ndarray:
    """The keys whose leading `bits` equal `prefix`."""
    if bits == 0:
        return keys
    selected: np.ndarray = keys[(keys >> np.uint64(KEY_BITS - bits)) == np.uint64(prefix)]
    return selected


def digit_counts(keys: np.ndarray, bits: int = 0, prefix: int = 0) -> tuple[bytes, bytes]:
    """Among the keys under `prefix`, how many have each next 16-bit digit (present ones only)."""
    digits = (_under(keys, bits, prefix) >> np.uint64(KEY_BITS - bits - DIGIT_BITS)) & np.uint64(
        DIGITS - 1
    )
    counts = np.bincount(digits.astype(np.intp), minlength=DIGITS)
    present = np.flatnonzero(counts)
    return present.astype(np.uint16).tobytes(), counts[present].astype(np.int64).tobytes()


def _merged_counts(pieces: Iterable[tuple[bytes, bytes]]) -> np.ndarray:
    total = np.zeros(DIGITS, dtype=np.int64)
    for buckets, counts in pieces:
        np.add.at(
            total, np.frombuffer(buckets, dtype=np.uint16), np.frombuffer(counts, dtype=np.int64)
        )
    return total


def _descend(target: Target, counts: np.ndarray) -> Target:
    """One digit deeper: the bucket that holds the target's rank, and the rank within it."""
    cumulative = np.cumsum(counts)
    digit = int(np.searchsorted(cumulative, target.within, side="right"))
    before = int(cumulative[digit - 1]) if digit else 0
    bits = target.bits + DIGIT_BITS
    prefix = (target.prefix << DIGIT_BITS) | digit
    found = value_of(prefix) if bits == KEY_BITS else None  # one key: the value itself
    return Target(
        target.column, target.rank, bits, prefix, target.within - before,
        int(counts[digit]), found,
    )


def quantile_ranks(count: int, quantiles: Iterable[float]) -> list[int]:
    """The ranks linear interpolation reads for each quantile: floor and ceiling of q(n-1)."""
    ranks: set[int] = set()
    for q in quantiles:
        position = q * (count - 1)
        ranks.update((math.floor(position), min(math.floor(position) + 1, count - 1)))
    return sorted(ranks)


def _probes(targets: Iterable[Target], limit: int) -> tuple[Probe, ...]:
    wanted = {
        Probe(t.column, t.bits, t.prefix, t.size <= limit) for t in targets if t.value is None
    }
    return tuple(sorted(wanted, key=lambda p: (p.column, p.bits, p.prefix)))


def start(
    columns: tuple[ColumnPartial, ...],
    histograms: dict[str, list[tuple[bytes, bytes]]],
    quantiles: Iterable[float],
    collect_limit: int,
) -> Selection:
    """The first digit of every wanted rank, from the blocks' merged first-digit counts."""
    wanted = tuple(quantiles)
    targets: list[Target] = []
    for column in columns:
        if column.count == 0:
            continue
        counts = _merged_counts(histograms[column.column])
        for rank in quantile_ranks(column.count, wanted):
            targets.append(_descend(Target(column.column, rank, 0, 0, rank, column.count), counts))
    return Selection(columns, tuple(targets), _probes(targets, collect_limit), collect_limit)


def scan(values: dict[str, np.ndarray], probes: tuple[Probe, ...]) -> ScanResult:
    """Run every probe over one piece of the data (non-null values per column)."""
    keys = {name: order_keys(column) for name, column in values.items()}
    out: list[tuple[bytes, bytes]] = []
    for probe in probes:
        if probe.collect:
            under = _under(keys[probe.column], probe.bits, probe.prefix)
            out.append((order_values(under).tobytes(), b""))
        else:
            out.append(digit_counts(keys[probe.column], probe.bits, probe.prefix))
    return tuple(out)


def order_values(keys: np.ndarray) -> np.ndarray:
    """The float64 values of order keys."""
    negative = (keys & _SIGN) == 0
    bits = np.where(negative, ~keys, keys ^ _SIGN)
    values: np.ndarray = bits.view(np.float64)
    return values


def narrow(selection: Selection, results: tuple[ScanResult, ...]) -> Selection:
    """Fold one pass's results into the search: each target is found, or one digit deeper."""
    by_probe: dict[Probe, list[tuple[bytes, bytes]]] = {p: [] for p in selection.probes}
    for result in results:
        for probe, piece in zip(selection.probes, result, strict=True):
            by_probe[probe].append(piece)
    targets: list[Target] = []
    for target in selection.targets:
        probe = Probe(target.column, target.bits, target.prefix, True)
        if target.value is not None:
            targets.append(target)
        elif probe in by_probe:
            collected = np.concatenate(
                [np.frombuffer(values, dtype=np.float64) for values, _ in by_probe[probe]]
            )
            found = float(np.partition(collected, target.within)[target.within])
            targets.append(dataclasses.replace(target, value=found))
        else:
            pieces = by_probe[Probe(target.column, target.bits, target.prefix, False)]
            targets.append(_descend(target, _merged_counts(pieces)))
    limit = selection.collect_limit
    return Selection(selection.columns, tuple(targets), _probes(targets, limit), limit)


def value_at(selection: Selection, column: str, rank: int) -> float:
    for target in selection.targets:
        if target.column == column and target.rank == rank and target.value is not None:
            return target.value
    raise KeyError(f"rank {rank} of {column!r} was not found")
