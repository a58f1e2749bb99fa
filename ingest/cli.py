"""The `ingest` command. Synchronous shell: parse, load config, `asyncio.run` once.

Exit codes are named below. `ingest once` uses the first five; a writing command (`run`,
`once`, `compact`, `ledger rebuild`) exits BUSY when another process holds the output folder.

Each command imports what it needs when it runs. This module is imported again
in every worker process (multiprocessing re-runs the parent's main script
there), so it stays light: a worker starts, and takes its first file, sooner.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from . import __version__, blas, logs, memory, stacks
from .config import BUILT_IN_SETS, Config, load, override
from .errors import ClusterLost, ConfigError, LedgerError, OutputLocked, one_line
from .folders import check_distinct, check_usable, holds_anything
from .stop_signals import stop_signals
from .store.layout import Layout

OK = 0  # every file ingested, or skipped as already ingested
FAILED = 1  # an unexpected failure
USAGE = 2  # a usage or config error; the message names the key or flag
QUARANTINED = 3  # finished, but at least one file was quarantined
BUSY = 4  # another ingest process holds the output folder's writer lock
STDOUT_CLOSED = 128 + signal.SIGPIPE  # the reader of stdout went away, as a shell reports it

log = logging.getLogger("ingest")


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, naming the flag, as a config error is; exit 2."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


class _UsageError(Exception):
    """The command line could not be parsed (`main` says so, as `--log-format` asks)."""


def _asks_json(args: tuple[str, ...]) -> bool:
    """Whether the command line asks for JSON log lines, read before it is parsed: a
    scheduled run's log takes its usage errors as it takes the rest."""
    return "--log-format=json" in args or ("--log-format", "json") in itertools.pairwise(args)


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", type=Path, help="config file (default ./config.toml)")
    common.add_argument("--drop", type=Path, help="override [paths] drop")
    common.add_argument("--output", type=Path, help="override [paths] output")
    common.add_argument("--workers", type=int, help="override [pipeline] workers (0 = all cores)")
    common.add_argument("--log-format", choices=("text", "json"), default="text")
    common.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    writer = _Parser(add_help=False)
    writer.add_argument(
        "--wait", action="store_true",
        help="if another ingest process writes to the output folder, wait for it (else exit 4)",
    )
    parser = _Parser(
        prog="ingest", description="Turn files dropped into a folder into Parquet, exactly once."
    )
    parser.add_argument("--version", action="version", version=f"ingest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run", parents=[common, writer], help="ingest the backlog, then watch until a signal"
    )
    commands.add_parser(
        "once", parents=[common, writer], help="ingest everything present, then exit"
    )
    status_cmd = commands.add_parser("status", parents=[common], help="counts, backlog, quarantine")
    status_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser(
        "compact", parents=[common, writer],
        help="merge small part files, atomically for readers",
    )
    explain_cmd = commands.add_parser(
        "explain", parents=[common], help="the life of one input, from the ledger"
    )
    explain_cmd.add_argument("path", help="the input, relative to the drop folder, or absolute")
    explain_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    ledger_cmd = commands.add_parser(
        "ledger", parents=[common, writer], help="maintain the ledger"
    )
    ledger_cmd.add_argument("action", choices=("rebuild",), help="rebuild it from the output")
    return parser


def _check_feature_sets(config: Config) -> None:
    """A set that cannot be loaded is a config error, not a fault of every input file."""
    if BUILT_IN_SETS.issuperset(config.features.sets):
        return  # nothing to load, and numpy stays out of the service's process
    from .compute.features import load_set

    for name in config.features.sets:
        try:
            function = load_set(name)
        except Exception as exc:  # whatever its import raises: a SyntaxError, its own error
            plain = isinstance(exc, ImportError | AttributeError | ValueError)
            what = "" if plain else f"{type(exc).__name__}: "
            raise ConfigError(f"[features] sets: cannot load {name!r}: {what}{exc}") from None
        if not callable(function):
            raise ConfigError(f"[features] sets: {name!r} is not a function")


def _check_format(config: Config) -> None:
    if config.output.format == "delta" and importlib.util.find_spec("deltalake") is None:
        raise ConfigError(
            '[output] format = "delta" needs the deltalake package:'
            " pip install 'ingest[delta]'"
        )
    if config.output.format == "delta" and "%" in str(config.paths.output):
        # deltalake takes a table's path for a URL: `%20` became a space, and each
        # commit then failed half in the log, at every restart too.
        raise ConfigError(
            f'[output] format = "delta": [paths] output = {str(config.paths.output)!r} holds'
            ' "%", which deltalake reads as a URL\'s escape; choose a folder without it'
        )


def _configure(args: argparse.Namespace) -> Config:
    config = load(args.config)
    config = override(config, drop=args.drop, output=args.output, workers=args.workers)
    check_distinct(config)
    return config


@contextmanager
def _writer(config: Config, wait: bool, early: list[int]) -> Iterator[bool]:
    """Hold the output folder's writer lock for the block; yields False if a signal came
    while waiting for it (--wait), in which case the command does nothing."""
    from .store.lock import WriterLock

    def waiting(pid: int | None) -> None:
        log.info(
            "waiting for %s, which is writing to %s, to finish (--wait)",
            f"pid {pid}" if pid is not None else "another ingest process", config.paths.output,
        )

    with WriterLock(config.state_dir) as lock:
        held = lock.acquire(wait, lambda: bool(early), waiting)
        if not held:
            log.info("stopped while waiting for the output folder; nothing was done")
        yield held


def _emit(text: str) -> int:
    """Print a command's result. A reader that closed the pipe early (`ingest status |
    head`) ends the command quietly, as it would any Unix tool."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python flushes stdout again at exit; let that write go nowhere instead of failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return STDOUT_CLOSED
    return OK


def _serve(config: Config, mode: str, early: list[int]) -> int:
    import asyncio

    idle = mode == "once" and not holds_anything(config.paths.drop)  # no worker is started
    if config.pipeline.executor == "process" and not idle:
        from .aio import forkserver

        forkserver.start()  # before the service's own imports
    from .aio.service import Service

    progress = None
    if mode == "once" and sys.stderr.isatty():
        from .progress import Progress  # rich: imported only where a bar is shown

        progress = Progress()
    service = Service(config, mode, progress, early_signals=early)
    # What the imports made lives as long as the process. Frozen, the garbage collector
    # no longer walks it in every full collection, each of which holds the event loop:
    # with 20,000 files in flight the longest went from 66 to 28 ms.
    gc.freeze()
    try:
        summary = asyncio.run(service.serve())
    except KeyboardInterrupt:  # a SIGINT between the loop's handlers and the next ones
        os._exit(128 + signal.SIGINT)
    finally:
        # The loop's signal handlers closed with it; a signal from here on (its last lines
        # waiting on a stderr nobody reads, say) ends the process at once.
        _exit_on_signals()
    logs.summary(summary.line())
    if summary.failed is not None:
        if summary.internal:
            log.error("ingest stopped on an internal failure: %s", summary.failed)
        else:
            log.error("ingest stopped: %s", summary.failed)
        return FAILED
    if mode == "once" and summary.outcomes["uncommitted"]:
        log.error("%d files failed to commit; they stay in the drop folder for the next run",
                  summary.outcomes["uncommitted"])
        return FAILED
    if mode == "once" and summary.outcomes["unreadable"]:
        # Not ingested, and no run reads it while it stays so (no permission, say): a
        # scheduler must hear of it, as of a quarantine.
        log.error("%d files could not be read; they stay in the drop folder for the next run",
                  summary.outcomes["unreadable"])
        return FAILED
    if mode == "once" and summary.outcomes["quarantined"]:
        return QUARANTINED
    return OK


def _compact(config: Config, early: list[int]) -> int:
    import time

    from .store.compact_all import compact_all
    from .store.lasting import the_machines

    started = time.monotonic()
    try:
        outcomes = compact_all(config, stop=lambda: bool(early))
    except (ConfigError, LedgerError):
        raise  # said as any command's: one line, exit 2
    except Exception as exc:
        if not the_machines(exc):
            raise  # a fault of ours: its traceback
        log.error(
            "compaction stopped: %s; each partition is as it was or compacted whole, and"
            " `ingest compact` goes on from there", one_line(exc),
        )
        return FAILED
    log.info(
        "compacted %d partitions: parts %d -> %d, %.1f MB -> %.1f MB in %.1fs",
        len(outcomes), sum(o.before for o in outcomes), sum(o.after for o in outcomes),
        sum(o.bytes_before for o in outcomes) / 1e6, sum(o.bytes_after for o in outcomes) / 1e6,
        time.monotonic() - started,
    )
    return OK


def _hold_signals(early: list[int]) -> dict[int, object]:
    """Until the command knows what a signal means to it, remember SIGINT/SIGTERM instead
    of dying of them: for the service, a stop requested during start-up still means "drain
    and exit 0" once the event loop takes over. A second exits at once, as it would once
    the command runs. Returns the handlers it replaced."""

    def hold(signum: int, frame: object) -> None:
        early.append(signum)
        if len(early) > 1:  # asked twice: at once, as safe this early as a kill -9
            logs.exit_now(f"ingest: {signal.Signals(signum).name} again: exiting now", 128 + signum)

    previous: dict[int, object] = {}
    for signum in stop_signals():
        previous[signum] = signal.signal(signum, hold)
    return previous


class Interrupted(BaseException):
    """SIGINT or SIGTERM ended a command where it was (`_interrupt_on_signals`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt_on_signals(early: list[int]) -> None:
    """`status`, `explain` and `ledger rebuild` end where they are on SIGINT or SIGTERM:
    the first two only read, and a rebuild puts its new ledger in place only once whole."""

    def interrupt(signum: int, frame: object) -> None:
        early.append(signum)
        if len(early) == 1:  # once: the cleanup an Interrupted sets off is not cut short
            raise Interrupted(signum)

    for signum in stop_signals():
        signal.signal(signum, interrupt)
    if early:
        raise Interrupted(early[0])


def _stop_between_partitions(early: list[int]) -> None:
    """`compact`: the first SIGINT or SIGTERM ends it after the partition under way (it
    asks `early` before each); a second exits at once, as safely as a kill -9 would (each
    step of a compaction is repaired or finished by the next command)."""

    # Python runs a handler between bytecodes: two signals that land during one long call
    # into C (a partition's Parquet write, an fsync) run it once. The wakeup fd receives a
    # byte for each signal as it lands, so that the handler counts them.
    landed, wakeup = os.pipe()
    os.set_blocking(landed, False)
    os.set_blocking(wakeup, False)
    signal.set_wakeup_fd(wakeup, warn_on_full_buffer=False)
    stops = {int(signum) for signum in stop_signals()}

    def stop(signum: int, frame: object) -> None:
        try:
            count = sum(1 for number in os.read(landed, 4096) if number in stops)
        except BlockingIOError:
            count = 1
        if early or count > 1:
            logs.exit_now(
                f"ingest: a second signal ({signal.Signals(signum).name}): exiting now; the"
                " next command finishes or undoes the partition under way", 128 + signum,
            )
        early.append(signum)

    for signum in stop_signals():
        signal.signal(signum, stop)


# The commands that end where they are on SIGINT or SIGTERM (`_on_signals`); `compact`
# ends between partitions, and the service sets its own.
INTERRUPTIBLE = ("status", "explain", "ledger")


def _on_signals(command: str, early: list[int]) -> None:
    """What SIGINT and SIGTERM do from here on."""
    if command in INTERRUPTIBLE:
        _interrupt_on_signals(early)
    elif command == "compact":
        _stop_between_partitions(early)


def _exit_on_signals() -> None:
    """Once the command is done, a signal while its last lines are written exits at once."""
    for signum in stop_signals():
        signal.signal(signum, lambda received, frame: os._exit(128 + received))


def _per_file_lines(parsed: argparse.Namespace) -> bool:
    """One line per file, except for `once` on a terminal: there the progress bar counts
    the files, and only warnings (quarantined, vanished) and the summary are printed.
    Logs read later (not a terminal, JSON) and DEBUG keep every line."""
    on_terminal = parsed.command == "once" and sys.stderr.isatty()
    return not on_terminal or parsed.log_format == "json" or parsed.log_level == "DEBUG"


def main(*args: str) -> int:
    """Run the command in `args` and return its exit code. SIGINT and SIGTERM keep the
    meaning they have for the command (a second ends the process at once) until it returns,
    when the handlers before it are put back."""
    early: list[int] = []
    previous = _hold_signals(early)
    previous[signal.SIGUSR1] = stacks.install()  # `cli` keeps it installed until the exit
    memory.limit_arenas()  # before any thread starts
    memory.reuse_block_buffers()
    blas.one_thread()  # before numpy is imported
    logs.quiet_resource_tracker()  # before a pool starts it
    try:
        try:
            parsed = _parser().parse_args(args)
        except _UsageError as exc:
            _say("json" if _asks_json(args) else "text", str(exc), prefix="", last=True)
            return USAGE
        listener = logs.configure(parsed.log_format, parsed.log_level, _per_file_lines(parsed))
        stopped_by: int | None = None
        try:
            _on_signals(parsed.command, early)
            return _run(parsed, early)
        except Interrupted as exc:
            stopped_by = exc.signum
            return 128 + exc.signum
        finally:
            _exit_on_signals()
            listener.stop()
            if stopped_by is not None:  # the last line, after those logged before it
                _say(parsed.log_format, f"stopped by {signal.Signals(stopped_by).name}",
                     last=True, level=logging.INFO)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _run(parsed: argparse.Namespace, early: list[int]) -> int:
    try:
        config = _configure(parsed)
        if parsed.command == "status":
            from .store import status

            return _emit(status.render(status.collect(config), parsed.json))
        if parsed.command == "explain":
            return _explain(config, parsed.path, parsed.json, parsed.log_format)
        _check_format(config)
        if parsed.command in ("compact", "ledger"):
            check_usable(config, only=("output",))  # a rebuild only reads the quarantine
        else:
            check_usable(config)
            _check_feature_sets(config)
        # Every other command writes to the output folder: it runs holding the writer lock.
        with _writer(config, getattr(parsed, "wait", False), early) as held:
            if not held:
                return OK
            if parsed.command == "ledger":
                return _rebuild(config)
            if parsed.command == "compact":
                return _compact(config, early)
            return _serve(config, parsed.command, early)
    except OutputLocked as exc:
        _say(parsed.log_format, str(exc))
        return BUSY
    except (ConfigError, LedgerError) as exc:
        _say(parsed.log_format, str(exc))
        return USAGE
    except ClusterLost as exc:  # may pass: a supervisor tries again (exit 1, not 2)
        _say(parsed.log_format, str(exc))
        return FAILED
    except Exception:
        log.exception("ingest failed")
        return FAILED


def _say(
    log_format: str, message: str, last: bool = False, prefix: str = "ingest: ",
    level: int = logging.ERROR,
) -> None:
    """Why a command stops: `ingest: <message>`, or with `--log-format json` a log line
    like every other, for a log file a scheduled run appends its stderr to. `last`: the
    log's thread has stopped (or not started), and the line is written here, after its
    lines."""
    message = _escaped(message)
    if log_format != "json":
        print(f"{prefix}{message}", file=sys.stderr)
    elif last:
        record = logging.LogRecord("ingest", level, __file__, 0, message, None, None)
        print(logs.JsonFormatter().format(record), file=sys.stderr)
    else:
        log.error(message)


def _escaped(message: str) -> str:
    """The message with each character that would break its line, or the terminal's
    display (a line break, a NUL, an escape), written as an escape: a name or a path from
    the config, or an error a plugin raised, may hold one. A byte of a name that is not
    UTF-8 is \\xNN, as the log and the tables write it (`logs.utf8`)."""
    message = logs.utf8(message)
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message)


def _rebuild(config: Config) -> int:
    from .store.rebuild import rebuild

    counts = rebuild(Layout.of(config))
    return _emit("rebuilt the ledger: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


def _explain(config: Config, path: str, as_json: bool, log_format: str) -> int:
    from .store import explain

    report = explain.collect(config, path)
    if report is None:
        kind = explain.passed_by(config, path)
        where = {
            None: f"it is not in the drop folder {config.paths.drop}",
            "a folder": f"in the drop folder {config.paths.drop} it is a folder, whose files"
            " are inputs each under its own path",
            explain.OUTSIDE: f"in the drop folder {config.paths.drop} it is {explain.OUTSIDE},"
            " which ingest passes by: it reads only what is inside the drop folder",
            explain.UNFINISHED: f"in the drop folder {config.paths.drop} it is"
            f" {explain.UNFINISHED}, which ingest passes by until it is renamed",
            explain.UNMATCHED: f"in the drop folder {config.paths.drop} it is"
            f" {explain.UNMATCHED} ({', '.join(config.watch.patterns)}), which ingest passes"
            " by",
        }.get(kind, f"in the drop folder {config.paths.drop} it is {kind}, which ingest passes"
                    " by: it reads regular files only")
        _say(log_format, f"{path}: unknown input; the ledger has no record of it and {where}")
        return FAILED
    return _emit(explain.render(report, as_json))


def cli(*args: str) -> None:
    """The console script: `ingest ...`."""
    stacks.install()  # through the exit too, where a process may hang as well
    code = main(*(args or sys.argv[1:]))
    _exit_on_signals()  # while the interpreter flushes and ends: no traceback to a stuck pipe
    sys.exit(code)
