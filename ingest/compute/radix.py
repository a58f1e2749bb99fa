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

Before any of that, where lines could be read from all over the file first
(`aio/spread.py`), a window of values is placed around each quantile
(`windows_of`), and every block counts its values below the window and keeps
those in it (`in_window`): a rank inside a window every block counted is read
from those values, with no pass at all (`start`).

Each block also draws a small sample of each column, spread over its values.
The first later pass looks, in each counted bucket, for the window of values
where the samples put the wanted ranks: it collects the values in the window
and counts those below it. If the rank falls inside, that pass finds it, where
the digits alone would take another; if not (a sample can miss), the digits go
on as above.

A window is a guess checked, never trusted: its values decide a rank only where
the rank is among them, and a piece that finds far more in it than foretold
keeps none (memory stays bounded) and leaves the rank to the digits.

The result is the exact order statistic, so p05/p50/p95 equal numpy's
`percentile(..., method="linear")` of the whole column. Later digits are
narrow so that a pass's counts stay small (at most 256 per probe per piece),
however many pieces the file has.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

from ..blocks import (
    SAMPLE,
    ColumnPartial,
    Found,
    Probe,
    ScanResult,
    Selection,
    Target,
    Window,
    Windowed,
)

FIRST_BITS = 16
NEXT_BITS = 8
KEY_BITS = 64
# How far past the wanted ranks a window reaches, in standard errors of the sample's
# estimate of where they lie: a miss costs a pass, a wide window only memory.
REACH = 4.0
MARGIN = 1.25  # room kept for a window, over the values the sample puts in it
MIN_SAMPLED = 16  # fewer sampled values in a bucket say too little to place a window
MIN_SPREAD = 256  # fewer values in lines from all over a file say too little for windows
OVER = 2.0  # a piece keeps a window's values up to this many times those foretold
_GOLDEN = (math.sqrt(5) - 1) / 2
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


def sample(values: np.ndarray) -> bytes:
    """SAMPLE of the values (all of them where there are no more), as float64 bytes. The
    positions are a Weyl sequence, spread evenly over the values in no period a column's
    readings could share; numpy.random, some megabytes more in each worker, is not needed."""
    if values.size > SAMPLE:
        spread = (np.arange(1, SAMPLE + 1) * _GOLDEN) % 1.0
        values = values[(spread * values.size).astype(np.intp)]
    return np.ascontiguousarray(values, dtype=np.float64).tobytes()


@dataclasses.dataclass(frozen=True)
class Sampled:
    """A column's samples from every block, by order key, each with the number of the
    column's values it stands for."""

    keys: np.ndarray  # uint64, ascending
    values: np.ndarray  # float64, in the keys' order
    weights: np.ndarray  # float64

    @classmethod
    def of(cls, pieces: Iterable[tuple[int, bytes]]) -> Sampled:
        """From each block's (non-null count, sample)."""
        values, weights = [], []
        for count, drawn in pieces:
            block = np.frombuffer(drawn, dtype=np.float64)
            if block.size:
                values.append(block)
                weights.append(np.full(block.size, count / block.size))
        if not values:
            return cls(np.empty(0, np.uint64), np.empty(0), np.empty(0))
        keys = order_keys(np.concatenate(values))
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], order_values(keys[order]), np.concatenate(weights)[order])

    def window(
        self, bits: int, prefix: int, size: int, first: int, last: int
    ) -> tuple[tuple[float, float], float] | None:
        """Where, in the bucket under `prefix` of `size` values, the ranks `first`..`last`
        within it lie: a window of values (an end open where it reaches the bucket's), and
        about how many values it holds. None where the sample has too few in the bucket."""
        shift = np.uint64(KEY_BITS - bits)
        start, end = np.searchsorted(self.keys >> shift, [prefix, prefix + 1])
        if end - start < MIN_SAMPLED:
            return None
        values, weights = self.values[start:end], self.weights[start:end]
        share = np.cumsum(weights) / weights.sum()  # of the bucket at or below each value
        effective = weights.sum() ** 2 / np.dot(weights, weights)
        lowest, highest = first / size, (last + 1) / size
        spread = max(lowest * (1 - lowest), highest * (1 - highest), 1 / effective)
        reach = REACH * math.sqrt(spread / effective)
        i = int(np.searchsorted(share, lowest - reach, side="right")) - 1
        j = int(np.searchsorted(share, highest + reach, side="left"))
        low = float(values[i]) if i >= 0 else -math.inf
        high = float(values[j]) if j < values.size else math.inf
        a = int(np.searchsorted(values, low, side="left"))
        b = int(np.searchsorted(values, high, side="right"))
        held = (share[b - 1] if b else 0.0) - (share[a - 1] if a else 0.0)
        return (low, high), float(held) * size


def windows_of(
    values: np.ndarray, quantiles: Iterable[float]
) -> list[tuple[float, float, float]]:
    """Where lines read from all over a file put each quantile of a column (`values`: the
    sample's, sorted, non-null): a window REACH standard errors either side, those that
    overlap merged, as (low, high, share of the values in it)."""
    size = values.size
    if size < MIN_SPREAD:
        return []
    spans = []
    for q in quantiles:
        reach = REACH * math.sqrt(max(q * (1 - q), 1 / size) / size) + 2 / size
        i, j = math.floor((q - reach) * (size - 1)), math.ceil((q + reach) * (size - 1))
        spans.append((
            float(values[i]) if i >= 0 else -math.inf,
            float(values[j]) if j < size else math.inf,
        ))
    spans.sort()
    merged = [spans[0]]
    for low, high in spans[1:]:
        if low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return [
        (low, high, float(
            np.searchsorted(values, high, side="right") - np.searchsorted(values, low)
        ) / size)
        for low, high in merged
    ]


def _kept(expected: float) -> float:
    """How many values a piece may keep where `expected` were foretold: OVER times as many,
    and a little more for chance. Past it, the piece keeps none."""
    return OVER * expected + 4 * math.sqrt(expected) + 16


def in_window(valid: np.ndarray, window: Window, size: int) -> Windowed:
    """One block's non-null values of a column in a window, and how many are below it. Kept
    only up to what the window foretold for the block's `size` in bytes, so that lines
    unlike those read (more of them in the window, fewer nulls, shorter rows) cannot make
    the blocks hold more than the windows were allowed."""
    inside = valid[(valid >= window.low) & (valid <= window.high)]
    below = int(np.count_nonzero(valid < window.low))
    if inside.size > _kept(window.per_byte * size):
        return Windowed(window.low, window.high, below, over=True)
    return Windowed(window.low, window.high, below, inside.tobytes())


def _from_window(pieces: Sequence[Found | Windowed], rank: int) -> float | None:
    """The value of `rank` (among the values of every piece), if it fell in the window the
    pieces kept: each kept its values in it, none over, and counted those below it."""
    if any(piece.over for piece in pieces):
        return None
    within = rank - sum(piece.below for piece in pieces)
    values = np.concatenate([np.frombuffer(p.values, dtype=np.float64) for p in pieces])
    if not 0 <= within < values.size:
        return None
    return float(np.partition(values, within)[within])


def _in_windows(
    pieces: list[tuple[int, tuple[Windowed, ...]]], rank: int
) -> float | None:
    """The value of a rank, if every block of the column with values counted the same
    window and the rank is in it; pieces: each block's (non-null count, windowed)."""
    valued = [windowed for count, windowed in pieces if count]
    if not valued or not valued[0]:
        return None
    for k, first in enumerate(valued[0]):
        found = [w[k] for w in valued if len(w) > k]
        if len(found) < len(valued) or any(
            (w.low, w.high) != (first.low, first.high) for w in found
        ):
            continue
        value = _from_window(found, rank)
        if value is not None:
            return value
    return None


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


def _probes(
    targets: Iterable[Target], collect_limit: int, sampled: dict[str, Sampled] | None = None
) -> tuple[Probe, ...]:
    """The next pass's probes. Each bucket may be finished in this pass by collecting it
    whole or, with samples, the window where they place its ranks (room for MARGIN times
    the values the sample puts there, since an estimate may fall short): the cheaper, for
    as many buckets as the limit holds, cheapest first. The others are counted by their
    next digit."""
    buckets: dict[tuple[str, int, int], int] = {}
    ranks: dict[tuple[str, int, int], list[int]] = {}
    for t in targets:
        if t.value is None:
            buckets[(t.column, t.bits, t.prefix)] = t.size
            ranks.setdefault((t.column, t.bits, t.prefix), []).append(t.within)
    sampled = sampled or {}
    costs: list[tuple[int, tuple[str, int, int], tuple[float, float] | None, float]] = []
    for key, size in buckets.items():
        column, bits, prefix = key
        found = None
        if column in sampled:
            found = sampled[column].window(
                bits, prefix, size, min(ranks[key]), max(ranks[key])
            )
        if found is not None and math.ceil(MARGIN * found[1]) < size:
            costs.append((math.ceil(MARGIN * found[1]), key, found[0], found[1] / size))
        else:
            costs.append((size, key, None, 1.0))
    room = collect_limit
    chosen: dict[tuple[str, int, int], tuple[tuple[float, float] | None, float]] = {}
    for cost, key, window, share in sorted(costs, key=lambda c: (c[0], c[1])):
        if cost <= room:
            chosen[key] = (window, share)
            room -= cost
    probes = []
    for key in buckets:
        window, share = chosen.get(key, (None, 0.0))
        collect = key in chosen and window is None
        probes.append(Probe(*key, collect, window, share if window else 0.0))
    return tuple(sorted(probes, key=lambda p: (p.column, p.bits, p.prefix)))


def start(
    columns: tuple[ColumnPartial, ...],
    histograms: dict[str, list[tuple[bytes, bytes]]],
    quantiles: Iterable[float],
    collect_limit: int,
    samples: dict[str, list[tuple[int, bytes]]] | None = None,
    windowed: dict[str, list[tuple[int, tuple[Windowed, ...]]]] | None = None,
) -> Selection:
    """Every wanted rank found in the windows the blocks counted, if it is there; the first
    digit of every other, from the blocks' merged first-digit counts, and the first
    pass's windows from their samples. Per block: (non-null count, sample or windowed)."""
    wanted = tuple(quantiles)
    targets: list[Target] = []
    for column in columns:
        if column.count == 0:
            continue
        counts = _merged_counts(histograms[column.column], FIRST_BITS)
        pieces = (windowed or {}).get(column.column, [])
        for rank in quantile_ranks(column.count, wanted):
            start = Target(column.column, rank, 0, 0, rank, column.count)
            value = _in_windows(pieces, rank)
            if value is not None:
                targets.append(dataclasses.replace(start, value=value))
            else:
                targets.append(_descend(start, counts))
    sampled = {column: Sampled.of(pieces) for column, pieces in (samples or {}).items()}
    probes = _probes(targets, collect_limit, sampled)
    return Selection(columns, tuple(targets), probes, collect_limit)


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
            continue
        buckets, counts = digit_counts(under, probe.bits)
        if probe.window is None:
            out.append(Found(buckets=buckets, counts=counts, low=low, high=high))
            continue
        # A bucket's values all have one sign, so float order is key order: -0.0 and 0.0
        # never meet in one.
        within = order_values(under)
        start, end = probe.window
        inside = within[(within >= start) & (within <= end)]
        below = int(np.count_nonzero(within < start))
        if inside.size > _kept(probe.keep * under.size):  # far from what the sample said
            out.append(Found(b"", buckets, counts, low, high, below, over=True))
        else:
            out.append(Found(inside.tobytes(), buckets, counts, low, high, below))
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
    windowed = {(p.column, p.bits, p.prefix) for p in selection.probes if p.window}
    targets: list[Target] = []
    for target in selection.targets:
        key = (target.column, target.bits, target.prefix)
        pieces = by_probe.get(key)
        if target.value is not None or pieces is None:
            targets.append(target)
            continue
        low = min(f.low for f in pieces)
        if low == max(f.high for f in pieces):
            targets.append(dataclasses.replace(target, value=low))  # every value is the same
        elif Probe(*key, True) in collected:
            values = np.concatenate([np.frombuffer(f.values, dtype=np.float64) for f in pieces])
            exact = float(np.partition(values, target.within)[target.within])
            targets.append(dataclasses.replace(target, value=exact))
        elif key in windowed and (inside := _from_window(pieces, target.within)) is not None:
            targets.append(dataclasses.replace(target, value=inside))
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
