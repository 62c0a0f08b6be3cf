"""``workers serve``: the Open Inference Protocol over HTTP, on aiohttp, micro-batched.

Why aiohttp: an asyncio server holds many concurrent callers on one thread, which is what
micro-batching needs (every waiting request is a cheap future, not a blocked thread), and
aiohttp 3.x is already installed with faust, so serving adds no dependency. Scoring runs in
one worker thread (``MicroBatcher``), so the event loop keeps reading and answering
requests while a batch is scored; that thread's native thread count is set to
``WORKERS_MODEL_THREADS`` (1): OpenMP's limit is per calling thread, and a second OpenMP
thread spinning for one-row batches takes the core the event loop needs.

Endpoints (KServe v2 / MLServer REST):

* ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2``, ``GET /v2/models/{name}/ready``;
* ``GET /v2/models/{name}[/versions/{version}]``: metadata, the input fields and their types;
* ``POST /v2/models/{name}[/versions/{version}]/infer``;
* ``GET /metrics``: the worker's metrics (predictions, dead letters by reason, batch sizes,
  processing time, scores, drift) plus requests and their duration by path and status code.

With ``WORKERS_HTTP_TOKEN`` set, the model endpoints need ``Authorization: Bearer <token>``;
health and metrics stay open to probes and scrapers.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from threadpoolctl import threadpool_limits

from workers import __version__
from workers.core.pipeline import Pipeline
from workers.ops.metrics import LATENCY_BUCKETS
from workers.ops.monitor import WorkerMonitor
from workers.serve.batcher import MicroBatcher
from workers.serve.oip import BadRequest, ModelSpec, NotFound, error_body

MAX_BODY_BYTES = 8 * 1024 * 1024
HEARTBEAT_S = 1.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


class InferenceServer:
    def __init__(self, pipeline: Pipeline, monitor: WorkerMonitor, *, max_rows: int = 256,
                 max_delay_s: float = 0.002, token: str | None = None, in_thread: bool = True,
                 model_threads: int = 1) -> None:
        self.pipeline = pipeline
        self.monitor = monitor
        self.spec = ModelSpec(pipeline)
        self.batcher = MicroBatcher(pipeline.process, max_rows=max_rows, max_delay_s=max_delay_s,
                                    delivered=self._delivered, in_thread=in_thread,
                                    thread_init=lambda: threadpool_limits(model_threads))
        self._expected = f"Bearer {token}".encode() if token else None
        registry = monitor.metrics.registry
        self.requests = Counter("workers_http_requests_total", "HTTP requests answered",
                                ["pipeline", "path", "code"], registry=registry)
        self.duration = Histogram("workers_http_request_duration_seconds", "HTTP request duration, "
                                  "reading to answering", ["pipeline", "path"], buckets=LATENCY_BUCKETS,
                                  registry=registry)
        self._heartbeat: asyncio.Task[None] | None = None

    def _delivered(self, records: list[Any], result: Any) -> None:
        self.monitor.batch_delivered(records, result)

    # ---------------------------------------------------------------- the application

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._observe])
        app.router.add_get("/v2/health/live", self.live)
        app.router.add_get("/v2/health/ready", self.ready)
        app.router.add_get("/v2", self.server_metadata)
        app.router.add_get("/v2/models/{name}", self.model_metadata)
        app.router.add_get("/v2/models/{name}/versions/{version}", self.model_metadata)
        app.router.add_get("/v2/models/{name}/ready", self.model_ready)
        app.router.add_get("/v2/models/{name}/versions/{version}/ready", self.model_ready)
        app.router.add_post("/v2/models/{name}/infer", self.infer)
        app.router.add_post("/v2/models/{name}/versions/{version}/infer", self.infer)
        app.router.add_get("/metrics", self.metrics)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.batcher.start()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _stop(self, app: web.Application) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self.batcher.stop()

    async def _beat(self) -> None:
        """Liveness: the event loop runs, and no batch has been scoring for longer than the liveness timeout."""
        while True:
            since = self.batcher.scoring_since
            if since is None or time.monotonic() - since < self.monitor.liveness_timeout_s:
                self.monitor.heartbeat(0.0)
            self.monitor.metrics.ready.set(1 if self.is_ready() else 0)
            await asyncio.sleep(HEARTBEAT_S)

    def is_ready(self) -> bool:
        """The model was verified at start-up (or there would be no server), the batcher runs and answers."""
        return self.monitor.model_verified and not self.monitor.failed and self.monitor.is_alive() \
            and self.batcher.running

    @web.middleware
    async def _observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        path = route.canonical if route is not None else "other"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _json(exc.status, error_body(exc.reason))
        except NotFound as exc:
            response = _json(404, error_body(str(exc)))
        except BadRequest as exc:
            response = _json(400, error_body(str(exc), exc.reason))
        self.requests.labels(self.pipeline.name, path, str(response.status)).inc()
        self.duration.labels(self.pipeline.name, path).observe(time.perf_counter() - started)
        return response

    def _authorized(self, request: web.Request) -> None:
        if self._expected is not None and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), self._expected):
            raise web.HTTPUnauthorized(reason="a bearer token is required",
                                       headers={"WWW-Authenticate": 'Bearer realm="workers"'})

    # ---------------------------------------------------------------- handlers

    async def live(self, request: web.Request) -> web.Response:
        alive = self.monitor.is_alive()
        return _json(200 if alive else 503, {"live": alive})

    async def ready(self, request: web.Request) -> web.Response:
        ready = self.is_ready()
        return _json(200 if ready else 503, {"ready": ready})

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json(200, {"name": "workers", "version": __version__, "extensions": []})

    async def model_metadata(self, request: web.Request) -> web.Response:
        self._authorized(request)
        self.spec.check(request.match_info["name"], request.match_info.get("version"))
        return _json(200, self.spec.metadata())

    async def model_ready(self, request: web.Request) -> web.Response:
        self._authorized(request)
        self.spec.check(request.match_info["name"], request.match_info.get("version"))
        ready = self.is_ready()
        return _json(200 if ready else 503, {"name": self.spec.name, "ready": ready})

    async def infer(self, request: web.Request) -> web.Response:
        with self.batcher.arriving():
            self._authorized(request)
            self.spec.check(request.match_info["name"], request.match_info.get("version"))
            body = await request.read()
            request_id, records, asked = self.spec.records(body, int(time.time() * 1000))
            pending = self.batcher.enqueue(records)
        status, answer = self.spec.response(request_id, await pending, asked)
        return _json(status, answer)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.monitor.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve(server: InferenceServer, host: str, port: int, started: Callable[[int], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT). ``started`` is told the bound port."""
    runner = web.AppRunner(server.app(), access_log=None, keepalive_timeout=75)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    if started is not None:
        sockets = getattr(site._server, "sockets", None) or []
        started(sockets[0].getsockname()[1] if sockets else port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
