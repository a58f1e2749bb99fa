"""Prometheus metrics, in a registry owned by the application (no global collectors),
served with /healthz from a thread of the main process (`metrics_http.py`).

With `[metrics] port = 0` nothing can scrape them: each metric is then a stand-in
that drops its updates, and prometheus_client, with the HTTP, e-mail and URL
modules it loads, stays out of the service's process (about 35 ms of the start-up
every `ingest once` pays).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class Unserved:
    """A metric no one can read: every update is dropped."""

    def labels(self, *values: str) -> Unserved:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def set_function(self, f: Callable[[], float]) -> None:
        pass


# The outcomes whose series exist from start-up, at 0: a series that first appears with
# its first file is no increase to `increase()`, and an alert on quarantines would miss
# the first one after every restart.
OUTCOMES = (
    "ingested", "duplicate", "quarantined", "skipped", "vanished", "changed", "unreadable",
    "reread", "uncommitted",
)


class Metrics:
    """The service's metrics; `served=False` (no port to serve them on): each `Unserved`."""

    def __init__(self, served: bool = True) -> None:
        self.registry: CollectorRegistry | None = None
        self.files: Counter | Unserved
        self.rows: Counter | Unserved
        self.latency: Histogram | Unserved
        self.loop_lag: Histogram | Unserved
        self.queued: Gauge | Unserved
        self.bytes_held: Gauge | Unserved
        self.known: Gauge | Unserved
        self.breakages: Counter | Unserved
        self.watch_mode: Gauge | Unserved
        self.watch_deaf: Gauge | Unserved
        if not served:
            self.files = self.rows = self.breakages = Unserved()
            self.latency = self.loop_lag = Unserved()
            self.queued = self.bytes_held = self.known = Unserved()
            self.watch_mode = self.watch_deaf = Unserved()
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.files = Counter("ingest_files", "Files resolved, by outcome", ["outcome"], registry=r)
        for outcome in OUTCOMES:
            self.files.labels(outcome)
        self.rows = Counter("ingest_rows", "Rows committed to records", registry=r)
        self.latency = Histogram(
            "ingest_latency_seconds",
            "First sight to commit, per file ingested, found a duplicate or quarantined",
            registry=r,
        )
        self.loop_lag = Histogram(
            "ingest_loop_lag_seconds", "Event-loop lag of a probe task", buckets=LAG_BUCKETS,
            registry=r,
        )
        self.queued = Gauge("ingest_queue_files", "Files waiting for a worker", registry=r)
        self.bytes_held = Gauge(
            "ingest_bytes_held",
            "Input bytes admitted (read, or charged for a worker to read), not resolved",
            registry=r,
        )
        self.known = Gauge(
            "ingest_known_inputs", "Past inputs remembered in memory (at most known_files)",
            registry=r,
        )
        self.breakages = Counter("ingest_pool_breakages", "Worker deaths", registry=r)
        self.watch_mode = Gauge(
            "ingest_watch_mode", "How the watcher hears the drop folder: 1 for the mode in use",
            ["mode"], registry=r,
        )
        self.watch_deaf = Gauge(
            "ingest_watch_deaf", "1 while the watcher hears nothing (drop folder missing)",
            registry=r,
        )

    def serve(
        self, port: int, host: str, health: Callable[[], str | None] = lambda: None
    ) -> None:
        """/metrics, and /healthz: 200, or 503 with the reason `health` gives (it is called
        in the server's thread)."""
        from .metrics_http import serve

        assert self.registry is not None, "metrics made with served=False cannot be served"
        serve(self.registry, port, host, health)
