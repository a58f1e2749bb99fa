"""/metrics and /healthz over HTTP, from a thread of the main process (`metrics.py`)."""

from __future__ import annotations

import socket
import threading
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
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        problem = health()
        body = f"{problem or 'ok'}\n".encode()
        status = "200 OK" if problem is None else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

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


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape every few seconds is no news: the service's log stays its own."""
