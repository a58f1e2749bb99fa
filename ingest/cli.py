"""The `ingest` command. Synchronous shell: parse, load config, `asyncio.run` once.

Exit codes are named below; `ingest once` uses all four, `run` and `status` the first three.

Each command imports what it needs when it runs. This module is imported again
in every worker process (multiprocessing re-runs the parent's main script
there), so it stays light: a worker starts, and takes its first file, sooner.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from . import __version__, logs, memory
from .config import Config, load, override
from .errors import ConfigError, LedgerError
from .store.layout import Layout

OK = 0  # every file ingested, or skipped as already ingested
FAILED = 1  # an unexpected failure
USAGE = 2  # a usage or config error; the message names the key or flag
QUARANTINED = 3  # finished, but at least one file was quarantined

log = logging.getLogger("ingest")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="config file (default ./config.toml)")
    common.add_argument("--drop", type=Path, help="override [paths] drop")
    common.add_argument("--output", type=Path, help="override [paths] output")
    common.add_argument("--workers", type=int, help="override [pipeline] workers (0 = all cores)")
    common.add_argument("--log-format", choices=("text", "json"), default="text")
    common.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    parser = argparse.ArgumentParser(
        prog="ingest", description="Turn files dropped into a folder into Parquet, exactly once."
    )
    parser.add_argument("--version", action="version", version=f"ingest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run", parents=[common], help="ingest the backlog, then watch until a signal"
    )
    commands.add_parser("once", parents=[common], help="ingest everything present, then exit")
    status_cmd = commands.add_parser("status", parents=[common], help="counts, backlog, quarantine")
    status_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    ledger_cmd = commands.add_parser("ledger", parents=[common], help="maintain the ledger")
    ledger_cmd.add_argument("action", choices=("rebuild",), help="rebuild it from the output")
    return parser


def _check_feature_sets(config: Config) -> None:
    """A set that cannot be loaded is a config error, not a fault of every input file."""
    from .compute.features import load_set

    for name in config.features.sets:
        try:
            function = load_set(name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"[features] sets: cannot load {name!r}: {exc}") from None
        if not callable(function):
            raise ConfigError(f"[features] sets: {name!r} is not a function")


def _check_folders(config: Config) -> None:
    """Fail early, naming the key, if a folder cannot be made or used."""
    p = config.paths
    writable = config.watch.on_success != "keep"
    for key, folder, write in (
        ("drop", p.drop, writable),
        ("output", p.output, True),
        ("quarantine", p.quarantine, True),
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"[paths] {key} = {str(folder)!r}: cannot create: {exc.strerror}"
            ) from None
        mode = os.R_OK | os.X_OK | (os.W_OK if write else 0)
        if not os.access(folder, mode):
            need = "read and write" if write else "read"
            raise ConfigError(f"[paths] {key} = {str(folder)!r}: no {need} permission")


def _configure(args: argparse.Namespace) -> Config:
    config = load(args.config)
    return override(config, drop=args.drop, output=args.output, workers=args.workers)


def _serve(config: Config, mode: str, early: list[int]) -> int:
    import asyncio

    from .aio.service import Service
    from .progress import Progress

    progress = Progress() if mode == "once" and sys.stderr.isatty() else None
    service = Service(config, mode, progress, early_signals=early)
    # What the imports made lives as long as the process. Frozen, the garbage collector
    # no longer walks it in every full collection, each of which holds the event loop:
    # with 20,000 files in flight the longest went from 66 to 28 ms.
    gc.freeze()
    summary = asyncio.run(service.serve())
    log.info(summary.line())
    if summary.failed is not None:
        log.error("ingest stopped on an internal failure: %s", summary.failed)
        return FAILED
    if mode == "once" and summary.outcomes["quarantined"]:
        return QUARANTINED
    return OK


def _hold_signals(early: list[int]) -> dict[int, object]:
    """Until the event loop takes over, remember SIGINT/SIGTERM instead of dying of them:
    a stop requested during start-up still means "drain and exit 0". Returns the handlers
    it replaced."""
    previous: dict[int, object] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda received, frame: early.append(received))
    return previous


def main(*args: str) -> int:
    """Run the command in `args` and return its exit code (tests call this directly)."""
    early: list[int] = []
    previous = _hold_signals(early)
    memory.limit_arenas()  # before any thread starts
    try:
        parsed = _parser().parse_args(args)
        listener = logs.configure(parsed.log_format, parsed.log_level)
        try:
            return _run(parsed, early)
        finally:
            listener.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _run(parsed: argparse.Namespace, early: list[int]) -> int:
    try:
        config = _configure(parsed)
        if parsed.command == "status":
            from .store import status

            print(status.render(status.collect(config), parsed.json))
            return OK
        if parsed.command == "ledger":
            from .store.rebuild import rebuild

            counts = rebuild(Layout.of(config))
            print("rebuilt the ledger: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
            return OK
        _check_folders(config)
        _check_feature_sets(config)
        return _serve(config, parsed.command, early)
    except (ConfigError, LedgerError) as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return USAGE
    except Exception:
        log.exception("ingest failed")
        return FAILED


def cli(*args: str) -> None:
    """The console script: `ingest ...`."""
    sys.exit(main(*(args or sys.argv[1:])))
