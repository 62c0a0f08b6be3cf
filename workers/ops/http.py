"""The worker's HTTP endpoints: /metrics, /healthz, /readyz, /status (a live page), /status.json.

A small stdlib server: it only reads the monitor and the metrics registry, so it needs
nothing from the event loop and keeps answering while a batch is being scored. It binds
to ``WORKERS_HTTP_HOST`` (loopback unless a container sets it), serves at most
``MAX_CONNECTIONS`` connections at once (more are closed at once, not queued on threads),
drops a connection idle for ``REQUEST_TIMEOUT_S``, and, with ``WORKERS_HTTP_TOKEN``, asks
for ``Authorization: Bearer <token>`` on the status page and its data.
"""
from __future__ import annotations

import hmac
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

STATUS_PAGE = (Path(__file__).parent / "status.html").read_bytes()
MAX_CONNECTIONS = 16
REQUEST_TIMEOUT_S = 10.0
PROTECTED = ("/", "/status", "/status.json")


class Observed(Protocol):
    """What the endpoints read: a worker's monitor (``WorkerMonitor``), or `workers quality`'s."""

    metrics: Any  # its ``registry`` is what /metrics shows

    def is_alive(self) -> bool: ...

    def readiness(self) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...


class HttpState:
    """What the endpoints read; ``monitor`` is None until the model is loaded and verified."""

    monitor: Observed | None = None


class BoundedThreadingServer(socketserver.ThreadingMixIn, HTTPServer):
    """One thread per connection, at most ``max_connections`` at once."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: refused connections are closed at once, not left waiting

    def __init__(self, address: tuple[str, int], handler: Any, max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: refuse rather than grow a thread per idle connection
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(state: HttpState, port: int, host: str = "127.0.0.1", token: str | None = None,
          max_connections: int = MAX_CONNECTIONS, timeout_s: float = REQUEST_TIMEOUT_S) -> HTTPServer:
    """Started before the model is loaded, so /readyz answers 503 while it is verified."""
    expected = f"Bearer {token}".encode() if token else None

    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # an idle or slow connection is dropped instead of holding its thread

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            monitor = state.monitor
            if expected is not None and path in PROTECTED and not hmac.compare_digest(
                    self.headers.get("Authorization", "").encode(), expected):
                self._send(401, b"a bearer token is required\n", "text/plain",
                           {"WWW-Authenticate": 'Bearer realm="workers"'})
            elif path == "/healthz":  # liveness: the event loop runs (200 until the model is loaded)
                alive = monitor is None or monitor.is_alive()
                self._send(200 if alive else 503, b"ok\n" if alive else b"event loop blocked\n", "text/plain")
            elif monitor is None:
                body = json.dumps({"ready": False, "model_verified": False, "partitions": []}).encode()
                self._send(503, body, "application/json")
            elif path == "/metrics":
                self._send(200, generate_latest(monitor.metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/readyz":
                readiness = monitor.readiness()
                self._send(200 if readiness["ready"] else 503, json.dumps(readiness).encode(), "application/json")
            elif path == "/status.json":
                self._send(200, json.dumps(monitor.status()).encode(), "application/json")
            elif path in ("/", "/status"):
                self._send(200, getattr(monitor, "page", STATUS_PAGE), "text/html; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would flood the logs

    server = BoundedThreadingServer((host, port), Handler, max_connections)
    threading.Thread(target=server.serve_forever, name="workers-http", daemon=True).start()
    return server
