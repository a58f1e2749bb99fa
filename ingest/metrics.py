"""Prometheus metrics, in a registry owned by the application (no global collectors),
served with /healthz from a thread of the main process."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

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
        metrics = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/healthz":
                return metrics(environ, start_response)  # type: ignore[no-any-return]
            problem = health()
            body = f"{problem or 'ok'}\n".encode()
            status = "200 OK" if problem is None else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [body]

        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]

        class Server(_Server):
            address_family = family  # an IPv6 host needs an IPv6 socket

        server = make_server(str(address[0]), port, app, Server, handler_class=_Quiet)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape every few seconds is no news: the service's log stays its own."""
