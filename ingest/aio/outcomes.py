"""What became of each file, told once: the summary, the metrics, its log line, the progress bar.

Runs on the event loop. `inflight.InFlight` calls it once a file is finished and has
let go of all it held; the service calls `vanished` for a file deleted before it settled.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import logs
from ..files import DropFile
from ..metrics import Metrics
from ..store.known import Known

if TYPE_CHECKING:  # rich is imported only where a bar is shown: on a terminal
    from ..progress import Progress

# The intake's lines keep the logger name they have always had: filters on it still match.
log = logging.getLogger("ingest.service")
# Why a file let go of unrecorded is not done: a stop came first, or its blocks could not
# be staged (that error has its own line).
STAYS = "it stays in the drop folder for the next run"
LEFT = f"not done when it was let go; {STAYS}"
# A file whose commit kept failing (a full disk) until a stop's drain_s ran out.
UNCOMMITTED_AT_STOP = f"its commit kept failing until drain_s ran out; {STAYS}"
IN_FLIGHT_AT_STOP = f"still in a worker when drain_s ran out; {STAYS}"
IN_FLIGHT_AT_FAILURE = f"in flight when the service stopped on a failure; {STAYS}"
UNCOMMITTED_AT_FAILURE = f"the service stopped on a failure before its commit; {STAYS}"


@dataclass
class Summary:
    """What one run did, for the exit line and the exit code."""

    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    rows: int = 0
    started: float = field(default_factory=time.monotonic)
    lag_p99_ms: float = 0.0
    failed: str | None = None  # an internal task failed and stopped the service: why
    internal: bool = True  # the failure was ours (a bug), not the cluster's (ClusterLost)

    def line(self) -> str:
        o = self.outcomes
        # Said only when it happened: a commit that kept failing for one file's sake, and
        # files that could not be read (no permission, say), left in the drop folder.
        failing = f", {o['uncommitted']} failing to commit" if o["uncommitted"] else ""
        if o["unreadable"]:
            failing += f", {o['unreadable']} unreadable"
        return (
            f"ingested {o['ingested']} files ({self.rows} rows), {o['duplicate']} duplicates,"
            f" {o['quarantined']} quarantined, {o['skipped']} already known,"
            f" {o['vanished']} vanished, {o['deferred']} left for the next run{failing}"
            f" in {time.monotonic() - self.started:.1f}s"
            f" (loop lag p99 {self.lag_p99_ms:.1f} ms)"
        )


class Outcomes:
    """Counts, logs and remembers each file's fate."""

    def __init__(
        self, summary: Summary, metrics: Metrics, known: Known, progress: Progress | None,
        keep: bool = False,
    ):
        self.summary = summary
        # With on_success = "keep", every run finds every file it ingested before: their
        # lines would be most of the log, so they are DEBUG, not INFO.
        self._skips_level = logging.DEBUG if keep else logging.INFO
        self.metrics = metrics
        self.known = known  # what the ledger holds: a file recorded now is remembered
        self.progress = progress
        self._counters: dict[str, Any] = {}
        # Files found unreadable, as (name, size, mtime): each rescan of `run` finds such a
        # file again, and reads it again (a chmod may have mended it), but it is said and
        # counted once, until it changes.
        self._unreadable: set[tuple[str, int, int]] = set()

    def _counter(self, event: str) -> Any:
        """The files counter of one event, looked up once: `labels()` takes a lock and
        builds a key on every call, for every file."""
        counter = self._counters.get(event)
        if counter is None:
            counter = self._counters[event] = self.metrics.files.labels(event)
        return counter

    def resolved_all(self, event: str, files: Sequence[tuple[DropFile, dict[str, object]]]) -> None:
        """Files of one fate, committed (or needing no commit) together. Counted once for
        the batch; each is still remembered, timed and given its own log line."""
        if event == "unreadable":
            files = self._first_unreadable(files)
        elif self._unreadable:  # one read at last, or gone: said again if it fails again
            for file, _ in files:
                self._unreadable.discard((file.rel, file.size, file.mtime_ns))
        if not files:
            return
        recorded = event in ("ingested", "duplicate", "quarantined")
        now = time.monotonic()
        rows = 0
        lines: list[tuple[str, dict[str, object]]] = []
        for file, fields in files:
            if recorded:
                self.known.keys[file.key] = event
                digest = fields.get("sha256")
                if event == "ingested" and isinstance(digest, str):
                    self.known.ingested.setdefault(digest, file.rel)
            rows += int(fields.get("rows", 0))  # type: ignore[call-overload]
            if event == "skipped":
                lines.append((file.rel, fields))
            else:
                latency_s = now - file.seen_mono
                if recorded:  # first sight to commit; not a look that sends it round again
                    self.metrics.latency.observe(latency_s)
                lines.append((file.rel, {"latency_ms": latency_s * 1000, **fields}))
        if recorded:
            whole = self.known.whole
            self.known.trim()
            if whole and not self.known.whole:
                log.info(
                    "memory now holds the newest %d inputs the ledger knows (known_files);"
                    " older ones are asked of the ledger", self.known.capacity,
                )
        self.summary.outcomes[event] += len(files)
        self._counter(event).inc(len(files))
        if rows:
            self.summary.rows += rows
            self.metrics.rows.inc(rows)
        logs.outcomes(event, lines, self._skips_level if event == "skipped" else None)
        if self.progress is not None:
            self.progress.advance(event, len(files))

    def _first_unreadable(
        self, files: Sequence[tuple[DropFile, dict[str, object]]]
    ) -> list[tuple[DropFile, dict[str, object]]]:
        first = []
        for file, fields in files:
            key = (file.rel, file.size, file.mtime_ns)
            if key in self._unreadable:
                log.debug("unreadable %s, again: %s", file.rel, fields.get("reason"))
            else:
                self._unreadable.add(key)
                first.append((file, fields))
        return first

    def vanished(self, file: DropFile) -> None:
        """A file deleted before it settled: said once, never retried. It was never in flight."""
        self.summary.outcomes["vanished"] += 1
        self._counter("vanished").inc()
        logs.outcome(
            "vanished", file.rel, latency_ms=(time.monotonic() - file.seen_mono) * 1000,
            reason="it was gone before it settled",
        )
        if self.progress is not None:  # it may have been found at start-up, and counted
            self.progress.advance("vanished")

    def unsettled(self, files: Sequence[DropFile], waited_s: float) -> None:
        """`once` ends with files still changing (being written, or found changed again and
        again): each stays in the drop folder for the next run, and is a warning, shown
        beside a progress bar too: one written for ever is never taken by `once`."""
        if not files:
            return
        reason = (
            f"still changing {waited_s:g} s after every other file was done;"
            " left for the next run"
        )
        self.summary.outcomes["deferred"] += len(files)
        logs.outcomes("deferred", [(f.rel, {"reason": reason}) for f in files], logging.WARNING)
        if self.progress is not None:
            self.progress.advance("deferred", len(files))

    def deferred(self, *rels: str, reason: str = LEFT) -> None:
        """Files let go unrecorded (a signal came first, staging or their commit failed):
        each stays in the drop folder for the next run, and is told so, as the summary
        counts it."""
        self.summary.outcomes["deferred"] += len(rels)
        logs.outcomes("deferred", [(rel, {"reason": reason}) for rel in rels])
