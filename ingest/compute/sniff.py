"""The dialect of a CSV file: delimiter, quotes, header, notes, comments, decimal comma, dates.

Runs in a worker process. The common file, comma-separated with a header of
names over rows with numbers and no quotes, is recognised from its first lines
in microseconds (`plain`), and so is one as plain but for a `;`, tab or `|`
delimiter (`plain_delimited`), so thousands of tiny files pay nothing for the
check. Any other file is put to DuckDB's CSV sniffer, which reads as many
dialects as any tool we measured (bench/README.md, "Dialect detection"): a
sample of the file's head is written to a temporary file and `sniff_csv` reads
it, in about a millisecond. pyarrow then parses the file with what was found.

What the table pins (`CsvOptions`) is passed to the sniffer as settled, so the
rest is detected around it, and overrides whatever was detected.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import tempfile
import threading
import time
from dataclasses import replace
from typing import Any

from .. import bytescan
from ..dialect import PLAIN, CsvOptions, Dialect

# The head of a file the sniffer sees; DuckDB itself samples about 20,000 rows.
SAMPLE_BYTES = 1 << 20
# DuckDB's sniffer reads a path: each sample is written to a temporary file so named.
SAMPLE_PREFIX = "ingest-sniff-"
STALE_SAMPLE_S = 3600
# Where the sniffer finds no dialect in that head, it is asked again of a shorter one: it
# fails on a file whose rows end with a delimiter its header does not once the sample
# holds more than about 2,000 of them, and reads the first thousand.
SHORT_SAMPLE_LINES = 1000
# Lines of a file that `plain` looks at.
PLAIN_LINES = 20
PLAIN_BYTES = 64 << 10
_NUMBER = re.compile(rb"\s*[-+]?(\d|\.\d)")
_WHOLE_NUMBER = re.compile(rb"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
_DECIMAL_COMMA = re.compile(rb"\d,\d")
# A number whose commas each have three digits after them: `1,234` and `12,500,000` are
# thousands as often as decimals. DuckDB reads a column of only these as text.
_GROUPED = re.compile(rb"\s*[-+]?\d{1,3}(,\d{3})+\s*")
# A date that is not ISO 8601 (03/09/1997, 3.9.97, 1997/09/03, 2023-1-5, 31 12 2023):
# pyarrow needs its format.
_FOREIGN_DATE = re.compile(
    rb"(?:^|,)\s*(?:\d{1,2}[/.\- ]\d{1,2}[/.\- ]\d{2,4}|\d{4}[/.]\d{1,2}[/.]\d{1,2}"
    rb"|\d{4}-(?:\d-\d{1,2}|\d{2}-\d)(?!\d))"
)
_NOT_PLAIN = (b'"', b"'", b";", b"\t", b"|")
_EMPTY = "(empty)"


def plain(data: bytes) -> bool:
    """Is this the common file: commas, a header of distinct names, rows with numbers,
    no quotes, the same width throughout its first lines?"""
    return _plain_in(data, b",")


def plain_delimited(data: bytes) -> Dialect | None:
    """The dialect DuckDB's sniffer finds in a file as plain as `plain` asks but for its
    delimiter, `;`, tab or `|` (a European spreadsheet's export, a database's dump), with
    no comma at all (a decimal comma, or a comma in text, is the sniffer's to read) and
    no date that needs a format in any row; None for any other file. A drop folder of
    thousands of small such files would otherwise pay the sniffer's few milliseconds for
    each. Only a file seen whole (at most PLAIN_LINES rows, PLAIN_BYTES): a quote, a
    comment or a decimal comma further on is what the sniffer, which reads a MB, finds."""
    if len(data) > PLAIN_BYTES or data.count(b"\n", 0, -1) > PLAIN_LINES:
        return None
    header = data[: data.find(b"\n")]
    found = [d for d in _OTHER_DELIMITERS if d in header]
    if len(found) != 1 or b"," in data:
        return None
    delimiter = found[0]
    if not _plain_in(data, delimiter, every_row=True):
        return None
    return replace(PLAIN, delimiter=delimiter.decode(), quote="")


_OTHER_DELIMITERS = (b";", b"\t", b"|")
# Every dialect `plain` and `plain_delimited` find.
PLAIN_DIALECTS = frozenset(
    {PLAIN, *(replace(PLAIN, delimiter=d.decode(), quote="") for d in _OTHER_DELIMITERS)}
)


def _plain_in(data: bytes, delimiter: bytes, every_row: bool = False) -> bool:
    """`plain`'s test in `delimiter`; dates that need a format looked for in the first
    row (in every row, if that has an empty value), or in `every_row`."""
    head = data[:PLAIN_BYTES]
    pieces = head.split(b"\n", PLAIN_LINES + 1)
    if len(pieces) > PLAIN_LINES + 1 or len(head) < len(data):
        pieces.pop()  # the rest of the head, not a whole line
    if not pieces:
        return False  # a first line longer than the head
    header = pieces[0].removesuffix(b"\r")
    if header.startswith(b"#") or any(c in header for c in _NOT_PLAIN if c != delimiter):
        return False
    names = header.split(delimiter)
    width = len(names)
    if width < 2 or len(set(names)) != width:
        return False
    if any(not name.strip() or _NUMBER.match(name) for name in names):
        return False
    rows = pieces[1:]
    if rows and not rows[-1]:
        rows.pop()  # the final newline
    if not rows:
        return False
    for row in rows:
        if row.count(delimiter) != width - 1 or any(c in row for c in (b'"', b"'")) or not row:
            return False
    dates = _foreign_date(delimiter)
    # A date column is known by its first value, unless that is empty: then by any other.
    looked_at = rows if every_row or _has_empty_field(rows[0], delimiter) else rows[:1]
    if any(dates.search(row) for row in looked_at):
        return False
    return _typed_column(rows, delimiter)


def _has_empty_field(row: bytes, delimiter: bytes) -> bool:
    row = row.removesuffix(b"\r")
    return row.startswith(delimiter) or row.endswith(delimiter) or delimiter * 2 in row


@functools.cache
def _foreign_date(delimiter: bytes) -> re.Pattern[bytes]:
    return re.compile(_FOREIGN_DATE.pattern.replace(b",", re.escape(delimiter), 1))


def _typed_column(rows: list[bytes], delimiter: bytes = b",") -> bool:
    """Does a column hold numbers in every row looked at, empty cells aside? Only then
    does the header stand out as DuckDB's sniffer tells it: a name its column's type
    cannot hold. A column of `1` and `x`, or of `1` and a date, is text, like its name."""
    fields = [row.split(delimiter) for row in rows]
    candidates = [i for i, field in enumerate(fields[0]) if _WHOLE_NUMBER.match(field)]
    for row in fields[1:]:
        candidates = [
            i for i in candidates if _WHOLE_NUMBER.match(row[i]) or not row[i].strip()
        ]
        if not candidates:
            return False
    return bool(candidates)


def plain_like(data: bytes, header_end: int) -> bool:
    """For a file whose header line is one `plain` already accepted: is the rest plain
    too? No quotes of either kind, no blank line (the reader skips it, and the joint
    parse's row count with it), and no date that needs a format in its first row (or,
    if that has an empty value, in its first rows)."""
    if b"'" in data or b'"' in data or bytescan.blank_line(data):
        return False
    row_end = data.find(b"\n", header_end)
    rows = [data[header_end: row_end if row_end >= 0 else None]]
    if _has_empty_field(rows[0], b","):  # as `plain` looks, below an empty first value
        rows = data[header_end: header_end + PLAIN_BYTES].split(b"\n", PLAIN_LINES)[:PLAIN_LINES]
    return not any(_FOREIGN_DATE.search(row) for row in rows)


@functools.cache
def _connection(thread: int) -> Any:
    """One DuckDB connection per thread of a worker (a dask worker runs tasks in threads,
    and a connection is not to be shared between them), each on one thread of DuckDB's
    own: the pool owns the cores."""
    import duckdb  # only files that are not plain need it: workers start without it

    return duckdb.connect(config={"threads": 1})


def _sample(data: bytes, limit: int = SAMPLE_BYTES) -> bytes:
    """The head of the file, cut after a whole record: a cut inside a quoted field (a
    value with line breaks) leaves a quote open, and the sniffer then finds no dialect."""
    if len(data) <= limit:
        return data
    odd = data.count(b'"', 0, limit) % 2
    end = bytescan.last_unquoted_newline(data, limit, odd)
    if end < limit // 2:
        # Quotes balance nowhere near the cut: one that never closes, which the sniffer
        # must see to call the file quoted (`_dialect`). Cut at a line.
        end = data.rfind(b"\n", 0, limit)
    return data[: end + 1] if end > 0 else data[:limit]


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _options(pins: CsvOptions, decimal: str | None) -> str:
    options = ["auto_detect = true"]
    if pins.delimiter is not None:
        options.append(f"delim = {_quoted(pins.delimiter)}")
    if pins.header is not None:
        options.append(f"header = {'true' if pins.header else 'false'}")
    if pins.skip_rows is not None:
        options.append(f"skip = {pins.skip_rows}")
    if decimal is not None:
        options.append(f"decimal_separator = {_quoted(decimal)}")
    return ", ".join(options)


def _sniff_file(path: str, pins: CsvOptions, decimal: str | None = None) -> dict[str, Any]:
    con = _connection(threading.get_ident())
    query = f"SELECT * FROM sniff_csv({_quoted(path)}, {_options(pins, decimal)})"
    cursor = con.execute(query)
    names = [column[0] for column in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def _text_columns(found: dict[str, Any]) -> int:
    return sum(column["type"] == "VARCHAR" for column in found["Columns"])


def _thousands(found: dict[str, Any], comma: dict[str, Any], sample: bytes) -> bool:
    """Would a decimal comma make numbers of a column whose commas may as well group
    thousands (`1,234`, `12,500`)? Read so, they would be a thousand times too small."""
    if len(found["Columns"]) != len(comma["Columns"]):
        return True  # not the same reading of the file: not one to trust
    flipped = [
        index
        for index, (was, now) in enumerate(zip(found["Columns"], comma["Columns"], strict=True))
        if was["type"] == "VARCHAR" and now["type"] != "VARCHAR"
    ]
    delimiter = _char(found["Delimiter"]).encode()
    rows = [
        line.rstrip(b"\r").split(delimiter)
        for line in sample.split(b"\n")[int(found["SkipRows"]) + bool(found["HasHeader"]):]
    ]
    rows = [row for row in rows if len(row) == len(found["Columns"])]
    for index in flipped:
        commas = [value.strip(b'"') for row in rows if b"," in (value := row[index])]
        if commas and all(_GROUPED.fullmatch(value) for value in commas):
            return True
    return False


def _char(value: str | None) -> str:
    return "" if value in (None, _EMPTY) else str(value)


def _formats(found: dict[str, Any]) -> tuple[tuple[int, str], ...]:
    """The strftime format of each date or timestamp column that is not ISO 8601."""
    by_type = {"DATE": found.get("DateFormat"), "TIMESTAMP": found.get("TimestampFormat")}
    return tuple(
        (index, str(by_type[column["type"]]))
        for index, column in enumerate(found["Columns"])
        if by_type.get(column["type"])
    )


def _notes(skipped: list[bytes], delimiter: str, width: int) -> bool:
    """Do the lines the sniffer skipped, with no header after them, look like notes,
    rather than a ragged header or rows? Notes have few fields, or hold a value beside a
    word (`Report date,2024-01-01`, `Stand:;31.12.2024`), where a header holds names
    only and a row mostly values; a header narrower than its rows (`a,b,c` over
    `1,2,3,4`) is a broken file, reported at its first bad row rather than silently read
    without it. Lines skipped before a header it found are notes, whatever their
    delimiters (`Report for Smith, John`), as DuckDB reads them."""
    mark = delimiter.encode()
    return all(
        2 * (line.count(mark) + 1) <= width or _titled(line.split(mark))
        for line in skipped if line.strip()
    )


def _titled(fields: list[bytes]) -> bool:
    """A value beside a word: a title's `Report date,2024-01-01`."""
    values = [bool(_NUMBER.match(f)) for f in fields if f.strip()]
    return any(values) and not all(values)


def _dialect(found: dict[str, Any], sample: bytes, decimal: str) -> Dialect:
    delimiter = _char(found["Delimiter"]) or ","
    skip, header = int(found["SkipRows"]), bool(found["HasHeader"])
    head = sample.split(b"\n", skip + 1)[: skip + 1]
    width = len(found["Columns"])
    if skip and not header and not _notes(head[:skip], delimiter, width):
        skip, header = 0, True
    header_line = head[skip] if skip < len(head) else b""
    if width == 1 and delimiter.encode() not in header_line:
        # No delimiter found at all: the RFC's comma reads a one-column file just the same,
        # and a ragged comma file fails loudly, at its line, instead of becoming one column.
        delimiter = ","
    quote = _char(found["Quote"])
    if not quote and _never_closed(sample, delimiter):
        # A field that opens with a quote which never closes: the sniffer calls that no
        # quoting at all and reads on; we read it as the broken quoting it is.
        quote = '"'
    return Dialect(
        delimiter=delimiter,
        quote=quote,
        escape=_char(found["Escape"]) if quote else "",
        header=header,
        skip_rows=skip,
        comment=_char(found["Comment"]),
        decimal=decimal,
        formats=_formats(found),
    )


def _never_closed(sample: bytes, delimiter: str) -> bool:
    """Does a field open with a quote that no quote closes on its line? One that closes
    (`"Big" Joe`) is text with quotes in it, as the sniffer reads it: not quoting."""
    opening = re.compile(b'(?:^|(?<=\n)|(?<=' + re.escape(delimiter.encode()) + b'))"')
    for found in opening.finditer(sample):
        end = sample.find(b"\n", found.end())
        if b'"' not in sample[found.end():end if end >= 0 else len(sample)]:
            return True
    return False


def sniff(data: bytes, pins: CsvOptions) -> Dialect:
    """DuckDB's verdict on the head of the file, or on a shorter head if it has none on
    that; the plain dialect if it has none on either."""
    sample = _sample(data)
    found = _sniff(sample, pins)
    if found is None:
        short = _sample(sample, _line_end(sample, SHORT_SAMPLE_LINES))
        if len(short) < len(sample):
            found = _sniff(short, pins)
    return PLAIN if found is None else found


def _line_end(data: bytes, lines: int) -> int:
    """Where the first `lines` lines of `data` end (all of it, if it has fewer)."""
    end = 0
    for _ in range(lines):
        end = data.find(b"\n", end) + 1
        if not end:
            return len(data)
    return end


def sweep_samples(older_than_s: float = STALE_SAMPLE_S) -> int:
    """Remove the sample files that workers killed mid-sniff left behind (SIGKILL, a hung
    worker killed by the service, the OOM killer): a sniff takes milliseconds, so one
    older than `older_than_s` is no one's. Called as a worker starts. How many went."""
    cutoff = time.time() - older_than_s
    removed = 0
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{SAMPLE_PREFIX}*.csv")):
        try:
            if os.lstat(path).st_mtime < cutoff:
                os.unlink(path)
                removed += 1
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def _sniff(sample: bytes, pins: CsvOptions) -> Dialect | None:
    import duckdb

    with tempfile.NamedTemporaryFile(prefix=SAMPLE_PREFIX, suffix=".csv") as fh:
        fh.write(sample)
        fh.flush()
        try:
            found = _sniff_file(fh.name, pins, pins.decimal)
            decimal = pins.decimal or "."
            if (
                pins.decimal is None
                and _char(found["Delimiter"]) not in ("", ",")
                and _text_columns(found)
                and _DECIMAL_COMMA.search(sample)
            ):
                # A decimal comma reads as text until the sniffer is told of it. Two sniffs:
                # a `;` file with decimal points must not lose its numbers to a guess.
                comma = _sniff_file(fh.name, pins, decimal=",")
                if _text_columns(comma) < _text_columns(found) and not _thousands(
                    found, comma, sample
                ):
                    found, decimal = comma, ","
        except duckdb.Error:
            return None  # not text the sniffer can read: the parser says what is wrong
    return _dialect(found, sample, decimal)


def detect(data: bytes, pins: CsvOptions | None = None) -> Dialect:
    """The dialect of a CSV file (UTF-8, without a BOM), with the table's pins applied."""
    pins = pins or CsvOptions()
    return pinned(plain_dialect(data, pins) or sniff(data, pins), pins)


def plain_dialect(data: bytes, pins: CsvOptions) -> Dialect | None:
    """The dialect `plain` or `plain_delimited` finds, where what the table pins agrees
    with it (its delimiter, a header, no lines to skip); else None."""
    if pins.header not in (None, True) or pins.skip_rows not in (None, 0):
        return None
    found = PLAIN if plain(data) else plain_delimited(data)
    if found is None or pins.delimiter not in (None, found.delimiter):
        return None
    return found


def second_look(data: bytes, pins: CsvOptions | None, first: Dialect) -> Dialect | None:
    """For a file `detect` read as plain from its first lines, and that then failed to
    parse in that dialect: DuckDB's verdict on a MB of it, if it differs (a `#` line at
    its end, a field in single quotes further on). None if there is no other to try."""
    pins = pins or CsvOptions()
    if plain_dialect(data, pins) is None:
        return None  # `first` was the sniffer's already
    found = pinned(sniff(data, pins), pins)
    return None if found == first else found


def pinned(found: Dialect, pins: CsvOptions | None) -> Dialect:
    """`found`, with what the table pins put in its place."""
    if pins is None:
        return found
    changes: dict[str, Any] = {}
    for key in ("delimiter", "header", "skip_rows", "decimal", "null_values"):
        value = getattr(pins, key)
        if value is not None:
            changes[key] = value
    if pins.timestamp_formats:
        changes.update(timestamp_formats=pins.timestamp_formats, formats=())
    return replace(found, **changes)
