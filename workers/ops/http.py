"""The worker's HTTP endpoints: /metrics, /healthz, /readyz, /status (a live page), /status.json.

A plain threaded stdlib server: it only reads the monitor and the metrics registry, so it
needs nothing from the event loop and keeps answering while a batch is being scored.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from workers.ops.monitor import WorkerMonitor

STATUS_PAGE = (Path(__file__).parent / "status.html").read_bytes()


class HttpState:
    """What the endpoints read; ``monitor`` is None until the model is loaded and verified."""

    monitor: WorkerMonitor | None = None


def serve(state: HttpState, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Started before the model is loaded, so /readyz answers 503 while it is verified."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            monitor = state.monitor
            if path == "/healthz":  # liveness: the event loop runs (200 until the model is loaded)
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
                self._send(200, STATUS_PAGE, "text/html; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would flood the logs

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="workers-http", daemon=True).start()
    return server
