"""/metrics and /healthz over HTTP, from a thread of the main process (`metrics.py`)."""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from .errors import ConfigError


def serve(
    registry: CollectorRegistry, port: int, host: str, health: Callable[[], str | None]
) -> None:
    """/metrics from `registry`, and /healthz: 200, or 503 with the reason `health` gives
    (called in the server's thread)."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        head = environ.get("REQUEST_METHOD") == "HEAD"  # a probe's: the headers alone
        path = environ.get("PATH_INFO")
        if path == "/metrics":
            body = metrics({**environ, "REQUEST_METHOD": "GET"} if head else environ,
                           start_response)
            return [] if head else body
        if path == "/healthz":
            problem = health()
            status = "200 OK" if problem is None else "503 Service Unavailable"
            text = f"{problem or 'ok'}\n"
        else:
            # Not a page that says all is well: a probe of a mistyped path must fail.
            status, text = "404 Not Found", "not found: /metrics and /healthz are served\n"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [] if head else [text.encode()]

    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]

        class Server(_Server):
            address_family = family  # an IPv6 host needs an IPv6 socket

        server = make_server(str(address[0]), port, app, Server, handler_class=_Quiet)
    except OSError as exc:  # a port in use, a host unknown or not this machine's
        raise ConfigError(
            f"[metrics] port {port} on host {host!r}: cannot serve there:"
            f" {exc.strerror or exc}"
        ) from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


# Connections served at once; a scraper or prober needs one or two. Each holds a thread
# and a file descriptor of the service's own process, whose commits need descriptors too.
MAX_CONNECTIONS = 16
# A client that sends nothing, or never finishes its request, for this long is let go.
IDLE_S = 10.0


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64  # a burst of scrapes waits in the kernel, not refused

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Past MAX_CONNECTIONS (idle clients, a port scan), a new one is closed at once:
        # they never take every descriptor and stall the commits.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                # No descriptor left to take the connection with: the listening socket
                # stays readable, and trying again at once would spin a core.
                time.sleep(0.1)
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away or timed out is no news (the default prints a trace).
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Quiet(WSGIRequestHandler):
    timeout = IDLE_S  # on the connection's socket: a read that waits longer ends it

    def log_message(self, format: str, *args: Any) -> None:
        """A scrape every few seconds is no news: the service's log stays its own."""
