"""Prometheus metrics, in a registry owned by the application (no global collectors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.files = Counter("ingest_files", "Files resolved, by outcome", ["outcome"], registry=r)
        self.rows = Counter("ingest_rows", "Rows committed to records", registry=r)
        self.latency = Histogram(
            "ingest_latency_seconds", "First sight to commit, per file", registry=r
        )
        self.loop_lag = Histogram(
            "ingest_loop_lag_seconds", "Event-loop lag of a probe task", buckets=LAG_BUCKETS,
            registry=r,
        )
        self.queued = Gauge("ingest_queue_files", "Files waiting for a worker", registry=r)
        self.bytes_held = Gauge("ingest_bytes_held", "Input bytes read, not resolved", registry=r)
        self.breakages = Counter("ingest_pool_breakages", "Worker deaths", registry=r)

    def serve(self, port: int, host: str) -> None:
        start_http_server(port, addr=host, registry=self.registry)
