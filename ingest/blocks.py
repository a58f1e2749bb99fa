"""The plain data of a streamed file, as it crosses the process boundary.

A file too big to hold in memory is read in blocks of whole records. Each
block goes to a worker as a `Block` and comes back as a `BlockResult`: its
rows as Parquet bytes, and per-column partial statistics that merge exactly.
Quantiles cannot merge that way, so they are found exactly by a `Selection`:
each pass over the staged Parquet (a `Scan`) narrows every wanted rank to a
smaller range of values, until the range is small enough to collect.

Like `jobs.py`, everything here is a frozen dataclass of builtins.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .config import Features
from .dialect import CsvOptions, Dialect
from .inflate import inner_name
from .jobs import Failure, TableSpec

# Formats whose records are lines, so that a file can be cut into blocks between records
# (`compute/decode.py` has a block reader for each).
JSON_LINES = (".jsonl", ".ndjson")
LINE_FORMATS = (".csv", *JSON_LINES)


def is_json_lines(name: str) -> bool:
    """Does the name say JSON Lines, gzip'd or not?"""
    return inner_name(name).lower().endswith(JSON_LINES)


@dataclass(frozen=True)
class Block:
    """Whole records of one file, with the file's header in front of them."""

    source_file: str
    sha256: str
    index: int
    data: bytes  # whole records; block 0 starts with the header, later blocks do not
    first_line: int  # the file's line number of the first line of `data`
    schema: bytes  # block 0's Arrow schema (IPC), with the column names; empty for block 0
    features: Features
    compression: str = "zstd"
    timeout_s: float = 0.0
    spec: TableSpec = field(default_factory=lambda: TableSpec("records"))  # its table
    # Block 0: the table's pinned dialect, if any, and its pins; a later block: block 0's.
    dialect: Dialect | None = None
    csv: CsvOptions | None = None
    # Where a worker that sees the output folder writes its part (not fsynced: the commit
    # does that); None: the part comes back as bytes, for the service to stage.
    stage: str | None = None
    # A local worker's block comes in shared memory: the segment's name, and `size` bytes
    # of it are the block (`data` is empty then), not pickled into the pool's pipe.
    shared: str | None = None
    size: int = 0
    windows: tuple[Window, ...] = ()  # where the file's quantiles lie, if a sample said

    def file_line(self, line: int | None) -> int | None:
        """A line number within `data`, as a line number of the whole file."""
        return None if line is None else self.first_line + line - 1


SAMPLE = 2048  # values a block draws from each numeric column


@dataclass(frozen=True)
class Window:
    """Where lines read from all over a file put one or more quantiles of a column: the
    values from `low` to `high`, about `per_byte` of them for each byte of the file."""

    column: str
    low: float
    high: float
    per_byte: float


@dataclass(frozen=True)
class Windowed:
    """One block's values of one column in one window: those below it counted, those in
    it kept; none kept (`over`) where there were far more than its share foretold."""

    low: float
    high: float
    below: int
    values: bytes = b""  # float64
    over: bool = False


@dataclass(frozen=True)
class Spread:
    """Whole lines from all over a file, its header in front, read as block 0 is: where
    its quantiles lie (`Window`s), for every block to count as it goes."""

    source_file: str
    data: bytes
    spec: TableSpec
    features: Features
    file_bytes: int  # the file's size, which the windows' values per byte are scaled to
    collect_limit: int  # values the windows may hold together, over the whole file
    timeout_s: float = 0.0  # task_timeout_s: past it, no windows


@dataclass(frozen=True)
class ColumnPartial:
    """What one block says about one numeric column; blocks merge by `merge_partials`."""

    column: str
    count: int  # non-null values
    nulls: int
    mean: float
    m2: float  # sum of squared deviations from `mean`
    squares: float  # sum of squares, for rms
    min: float
    max: float
    buckets: bytes  # uint16: the 16-bit order-key prefixes present, ascending
    counts: bytes  # int64: values per prefix
    # float64: values drawn from the block's, each standing for count/len of them: where a
    # later pass should look for each quantile (`radix.Sampled`)
    sample: bytes = b""
    windowed: tuple[Windowed, ...] = ()  # the block's values in each window of the column

    @classmethod
    def empty(cls, column: str, nulls: int) -> ColumnPartial:
        """A column with no values in the rows it covers."""
        return cls(column, 0, nulls, 0.0, 0.0, 0.0, 0.0, 0.0, b"", b"")

    def thinned(self, stride: int) -> ColumnPartial:
        """With every `stride`-th value of its sample: each one left stands for more."""
        if stride == 1 or not self.sample:
            return self
        kept = memoryview(self.sample).cast("d")[::stride]
        return dataclasses.replace(self, sample=kept.tobytes())


# A block's failure to write its part where it was staged (a full disk): not the file's
# fault, so the file is not quarantined but left for a later run.
STAGING_FAILED = "StagingFailed"


# Each block's rows and partial statistics, in block order: what `select` merges.
Blocks = tuple[tuple[int, tuple[ColumnPartial, ...]], ...]


@dataclass(frozen=True)
class BlockResult:
    rows: int
    failure: Failure | None = None
    part: bytes = b""  # Parquet: the block's rows with source_file and source_sha256
    schema: bytes = b""  # the Arrow schema the block was read with
    partials: tuple[ColumnPartial, ...] = ()
    fitted: bytes = b""  # the schema of its part: read, then fitted to the table
    dialect: Dialect | None = None  # what a CSV block was read with
    written: bool = False  # the part is at the block's `stage`, not in `part`

    def thinned(self, stride: int) -> BlockResult:
        """With its partials' samples thinned (`ColumnPartial.thinned`)."""
        if stride == 1:
            return self
        return dataclasses.replace(self, partials=tuple(p.thinned(stride) for p in self.partials))

    @property
    def sampled(self) -> int:
        """The bytes of its partials' samples."""
        return sum(len(p.sample) for p in self.partials)


@dataclass(frozen=True)
class Target:
    """One order statistic of one column, and how far the search for it has got."""

    column: str
    rank: int  # 0-based, among the column's non-null values
    bits: int  # leading order-key bits known so far
    prefix: int  # their value
    within: int  # the rank among the values that share the prefix
    size: int  # how many values share it
    value: float | None = None  # once found


@dataclass(frozen=True)
class Probe:
    """What a scan looks for: the values under one prefix, or their next digit counted. A
    counted prefix may have a window, where a sample says its wanted ranks lie: the values
    in it are collected too, and those below it counted, so that the pass may find them."""

    column: str
    bits: int
    prefix: int
    collect: bool
    window: tuple[float, float] | None = None
    keep: float = 0.0  # the share of the prefix's values its window may keep, in any piece


@dataclass(frozen=True)
class Selection:
    """The merged statistics of every column, and the quantiles still being searched for."""

    columns: tuple[ColumnPartial, ...]  # merged over every block; buckets left empty
    targets: tuple[Target, ...]
    probes: tuple[Probe, ...]  # what the next pass over the data must find; empty when done
    collect_limit: int  # values collected at once, over every probe

    @property
    def done(self) -> bool:
        return not self.probes


@dataclass(frozen=True)
class Scan:
    """One staged part, and the probes to run over its values: its bytes, or, for a worker
    that sees the service's files, its path (the worker reads only the probed columns)."""

    data: bytes
    probes: tuple[Probe, ...]
    path: str | None = None


@dataclass(frozen=True)
class Found:
    """What one probe found in one piece of the data."""

    values: bytes = b""  # float64: the values under the prefix, or in its window
    buckets: bytes = b""  # uint16: the next digits present, if counting
    counts: bytes = b""  # int64: values per digit
    low: float = float("inf")  # the least and greatest value under the prefix
    high: float = float("-inf")
    below: int = 0  # values under the prefix below its window
    over: bool = False  # more in the window than it may keep: none kept


ScanResult = tuple[Found, ...]  # one per probe


@dataclass(frozen=True)
class Narrow:
    selection: Selection
    results: tuple[ScanResult, ...]  # one per staged part


@dataclass(frozen=True)
class Finish:
    """Everything needed to write the file's features part."""

    source_file: str
    source_table: str
    sha256: str
    rows: int
    selection: Selection
    sets: tuple[str, ...]
    compression: str
