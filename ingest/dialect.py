"""How a CSV file is written: what a table pins, and what was detected for one file.

Plain data, free of pyarrow, picklable: it travels to workers inside a `Task`
and comes back inside an `Outcome`. `CsvOptions` is what a user pins in
`[tables.NAME.csv]`; every key is optional, and what is left out is detected
per file. `Dialect` is the complete answer for one file, detected or pinned.
The detection itself runs in a worker (`ingest.compute.sniff`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError, config_value

DELIMITER_NAMES = {"\\t": "\t", "tab": "\t"}
DECIMALS = (".", ",")


@dataclass(frozen=True)
class CsvOptions:
    """What a table pins in `[tables.NAME.csv]`; None (or empty) = detect per file."""

    delimiter: str | None = None
    header: bool | None = None
    skip_rows: int | None = None
    decimal: str | None = None
    null_values: tuple[str, ...] | None = None
    timestamp_formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dialect:
    """How one CSV file was read: detected, pinned by its table, or a mix of both.

    `quote` and `escape` are "" for none; an empty `escape` with a quote means a
    quote inside a quoted field is doubled (RFC 4180). `formats` holds the
    strftime format of each date or timestamp column (by position) that is not
    ISO 8601, which the reader parses on its own.
    """

    delimiter: str = ","
    quote: str = '"'
    escape: str = ""
    header: bool = True
    skip_rows: int = 0  # lines before the header (notes, a title)
    comment: str = ""  # lines starting with it are not records
    decimal: str = "."
    null_values: tuple[str, ...] | None = None  # None: the reader's defaults
    timestamp_formats: tuple[str, ...] = ()  # tried on every column, as pinned
    formats: tuple[tuple[int, str], ...] = ()  # (column position, strftime format)
    # False for a file of one column, which shows no delimiter: a table whose first CSV
    # was one reads each later file's own, and its pin gives way to the first that shows one.
    delimited: bool = True

    def describe(self) -> str:
        """One short line for logs and `ingest explain`."""
        parts = [
            f"delimiter={self.delimiter!r}" if self.delimited else "delimiter=none (one column)",
            f"quote={self.quote!r}" if self.quote else "quote=none",
            f"header={'yes' if self.header else 'no'}",
        ]
        if self.escape and self.escape != self.quote:
            parts.append(f"escape={self.escape!r}")
        if self.skip_rows:
            parts.append(f"skip_rows={self.skip_rows}")
        if self.comment:
            parts.append(f"comment={self.comment!r}")
        if self.decimal != ".":
            parts.append(f"decimal={self.decimal!r}")
        if self.null_values is not None:
            parts.append(f"null_values={list(self.null_values)!r}")
        if self.timestamp_formats:
            parts.append(f"timestamp_formats={list(self.timestamp_formats)!r}")
        for column, fmt in self.formats:
            parts.append(f"column{column}={fmt!r}")
        return " ".join(parts)


PLAIN = Dialect()


def as_seen(dialect: Dialect | None, columns: int) -> Dialect | None:
    """The dialect a CSV of `columns` columns was read with, as it may pin its table's:
    one of a single column says that it showed no delimiter."""
    if dialect is None or columns > 1 or not dialect.delimited:
        return dialect
    return dataclasses.replace(dialect, delimited=False)


def dialect_to_json(dialect: Dialect) -> str:
    """A dialect as the ledger keeps it."""
    return json.dumps(dataclasses.asdict(dialect))


def dialect_from_json(text: str) -> Dialect:
    data = json.loads(text)
    nulls = data.get("null_values")
    return Dialect(**{
        **data,
        "null_values": None if nulls is None else tuple(nulls),
        "timestamp_formats": tuple(data.get("timestamp_formats", ())),
        "formats": tuple((int(c), str(f)) for c, f in data.get("formats", ())),
    })


def _strings(where: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} {key} must be a list of strings, got {config_value(value)}")
    return tuple(value)


def _delimiter(where: str, value: object) -> str:
    if isinstance(value, str):
        value = DELIMITER_NAMES.get(value, value)
    if not isinstance(value, str) or len(value) != 1:
        raise ConfigError(f"{where} delimiter must be one character, got {config_value(value)}")
    if value in "\r\n\"'\0" or not value.isascii():
        # Arrow's CSV reader takes one ASCII byte: another refused every file at its read.
        raise ConfigError(
            f"{where} delimiter must be one ASCII character, not a quote, a newline or NUL,"
            f" got {config_value(value)}"
        )
    return value


# The directives the C library's strptime knows (glibc's, which Arrow's timestamp parser
# calls on Linux); Arrow takes any other quietly, and then reads no value as a time.
_DIRECTIVE = re.compile(r"%(?:[EO]?[aAbBcCdDeFgGhHIjklmMnprRsStTuUVwWxXyYzZ%])")


def _timestamp_formats(where: str, value: object) -> tuple[str, ...]:
    formats = _strings(where, "timestamp_formats", value)
    for fmt in formats:
        if "%" not in fmt:
            raise ConfigError(
                f"{where} timestamp_formats must hold strftime formats such as"
                f' "%d.%m.%Y %H:%M:%S", got {config_value(fmt)}'
            )
        unknown = _DIRECTIVE.sub("", fmt)
        if "%" in unknown:
            bad = unknown[unknown.index("%"):][:2]
            raise ConfigError(
                f"{where} timestamp_formats: {config_value(fmt)} holds {bad!r}, which is no"
                " strptime directive (%Y %m %d %H %M %S %z %b %j ...)"
            )
    return formats


def parse_csv_options(where: str, table: Mapping[str, object]) -> CsvOptions:
    """Validate one `[tables.NAME.csv]` table; `where` prefixes every message,
    e.g. "config.toml: [tables.sensors.csv]". Raises ConfigError naming the key."""
    values: dict[str, object] = {}
    for key, value in table.items():
        if key == "delimiter":
            values[key] = _delimiter(where, value)
        elif key == "header":
            if not isinstance(value, bool):
                raise ConfigError(
                    f"{where} header must be true or false, got {config_value(value)}"
                )
            values[key] = value
        elif key == "skip_rows":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**53:
                raise ConfigError(
                    f"{where} skip_rows must be an integer >= 0, got {config_value(value)}"
                )
            values[key] = value
        elif key == "decimal":
            if value not in DECIMALS:
                raise ConfigError(f'{where} decimal must be "." or ",", got {config_value(value)}')
            values[key] = value
        elif key == "null_values":
            values[key] = _strings(where, key, value)
        elif key == "timestamp_formats":
            values[key] = _timestamp_formats(where, value)
        else:
            known = "delimiter, header, skip_rows, decimal, null_values, timestamp_formats"
            raise ConfigError(f"{where} unknown key {key!r} (known: {known})")
    if "decimal" in values and values["decimal"] == values.get("delimiter"):
        raise ConfigError(
            f"{where} decimal and delimiter are both {config_value(values['decimal'])}: a"
            " number's decimal mark cannot also part the fields"
        )
    return CsvOptions(**values)  # type: ignore[arg-type]
