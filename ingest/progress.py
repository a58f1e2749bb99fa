"""Progress for `ingest once`, `compact` and `ledger rebuild`: a bar on a terminal,
nothing otherwise."""

from __future__ import annotations

import sys

import rich.console
import rich.progress

from .jobs import LOOKED_AT_AGAIN


def command_bar(label: str, detail: str = "{task.description}") -> rich.progress.Progress:
    """A bar over a command's steps (`compact`'s partitions, `ledger rebuild`'s parts),
    drawn only on a terminal and gone when it ends."""
    return rich.progress.Progress(
        rich.progress.TextColumn(label), rich.progress.BarColumn(),
        rich.progress.MofNCompleteColumn(), rich.progress.TextColumn(detail),
        transient=True, disable=not sys.stderr.isatty(),
    )


class Progress:
    """A rich progress bar over the files found at start-up."""

    def __init__(self) -> None:
        self._bar = rich.progress.Progress(
            rich.progress.TextColumn("ingest"),
            rich.progress.BarColumn(),
            rich.progress.MofNCompleteColumn(),
            rich.progress.TextColumn("{task.fields[detail]}"),
            rich.progress.TimeRemainingColumn(),
            transient=True,
            # On stderr, beside the log lines; those are printed above the bar, unwrapped,
            # so that a long reason can still be copied whole.
            console=rich.console.Console(stderr=True, soft_wrap=True),
        )
        self._task: rich.progress.TaskID | None = None
        self._counts: dict[str, int] = {}

    def start(self, total: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task("files", total=total, detail="")

    def advance(self, event: str, files: int = 1) -> None:
        if self._task is None or event in LOOKED_AT_AGAIN:
            return
        self._counts[event] = self._counts.get(event, 0) + files
        detail = " ".join(f"{k}={v}" for k, v in sorted(self._counts.items()))
        self._bar.update(self._task, advance=files, detail=detail)

    def stop(self) -> None:
        self._bar.stop()
