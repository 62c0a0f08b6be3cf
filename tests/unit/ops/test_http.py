"""The worker's HTTP endpoints: loopback by default, bounded connections, idle timeout, bearer token."""
from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.factories import load_test_pipeline
from tests.integration.workers_harness import free_port
from workers.ops.http import HttpState, serve
from workers.ops.monitor import WorkerMonitor


@pytest.fixture(scope="module")
def pipeline():
    return load_test_pipeline()


@pytest.fixture
def monitor(pipeline) -> WorkerMonitor:
    return WorkerMonitor(pipeline, "w")


def _get(port: int, path: str, token: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _serve(monitor, **options):
    state = HttpState()
    state.monitor = monitor
    port = free_port()
    return serve(state, port, **options), port


def test_binds_to_loopback_by_default(monitor):
    server, _ = _serve(monitor)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()


def test_status_needs_the_token_when_one_is_set_and_probes_do_not(monitor):
    server, port = _serve(monitor, token="s3cret-token")
    try:
        assert _get(port, "/status.json") == 401 and _get(port, "/status") == 401
        assert _get(port, "/status.json", "wrong") == 401
        assert _get(port, "/status.json", "s3cret-token") == 200
        assert _get(port, "/healthz") == 200 and _get(port, "/metrics") == 200  # probes and scrapes stay open
    finally:
        server.shutdown()


def test_idle_connections_neither_grow_threads_nor_block_the_probes(monitor):
    before = threading.active_count()
    server, port = _serve(monitor, max_connections=8, timeout_s=1.0)
    idle = []
    try:
        for _ in range(200):  # connections that never send a request
            idle.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.3)
        assert threading.active_count() - before <= 8 + 1  # the bounded handlers and the accept loop
        for s in idle:
            s.close()
        time.sleep(1.5)  # idle handlers time out and free their slots
        assert _get(port, "/healthz") == 200
    finally:
        for s in idle:
            s.close()
        server.shutdown()
