"""Exact quantiles of a column too big to hold, in a few passes over it.

Runs in a worker process. Every float64 maps to a uint64 *order key* that
sorts the same way, so a rank can be found digit by digit:

1. the first pass (over the CSV, block by block) counts values per leading
   16 bits of their key; counts from different blocks simply add;
2. the counts say which bucket holds rank r, and r's rank within it;
3. each later pass over the staged Parquet either collects the bucket's
   values, once they fit the collect limit, or counts them by their next 8
   bits, and step 2 repeats one digit deeper. A bucket whose least and
   greatest values are equal is the answer at once (ties, integer columns).

The result is the exact order statistic, so p05/p50/p95 equal numpy's
`percentile(..., method="linear")` of the whole column. Later digits are
narrow so that a pass's counts stay small (at most 256 per probe per piece),
however many pieces the file has.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from ..blocks import ColumnPartial, Found, Probe, ScanResult, Selection, Target

FIRST_BITS = 16
NEXT_BITS = 8
KEY_BITS = 64
_SIGN = np.uint64(1 << 63)
_LOWEST = np.int64(-(1 << 63))


def order_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys that sort like the float64 values (which must not be NaN)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    # A negative float's bits are all flipped, a positive's sign bit is set: one xor with a
    # mask spread from the sign bit, in place, where a where() made four arrays.
    keys = bits >> 63
    keys |= _LOWEST
    keys ^= bits
    return keys.view(np.uint64)


def order_values(keys: np.ndarray) -> np.ndarray:
    """The float64 values of order keys."""
    positive = (keys & _SIGN) != 0
    bits = np.where(positive, keys ^ _SIGN, ~keys)
    values: np.ndarray = bits.view(np.float64)
    return values


def value_of(key: int) -> float:
    """The float64 whose order key is `key`."""
    value: float = order_values(np.array([key], dtype=np.uint64))[0].item()
    return value


def _width(bits: int) -> int:
    """How many bits the next digit after `bits` known bits has."""
    return FIRST_BITS if bits == 0 else min(NEXT_BITS, KEY_BITS - bits)


def _under(keys: np.ndarray, bits: int, prefix: int) -> np.ndarray:
    """The keys whose leading `bits` equal `prefix`."""
    if bits == 0:
        return keys
    selected: np.ndarray = keys[(keys >> np.uint64(KEY_BITS - bits)) == np.uint64(prefix)]
    return selected


def digit_counts(keys: np.ndarray, bits: int = 0) -> tuple[bytes, bytes]:
    """How many of the keys (which share their leading `bits`) have each next digit;
    only the digits present."""
    width = _width(bits)
    digits = keys >> np.uint64(KEY_BITS - bits - width)
    if bits:
        digits &= np.uint64((1 << width) - 1)
    # Each digit is below 2**16: read as signed in place, where a cast would copy (it
    # still does where intp is narrower than 64 bits).
    counts = np.bincount(digits.view(np.int64).astype(np.intp, copy=False), minlength=1 << width)
    present = np.flatnonzero(counts)
    return present.astype(np.uint16).tobytes(), counts[present].astype(np.int64).tobytes()


def _merged_counts(pieces: Iterable[tuple[bytes, bytes]], width: int) -> np.ndarray:
    total = np.zeros(1 << width, dtype=np.int64)
    for buckets, counts in pieces:
        np.add.at(
            total, np.frombuffer(buckets, dtype=np.uint16), np.frombuffer(counts, dtype=np.int64)
        )
    return total


def _descend(target: Target, counts: np.ndarray) -> Target:
    """One digit deeper: the bucket that holds the target's rank, and the rank within it."""
    width = _width(target.bits)
    cumulative = np.cumsum(counts)
    digit = int(np.searchsorted(cumulative, target.within, side="right"))
    before = int(cumulative[digit - 1]) if digit else 0
    bits = target.bits + width
    prefix = (target.prefix << width) | digit
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


def _probes(targets: Iterable[Target], collect_limit: int) -> tuple[Probe, ...]:
    """The next pass's probes: a bucket is collected if the buckets to collect fit the limit
    together, smallest first; the others are counted by their next digit."""
    buckets: dict[tuple[str, int, int], int] = {}
    for t in targets:
        if t.value is None:
            buckets[(t.column, t.bits, t.prefix)] = t.size
    room = collect_limit
    probes = []
    for (column, bits, prefix), size in sorted(buckets.items(), key=lambda item: item[1]):
        collect = size <= room
        room -= size if collect else 0
        probes.append(Probe(column, bits, prefix, collect))
    return tuple(sorted(probes, key=lambda p: (p.column, p.bits, p.prefix)))


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
        counts = _merged_counts(histograms[column.column], FIRST_BITS)
        for rank in quantile_ranks(column.count, wanted):
            start = Target(column.column, rank, 0, 0, rank, column.count)
            targets.append(_descend(start, counts))
    return Selection(columns, tuple(targets), _probes(targets, collect_limit), collect_limit)


def _bounds(bits: int, prefix: int) -> tuple[float, float]:
    """The least and greatest float64 whose keys start with `prefix`. Keys past the
    infinities are NaN bit patterns: those ends are taken as the infinities."""
    shift = KEY_BITS - bits
    low, high = value_of(prefix << shift), value_of(((prefix + 1) << shift) - 1)
    return (-math.inf if math.isnan(low) else low), (math.inf if math.isnan(high) else high)


def _in_bucket(values: np.ndarray, bits: int, prefix: int) -> np.ndarray:
    """The keys of the values whose keys start with `prefix`. The values are compared
    first, since a bucket holds few of them; -0.0 equals 0.0 there, so the keys of
    those few are checked too."""
    low, high = _bounds(bits, prefix)
    return _under(order_keys(values[(values >= low) & (values <= high)]), bits, prefix)


def scan(values: dict[str, np.ndarray], probes: tuple[Probe, ...]) -> ScanResult:
    """Run every probe over one piece of the data (non-null values per column)."""
    out: list[Found] = []
    for probe in probes:
        under = _in_bucket(values[probe.column], probe.bits, probe.prefix)
        if not under.size:
            out.append(Found())
            continue
        low, high = (value_of(int(k)) for k in (under.min(), under.max()))
        if probe.collect:
            out.append(Found(values=order_values(under).tobytes(), low=low, high=high))
        else:
            buckets, counts = digit_counts(under, probe.bits)
            out.append(Found(buckets=buckets, counts=counts, low=low, high=high))
    return tuple(out)


def narrow(selection: Selection, results: tuple[ScanResult, ...]) -> Selection:
    """Fold one pass's results into the search: each target is found, or one digit deeper."""
    by_probe: dict[tuple[str, int, int], list[Found]] = {
        (p.column, p.bits, p.prefix): [] for p in selection.probes
    }
    for result in results:
        for probe, found in zip(selection.probes, result, strict=True):
            by_probe[(probe.column, probe.bits, probe.prefix)].append(found)
    collected = {p for p in selection.probes if p.collect}
    targets: list[Target] = []
    for target in selection.targets:
        pieces = by_probe.get((target.column, target.bits, target.prefix))
        if target.value is not None or pieces is None:
            targets.append(target)
            continue
        low = min(f.low for f in pieces)
        if low == max(f.high for f in pieces):
            targets.append(dataclasses.replace(target, value=low))  # every value is the same
        elif Probe(target.column, target.bits, target.prefix, True) in collected:
            values = np.concatenate([np.frombuffer(f.values, dtype=np.float64) for f in pieces])
            exact = float(np.partition(values, target.within)[target.within])
            targets.append(dataclasses.replace(target, value=exact))
        else:
            width = _width(target.bits)
            targets.append(_descend(target, _merged_counts(
                ((f.buckets, f.counts) for f in pieces), width
            )))
    limit = selection.collect_limit
    return Selection(selection.columns, tuple(targets), _probes(targets, limit), limit)


def value_at(selection: Selection, column: str, rank: int) -> float:
    for target in selection.targets:
        if target.column == column and target.rank == rank and target.value is not None:
            return target.value
    raise KeyError(f"rank {rank} of {column!r} was not found")
