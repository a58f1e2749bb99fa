"""Log lines: one per file outcome, as text or as JSON lines.

Fields ride on the record as `extra={"fields": {...}}`, so both formats carry
the same facts: the text form appends them as key=value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from .stop_signals import stop_signals

log = logging.getLogger("ingest")

# Files of one fate logged together: each file's name and its fields.
Batch = Sequence[tuple[str, dict[str, object]]]


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        batch: Batch | None = getattr(record, "files", None)
        if batch is None:
            return _utf8_text(_with_fields(super().format(record), getattr(record, "fields", {})))
        # A line per file of the batch, each as `outcome` would have made it.
        record.asctime = self.formatTime(record, self.datefmt)
        # The message ends the line: what comes before the file's name is the batch's.
        record.message = f"{record.fields['event']} "  # type: ignore[attr-defined]
        head = self.formatMessage(record)
        lines = [_with_fields(head + shown(file), fields) for file, fields in batch]
        return _utf8_text("\n".join(lines))


def _with_fields(line: str, fields: dict[str, Any]) -> str:
    # The message already names the event and the file. A loop, not a generator: the log
    # thread makes this for every file, in the service's process.
    parts = [line]
    for key, value in fields.items():
        if key != "event" and key != "file":
            parts.append(f"{key}={_text(value)}")
    return " ".join(parts)


def _text(value: object) -> str:
    if type(value) is int:  # the commonest field after latency_ms: one look, no isinstance
        return str(value)
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value)
    return json.dumps(utf8(text)) if (" " in text or not text or not text.isprintable()) else text


def utf8(text: str) -> str:
    """`text` as any UTF-8 reader takes it. Python carries each byte of a file name that is
    not UTF-8 (a Latin-1 name from an old Windows share) as a lone surrogate, which SQLite,
    Arrow and strict readers of a log refuse; each is written as \\xNN instead."""
    try:
        text.encode()
    except UnicodeEncodeError:
        # Each on its own: two names side by side must not make one character between them.
        return _SURROGATE.sub(_escaped, text)
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escaped(found: re.Match[str]) -> str:
    code = ord(found[0])
    # U+DC80-U+DCFF carry the bytes 0x80-0xFF of a name; any other is no name's.
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def _utf8_text(line: str) -> str:
    return line if line.isascii() else utf8(line)


def shown(name: str) -> str:
    """A file name as a log line shows it: quoted if it could break or forge a line, as
    a space can (`x.csv rows=5 sha256=0.csv` would read as fields after `x.csv`)."""
    if name.isprintable() and " " not in name:
        return name
    name = utf8(name)  # a byte that is not UTF-8 is printable as \xNN
    return name if name.isprintable() and " " not in name else json.dumps(name)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        batch: Batch | None = getattr(record, "files", None)
        if batch is not None:
            event = record.fields["event"]  # type: ignore[attr-defined]
            return "\n".join(
                _dumps({
                    **head, "message": f"{event} {shown(file)}", "event": event, "file": file,
                    **fields,
                })
                for file, fields in batch
            )
        entry = {**head, "message": record.getMessage(), **getattr(record, "fields", {})}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return _dumps(entry)


def _dumps(entry: dict[str, Any]) -> str:
    line = json.dumps(entry, default=str)
    if "\\ud" in line:  # a lone surrogate (or a character beyond the BMP, as a pair)
        line = json.dumps(
            {key: utf8(value) if isinstance(value, str) else value for key, value in entry.items()},
            default=lambda value: utf8(str(value)),
        )
    return line


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each line. While the progress bar
    of `ingest once` is live, rich puts a proxy there that prints lines above the bar
    instead of through it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always sys.stderr, as it is when the line is written


# On a terminal, before a last line: the cursor shown again (a progress bar hid it, and
# will not be there to show it), then the bar's line cleared for the line to take.
ON_A_TERMINAL = b"\x1b[?25h\r\x1b[2K"


def exit_now(line: str, code: int, wait_s: float = 0.1) -> NoReturn:
    """End the process at once (`os._exit`), as safely as a kill -9, after the lines queued
    for the log thread while it writes them (`LAST_LINES_S`), and `line` if stderr takes
    it within `wait_s`. The line goes straight to stderr's descriptor, from a thread:
    not through `sys.stderr`, whose buffer a signal handler may have interrupted mid-write,
    nor the log thread, which may not run again; and not waited for longer, since a pipe
    nobody reads, or a stalled terminal, must not hold an exit asked to be at once. A
    signal after this one is ignored: its handler would say the line again while it waits."""
    try:
        with contextlib.suppress(ValueError):  # not the main thread: no handler runs here
            for signum in stop_signals():
                signal.signal(signum, signal.SIG_IGN)
        if sys.__stderr__ is not None:  # else fd 2 may be another file's now: say nothing
            _let_queued_lines_out()
            data = (_as_logged(line) + "\n").encode("utf-8", "replace")
            if os.isatty(2) and os.environ.get("TERM") != "dumb":
                data = ON_A_TERMINAL + data
            writer = threading.Thread(target=_write_stderr, args=(data,), daemon=True)
            writer.start()
            writer.join(wait_s)
    finally:
        os._exit(code)


# After an exit at once, multiprocessing's resource tracker (a process of its own, on the
# same stderr) removes the pool's semaphores left behind, and says so in a warning of
# several plain-text lines: no news, and lines a JSON log's reader cannot parse. Its
# interpreter takes its warning filters from this process's command line options.
TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"


def quiet_resource_tracker() -> None:
    """Before the first process pool: the tracker it starts is given `TRACKER_QUIET`."""
    if TRACKER_QUIET not in sys.warnoptions:
        sys.warnoptions.append(TRACKER_QUIET)


def _as_logged(line: str) -> str:
    """`line` as a JSON line under `--log-format json`, so that every line of the log
    parses; as it is under text, where it is the last word a person reads."""
    handlers = logging.getLogger().handlers
    formatter = handlers[0].formatter if handlers else None
    if not isinstance(formatter, JsonFormatter):
        return line
    return formatter.format(logging.LogRecord("ingest", logging.WARNING, "", 0, line, None, None))


# Before an exit at once, the log thread may write the lines queued for it while it
# keeps writing them (each file committed by then has its line), but no longer than
# this; and not at all once it has not written one for the second figure (a stuck pipe).
LAST_LINES_S = (1.0, 0.1)


def _let_queued_lines_out() -> None:
    backlog = next((
        handler.backlog for handler in logging.getLogger().handlers
        if isinstance(handler, LoopSideHandler)
    ), None)
    if backlog is None:
        return
    longest, stalled = LAST_LINES_S
    started = moved = time.monotonic()
    left = backlog.queued
    while left and (now := time.monotonic()) - started < longest and now - moved < stalled:
        time.sleep(0.002)
        if backlog.queued != left:
            left, moved = backlog.queued, time.monotonic()


def _write_stderr(data: bytes) -> None:
    with contextlib.suppress(OSError):  # closed under us, or no reader: nothing to tell
        os.write(2, data)


# Lines waiting for the log thread, at most. While stderr is not read (a log shipper
# stuck, a pipe nobody drains), the lines past these are dropped and counted, and a
# line says how many once stderr is read again: held, a day of them could fill memory.
# The ledger still holds every file's fate (`ingest explain`).
QUEUE_LINES = 50_000


def _lines(record: logging.LogRecord) -> int:
    files: Batch | None = getattr(record, "files", None)
    return 1 if files is None else max(1, len(files))


class Backlog:
    """The lines queued for the log thread, and those dropped since one was last written.
    Shared by the threads that log and the one that writes."""

    def __init__(self, limit: int):
        self.limit = limit
        self.queued = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def admit(self, record: logging.LogRecord) -> bool:
        """Whether the record may be queued: it fits, or nothing is queued (a batch
        larger than the limit still goes when the writer has caught up)."""
        lines = _lines(record)
        with self._lock:
            if self.queued and self.queued + lines > self.limit:
                self.dropped += lines
                return False
            self.queued += lines
            return True

    def written(self, record: logging.LogRecord) -> int:
        """The record left the queue: the lines dropped since the last one did."""
        with self._lock:
            self.queued -= _lines(record)
            dropped, self.dropped = self.dropped, 0
            return dropped


class LoopSideHandler(logging.handlers.QueueHandler):
    """Puts a record on the queue with its message made, nothing more: the standard
    handler also formats it and copies it on the calling thread (the event loop), to
    guard against a process boundary this queue does not cross. Past the backlog's
    limit, the record is dropped and counted."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord], backlog: Backlog):
        super().__init__(records)
        self.backlog = backlog

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None  # the values as they are now
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.backlog.admit(record):
            self.queue.put_nowait(record)


class Writer(logging.handlers.QueueListener):
    """The log thread: writes each record, then says how many lines were dropped while it
    could not write."""

    def __init__(
        self, records: queue.SimpleQueue[logging.LogRecord], handler: logging.Handler,
        backlog: Backlog,
    ):
        super().__init__(records, handler)
        self.backlog = backlog

    def handle(self, record: logging.LogRecord) -> None:
        try:
            super().handle(record)
        finally:  # a write that failed still leaves the queue
            dropped = self.backlog.written(record)
        if dropped:
            super().handle(logging.makeLogRecord({
                "name": "ingest.logs", "levelno": logging.WARNING, "levelname": "WARNING",
                "msg": f"{dropped} log lines were dropped: stderr was not read while more"
                       f" than {self.backlog.limit} waited (the ledger holds every file's"
                       " fate: ingest explain)",
            }))


def _not_per_file(record: logging.LogRecord) -> bool:
    """Passes every line but a file's own INFO outcome (ingested, duplicate, ...)."""
    return record.levelno > logging.INFO or "event" not in getattr(record, "fields", {})


def configure(
    fmt: str = "text", level: str = "INFO", per_file: bool = True,
    queue_lines: int = QUEUE_LINES,
) -> logging.handlers.QueueListener:
    """Log through a queue: a thread writes the lines, so a slow reader of stderr (a full
    pipe, a busy journal) can never stall the event loop; at most `queue_lines` wait.
    Stop the returned listener at exit to flush it. Without `per_file`, a file's INFO
    outcome line is left out (a progress bar counts those); its warnings are still
    written."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    backlog = Backlog(queue_lines)
    listener = Writer(records, handler, backlog)
    listener.start()
    queued = LoopSideHandler(records, backlog)
    queued.setFormatter(handler.formatter)  # not used for its records: for `exit_now`
    if not per_file:  # left out before the queue: not held, nor counted as dropped
        queued.addFilter(_not_per_file)
    root = logging.getLogger()
    root.handlers[:] = [queued]
    root.setLevel(level.upper())
    # No line shows where it was logged from, or in which thread or process: not looking
    # those up halves a record's cost on the event loop (the logging HOWTO's optimisations).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # distributed and asyncio are chatty at INFO; their warnings still show.
    for name in ("distributed", "asyncio", "watchfiles"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _summary.setLevel(logging.INFO)
    return listener


# A run's summary line is written whatever --log-level: its logger keeps INFO.
_summary = logging.getLogger("ingest.summary")


def summary(line: str) -> None:
    """The line that says what a run did, in all."""
    _summary.info(line)


def outcome(event: str, file: str, level: int | None = None, /, **fields: object) -> None:
    """The one line that says what happened to a file; at `level`, else the event's own."""
    log.log(
        _level(event) if level is None else level, "%s %s", event, shown(file),
        extra={"fields": {"event": event, "file": file, **fields}},
    )


def outcomes(event: str, files: Batch, level: int | None = None) -> None:
    """The line of each of many files of one fate, as `outcome` makes it, in one record:
    one record per commit, not per file, on the event loop (a record costs it more than
    the line's formatting, which the log thread does)."""
    if len(files) == 1:
        file, fields = files[0]
        outcome(event, file, level, **fields)
    elif files:
        log.log(
            _level(event) if level is None else level, "%s %d files", event, len(files),
            extra={"fields": {"event": event}, "files": files},
        )


def _level(event: str) -> int:
    # What a user must act on is a warning, shown even where per-file lines are not.
    return (
        logging.WARNING if event in ("quarantined", "vanished", "unreadable", "uncommitted")
        else logging.INFO
    )
