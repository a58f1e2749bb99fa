"""config.toml: frozen, picklable, validated once.

Every key has the default from the SPEC. An unknown key, a wrong type or a bad
value raises `ConfigError` with a one-line message that names the key.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dialect import CsvOptions, parse_csv_options
from .errors import ConfigError, config_value
from .store.known import KNOWN_FILES

if TYPE_CHECKING:
    from wcmatch.glob import WcMatcher

DEFAULT_CONFIG = Path("config.toml")

DEFAULT_PATTERNS = (
    "*.csv",
    "*.csv.gz",
    "*.jsonl",
    "*.ndjson",
    "*.npy",
    "*.npz",
    "*.parquet",
    "*.arrow",
)
ON_SUCCESS = ("archive", "delete", "keep")
DEFAULT_TABLE = "records"
TABLE_NAME = re.compile(r"[a-z][a-z0-9_]*")
# A dask scheduler's address: an optional scheme, a host (an IPv6 one in brackets), a port.
# The schemes dask.distributed connects by (`distributed.comm.registry`), but `inproc`,
# which reaches no other process.
DASK_ADDRESS = re.compile(r"dask://((?:tcp|tls|ws|wss|ucx)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})")
HINT_TYPES = ("int64", "float64", "string", "bool", "date", "timestamp")
FORMATS = ("parquet", "delta")
TABLES = ("records", "features")
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")
# What a task carries of each file: its bytes (workers need no shared filesystem), or its
# path (workers that see the service's files read them themselves, sparing the coordinator);
# "auto" sends paths to workers that are this machine's processes, bytes to a cluster's.
SEND = ("auto", "bytes", "paths")


@dataclass(frozen=True)
class Paths:
    drop: Path = Path("drop")
    output: Path = Path("output")
    quarantine: Path = Path("quarantine")
    archive: Path = Path("archive")


@dataclass(frozen=True)
class Watch:
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    settle_ms: int = 200
    rescan_s: float = 30
    force_polling: bool = False
    on_success: str = "archive"
    # A canary file's event must arrive within this, or the watcher is taken for deaf.
    # Events arrive in milliseconds; the margin is for a loop busy with a flood of files.
    canary_wait_s: float = 5
    # `ingest once`, with nothing else left to do, waits this long for files still changing
    # (being written); then it leaves them for the next run, and ends. A file appended to
    # for ever (a device's log) kept it running, and holding the lock against every later run.
    once_unsettled_s: float = 60


@dataclass(frozen=True)
class Pipeline:
    workers: int = 0
    executor: str = "process"
    queue_files: int = 64
    memory_mb: int = 1024
    retries: int = 2
    task_timeout_s: float = 600
    drain_s: float = 30
    send: str = "auto"
    # A cluster's workers see the output folder at the same path (a shared mount): they
    # write their part files there, as the local pool's do, rather than return their bytes.
    shared_output: bool = False
    # Past inputs memory remembers (to skip a file recorded already, to dedupe by
    # content); older ones are asked of the ledger (`store/known.py`).
    known_files: int = KNOWN_FILES

    @property
    def local_workers(self) -> bool:
        """Whether the workers are this machine's processes (the local pool's, and
        `dask://local`'s): they see the drop folder, and its files' mtimes, as it is."""
        return self.executor in ("process", "dask://local")

    @property
    def sends_paths(self) -> bool:
        """Whether a task carries each file's path for its worker to read, not its bytes.
        A local worker sees the drop folder, and reading a file there spares the service
        a copy of every byte (into shared memory)."""
        if self.send == "auto":
            return self.local_workers
        return self.send == "paths"


# The feature sets built in (`compute/features.py`'s BUILT_IN); any other is a plugin.
BUILT_IN_SETS = frozenset({"summary"})


@dataclass(frozen=True)
class Features:
    time_column: str = "timestamp"
    sets: tuple[str, ...] = ("summary",)
    window: int = 0

    @property
    def plugins(self) -> bool:
        """Whether a set is a plugin, "package.module:function", rather than built in."""
        return any(":" in name for name in self.sets)


@dataclass(frozen=True)
class Output:
    tables: tuple[str, ...] = TABLES
    compression: str = "zstd"
    target_file_mb: int = 128
    flush_s: float = 1
    format: str = "parquet"


# Columns ingest adds to every records table itself: no file's, and no hint's.
RESERVED_COLUMNS = ("source_file", "source_sha256", "ingest_date", "_rescued_data")


@dataclass(frozen=True)
class Table:
    """`[tables.NAME]`: the files routed to a records table, and its column hints."""

    name: str
    patterns: tuple[str, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()  # column -> hint type (widen.HINTS)
    csv: CsvOptions | None = None  # [tables.NAME.csv]: what CSV detection may not decide

    def matches(self, rel: str) -> bool:
        """Whether a path relative to the drop folder is one of this table's files."""
        return _matcher(self.patterns).match(rel)


@dataclass(frozen=True)
class Metrics:
    port: int = 0  # 0 = no HTTP endpoint; the lag figures still go to the log
    host: str = "127.0.0.1"  # the interface it listens on: this machine only, by default


@dataclass(frozen=True)
class Config:
    paths: Paths = field(default_factory=Paths)
    watch: Watch = field(default_factory=Watch)
    pipeline: Pipeline = field(default_factory=Pipeline)
    features: Features = field(default_factory=Features)
    output: Output = field(default_factory=Output)
    metrics: Metrics = field(default_factory=Metrics)
    tables: tuple[Table, ...] = ()
    source: str = "built-in defaults"

    def route(self, rel: str) -> str:
        """The records table a file goes to: the first, in config order, whose patterns
        match its path relative to the drop folder; else the default table."""
        for table in self.tables:  # called for every input: no generator
            if table.matches(rel):
                return table.name
        return DEFAULT_TABLE

    def table(self, name: str) -> Table:
        return next((t for t in self.tables if t.name == name), Table(name))

    @property
    def ledger_path(self) -> Path:
        return self.paths.output / "_ingest" / "ledger.sqlite"

    @property
    def state_dir(self) -> Path:
        return self.paths.output / "_ingest"

    @property
    def workers(self) -> int:
        return self.pipeline.workers or os.cpu_count() or 1


# Each worker has two dispatching tasks in the main process, started whether or not the
# workers are; a cluster larger than this is served by fewer calls in flight.
MAX_WORKERS = 1024
# The largest integer a key takes: TOML's have no bound, and one past a float's range
# failed as a count of milliseconds or bytes is first turned into seconds or compared.
MAX_INTEGER = 2**53
# A table's name is a folder's, with room left for what the output adds beside it.
MAX_TABLE_NAME = 128
# Past inputs held in memory: some 200 bytes each (`store/known.py`).
MAX_KNOWN_FILES = 1_000_000_000

# A value check per key: (predicate, what the key must be). Types come from the dataclasses.
_RULES: dict[str, tuple[Any, str]] = {
    "watch.settle_ms": (lambda v: v >= 0, "an integer >= 0"),
    "watch.rescan_s": (lambda v: v > 0, "a number > 0"),
    "watch.canary_wait_s": (lambda v: v > 0, "a number > 0"),
    "watch.once_unsettled_s": (lambda v: v > 0, "a number > 0"),
    "watch.on_success": (lambda v: v in ON_SUCCESS, "one of " + ", ".join(ON_SUCCESS)),
    # Matched against a file's name alone: a "/" in one matches no file, silently.
    "watch.patterns": (
        lambda v: len(v) > 0 and not any("/" in p for p in v),
        'a non-empty list of globs of a file\'s name, without "/"',
    ),
    "pipeline.workers": (lambda v: 0 <= v <= MAX_WORKERS, f"an integer from 0 to {MAX_WORKERS}"),
    "pipeline.executor": (
        lambda v: v in ("process", "dask://local") or _dask_address(v),
        '"process", "dask://HOST:PORT" or "dask://local"',
    ),
    "pipeline.queue_files": (lambda v: v >= 1, "an integer >= 1"),
    "pipeline.memory_mb": (lambda v: v >= 1, "an integer >= 1"),
    "pipeline.retries": (lambda v: v >= 0, "an integer >= 0"),
    # The worker's alarm (setitimer) takes up to about 3 years; a larger limit is no limit.
    "pipeline.task_timeout_s": (lambda v: 0 < v <= 1e8, "a number > 0 and at most 1e8"),
    "pipeline.drain_s": (lambda v: v >= 0, "a number >= 0"),
    "pipeline.send": (lambda v: v in SEND, "one of " + ", ".join(SEND)),
    "pipeline.known_files": (
        lambda v: 0 <= v <= MAX_KNOWN_FILES, f"an integer from 0 to {MAX_KNOWN_FILES:_}"
    ),
    "features.window": (lambda v: v >= 0, "an integer >= 0"),
    "features.sets": (lambda v: len(v) > 0, "a non-empty list of strings"),
    "output.tables": (
        lambda v: len(v) > 0 and set(v) <= set(TABLES),
        "a non-empty list drawn from " + ", ".join(TABLES),
    ),
    "output.compression": (lambda v: v in COMPRESSIONS, "one of " + ", ".join(COMPRESSIONS)),
    "output.target_file_mb": (lambda v: v >= 1, "an integer >= 1"),
    "output.flush_s": (lambda v: v >= 0, "a number >= 0"),
    "output.format": (lambda v: v in FORMATS, "one of " + ", ".join(FORMATS)),
    "metrics.port": (lambda v: 0 <= v <= 65535, "a port number, 0 to disable"),
}

_SECTIONS: dict[str, type[Any]] = {
    "paths": Paths,
    "watch": Watch,
    "pipeline": Pipeline,
    "features": Features,
    "output": Output,
    "metrics": Metrics,
}


def _coerce(where: str, section: str, key: str, kind: type[Any], value: object) -> object:
    """Check `value` against the field's type; return it in the dataclass's form."""

    raw = value

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where} {key} must be {expected}, got {config_value(raw)}")

    rule = _RULES.get(f"{section}.{key}")
    expected = rule[1] if rule else kind.__name__
    if kind is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind is int:
        _check_integer(value, expected if "integer" in expected else f"an integer, {expected}", bad)
    elif kind is float:
        # TOML's inf and nan are not numbers a duration or a size can be: a flush_s of inf
        # never commits what it holds.
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            raise bad(expected if "number" in expected else f"a number, {expected}")
        value = float(value)
    elif kind is str or kind is Path:
        if not isinstance(value, str) or not value:
            raise bad(expected if kind is str and rule else "a non-empty string")
        if "\0" in value:
            raise bad("a string without a NUL character")
    elif kind is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise bad("a list of strings")
        value = tuple(value)
    if rule and not rule[0](value):
        raise bad(expected)
    return Path(value) if kind is Path else value  # type: ignore[arg-type]


def _check_integer(value: object, expected: str, bad: Callable[[str], ConfigError]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(expected)
    if abs(value) > MAX_INTEGER:
        raise bad(f"{expected}, at most 2**53")


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer of 400 digits, which TOML allows
        return False


_KINDS = {"Path": Path, "int": int, "float": float, "bool": bool, "str": str}


def _kind(annotation: str) -> type[Any]:
    return tuple if annotation.startswith("tuple") else _KINDS[annotation]


def _section(name: str, cls: type[Any], table: object, prefix: str) -> Any:
    where = f"{prefix}[{name}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{prefix}[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, object] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where} unknown key {key!r} (known: {', '.join(known)})")
        values[key] = _coerce(where, name, key, _kind(str(known[key].type)), value)
    return cls(**values)


def _tables(data: object, prefix: str) -> tuple[Table, ...]:
    """`[tables.NAME]` sections, in config order."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}[tables] must hold [tables.NAME] sections")
    return tuple(_table(name, body, prefix) for name, body in data.items())


def _table(name: str, body: object, prefix: str) -> Table:
    where = f"{prefix}[tables.{name}]"
    if not TABLE_NAME.fullmatch(name) or name == "features" or len(name) > MAX_TABLE_NAME:
        raise ConfigError(
            f"{where}: a table name must match [a-z][a-z0-9_]*, be at most {MAX_TABLE_NAME}"
            f" characters and not be \"features\", got {config_value(name)}"
        )
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where} must be a table")
    known = ("patterns", "columns", "csv")
    for key in body:
        if key not in known:
            raise ConfigError(f"{where} unknown key {key!r} (known: {', '.join(known)})")
    patterns = body.get("patterns", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise ConfigError(f"{where} patterns must be a list of strings, got {patterns!r}")
    for pattern in patterns:
        problem = _pattern_problem(pattern)
        if problem:
            raise ConfigError(
                f"{where} patterns: {config_value(pattern)} {problem}: a glob of a file's"
                " name (*.csv) or of its path in the drop folder (sensors/*.csv, sub/**/*.csv)"
            )
    if name != DEFAULT_TABLE and not patterns:
        raise ConfigError(f"{where} patterns must name at least one glob")
    columns = _hints(f"{prefix}[tables.{name}.columns]", body.get("columns", {}))
    csv = body.get("csv")
    if csv is not None and not isinstance(csv, Mapping):
        raise ConfigError(f"{prefix}[tables.{name}.csv] must be a table")
    pins = parse_csv_options(f"{prefix}[tables.{name}.csv]", csv) if csv is not None else None
    return Table(name, tuple(patterns), columns, pins)


def _hints(where: str, columns: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(columns, Mapping):
        raise ConfigError(f"{where} must be a table of column = type")
    seen: dict[str, str] = {}
    for column, kind in columns.items():
        if column.lower() in RESERVED_COLUMNS:
            raise ConfigError(
                f"{where} {column} is a column ingest adds itself"
                f" ({', '.join(RESERVED_COLUMNS)}): it takes no hint"
            )
        if kind not in HINT_TYPES:
            raise ConfigError(
                f"{where} {column} must be one of {', '.join(HINT_TYPES)}, got"
                f" {config_value(kind)}"
            )
        # Readers take names without regard to case, and so do hints (`widen.folded`, which
        # this module does not import: it loads pyarrow).
        if (other := seen.setdefault(column.lower(), column)) != column:
            raise ConfigError(f"{where} {other} and {column} name one column")
    return tuple(columns.items())


@functools.cache
def _matcher(patterns: tuple[str, ...]) -> WcMatcher[str]:
    """A pattern with a "/" matches a file's whole path in the drop folder (`./a.csv`
    that in the drop folder itself); one without matches its name in any folder. `**` is
    any number of folders; `*.CSV` is not `*.csv`, as on the file system."""
    from wcmatch import glob  # a config of no tables, as most are, starts without it

    anchored = [_anchored(pattern) for pattern in patterns]
    return glob.compile(anchored, flags=glob.GLOBSTAR | glob.FORCEUNIX)


def _anchored(pattern: str) -> str:
    if "/" not in pattern:
        return f"**/{pattern}"
    while pattern.startswith("./"):
        pattern = pattern[2:]
    return pattern


def _pattern_problem(pattern: str) -> str:
    """Why a table's pattern can match no input, or "": one that names no file ("." or
    "a/"), or one that begins at the root, not at the drop folder."""
    if pattern.startswith("/"):
        return "is absolute: patterns match a file's path in the drop folder"
    parts = _anchored(pattern).split("/")
    if pattern.endswith("/") or any(part in ("", ".", "..") for part in parts):
        return "matches no path"
    try:
        _matcher((pattern,))
    except ValueError as exc:
        return f"is not a glob ({exc})"
    return ""


def parse(data: Mapping[str, object], source: str = "config.toml") -> Config:
    """Build a Config from parsed TOML; paths are left as written."""
    prefix = f"{source}: "
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name == "tables":
            sections["tables"] = _tables(table, prefix)
            continue
        if name not in _SECTIONS:
            known = ", ".join([*_SECTIONS, "tables"])
            raise ConfigError(f"{prefix}unknown section [{name}] (known: {known})")
        sections[name] = _section(name, _SECTIONS[name], table, prefix)
    return Config(**sections, source=source)


def resolve_paths(config: Config, base: Path) -> Config:
    """Make every path absolute, relative ones against `base` (the config file's folder),
    and `~/...` below the home folder, as a shell would: not a folder named `~`."""
    resolved = {
        f.name: _absolute(base / _home(getattr(config.paths, f.name), f.name), f.name)
        for f in fields(config.paths)
    }
    return replace(config, paths=Paths(**resolved))


def _absolute(path: Path, key: str) -> Path:
    """The drop folder as named, through any symlink in its path: a link pointed at
    another folder while the service runs is a replaced drop folder, watched again
    (`aio/follow.py`). Every other folder where it is now."""
    return Path(os.path.abspath(path)) if key == "drop" else path.resolve()


def _home(path: Path, key: str) -> Path:
    if path.parts[:1] != ("~",):
        return path  # `~user/...` too is taken as written: a folder of that name
    try:
        return path.expanduser()
    except RuntimeError:
        raise ConfigError(
            f'[paths] {key} = "{path}": no home folder to put in place of "~" (HOME is not set)'
        ) from None


def _dask_address(value: str) -> bool:
    found = DASK_ADDRESS.fullmatch(value)
    return found is not None and 0 < int(found.group(3)) < 65536


def load(path: Path | None = None) -> Config:
    """Read a config file; a missing file means built-in defaults, relative to the cwd."""
    explicit = path is not None
    path = path or DEFAULT_CONFIG
    raw = b""
    try:
        # A byte order mark, which some Windows editors write at the start, is not TOML.
        raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: config file not found") from None
        return resolve_paths(Config(), Path.cwd())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: line {line} is not UTF-8 (byte {exc.start}); save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    return resolve_paths(parse(data, source=str(path)), path.resolve().parent)


def override(
    config: Config,
    drop: Path | None = None,
    output: Path | None = None,
    workers: int | None = None,
) -> Config:
    """Apply --drop, --output and --workers; flag paths are relative to the cwd."""
    paths = config.paths
    if drop is not None:
        paths = replace(paths, drop=_absolute(drop, "drop"))
    if output is not None:
        paths = replace(paths, output=output.resolve())
    pipeline = config.pipeline
    if workers is not None:
        if not 0 <= workers <= MAX_WORKERS:
            raise ConfigError(
                f"--workers must be an integer from 0 to {MAX_WORKERS}, got {workers}"
            )
        pipeline = replace(pipeline, workers=workers)
    return dataclasses.replace(config, paths=paths, pipeline=pipeline)
