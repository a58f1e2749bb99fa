"""The console script's first step, before the command line's modules are loaded.

A SIGINT (Ctrl-C) that lands while they load, the first tenth of a second or so,
ends the process as a later one does: quietly, with 130, not a KeyboardInterrupt's
traceback from whichever import it interrupted.
"""

from __future__ import annotations

import signal


def run() -> None:
    try:
        from .cli import cli
    except KeyboardInterrupt:
        raise SystemExit(128 + signal.SIGINT) from None
    cli()
