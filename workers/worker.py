"""The faust adapter: raw bytes in micro-batches -> Pipeline.process -> acknowledged outputs.

Two engines run inside the faust app (``WORKERS_ENGINE``): ``batch`` (default,
workers/batch_engine.py: the Kafka driver's batch fetch, ~3x faster here) and
``agent``, the faust agent below with ``stream.take_events``.

Delivery is at-least-once. ``stream.take_events`` turns faust's automatic acks off and
acks a batch's events only after the agent's body returns for that batch (faust
``streams.py``), and faust commits only acked offsets. So the body publishes every
prediction and dead letter, awaits the broker's acknowledgements, and only then returns.
It must never raise: faust would ack the batch anyway. Records are decoded inside the
agent (a raising topic codec silently stops a ``take`` agent, faust#586), and the agent
runs with concurrency 1 (higher values can commit past in-flight messages, faust#606):
scale with partitions and processes.
"""
from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import time
from typing import Any

import faust
from threadpoolctl import threadpool_limits

from workers.core.pipeline import Pipeline
from workers.core.records import InputRecord, OutputRecord
from workers.delivery import await_delivery
from workers.logs import get_logger
from workers.metrics import WorkerMetrics
from workers.settings import Settings

log = get_logger("workers.worker")

EXIT_UNDELIVERABLE = 70
AGENT_TAKE_WITHIN_S = 0.05  # take_events needs a positive window; it returns early once a batch fills


def _input_record(event: Any) -> InputRecord:
    message = event.message
    timestamp = message.timestamp
    return InputRecord(
        value=message.value,
        key=message.key,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=None if timestamp is None else int(timestamp * 1000),
        headers=list(message.headers or ()),
    )


def offset_ranges(records: list[InputRecord]) -> dict[int, list[int]]:
    """{partition: [first offset, last offset]} of a batch, for logs."""
    ranges: dict[int, list[int]] = {}
    for r in records:
        span = ranges.setdefault(r.partition, [r.offset, r.offset])
        span[0] = min(span[0], r.offset)
        span[1] = max(span[1], r.offset)
    return ranges


class InferenceWorker:
    """Wires one Pipeline into a faust app; ``run()`` blocks until SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        # Native thread pools (OpenMP in HistGradientBoosting, BLAS) default to one thread per
        # core. On small batches their spin-waits burn the cores the broker and other workers
        # need, and one descheduled thread stalls the whole call (README, Performance: p99 at 25%
        # load fell from 335 to 36 ms with one thread).
        threadpool_limits(settings.model_threads)
        self.metrics = WorkerMetrics(pipeline, settings.worker_id, settings.drift_window, settings.drift_threshold)
        self._last_report = time.monotonic()
        self._datadir = tempfile.TemporaryDirectory(prefix="workers-faust-")
        self.app = self._build_app()

    def _build_app(self) -> faust.App:
        s = self.settings
        app = faust.App(
            s.group_id,  # the app id is the consumer group
            broker=[f"kafka://{server}" for server in s.bootstrap_servers.split(",")],
            broker_credentials=self._credentials(),
            key_serializer="raw",
            value_serializer="raw",
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            broker_max_poll_records=max(500, s.batch_size),
            producer_acks=-1,
            producer_linger_ms=5,
            producer_max_batch_size=256 * 1024,
            stream_buffer_maxsize=max(4096, 2 * s.batch_size),  # bounded: backpressure, not memory growth
            topic_allow_declare=False,  # topics are created by `workers topics create`
            topic_disable_leader=True,
            web_enabled=False,
            datadir=self._datadir.name,  # faust wants one; nothing of ours is stored there
        )
        if s.engine == "batch":
            from workers.batch_engine import BatchConsumer

            worker = self

            @app.service
            class PipelineConsumer(BatchConsumer):
                def __init__(self, **kwargs: Any) -> None:
                    super().__init__(worker, **kwargs)

            app.producer_only = True  # faust's own consumer has no topic to read: ours does
            return app
        topic = app.topic(
            self.pipeline.topics.events,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            allow_empty=True,  # an empty payload is dead-lettered, not skipped
        )
        app.agent(topic, name=f"{self.pipeline.name}-scorer", concurrency=1)(self._agent)

        @app.on_partitions_assigned.connect
        async def on_assigned(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            assigned = args[0] if args else kwargs.get("assigned", ())  # faust sends the TP set positionally
            self.metrics.set_assignment({tp.partition for tp in assigned if tp.topic == topic.get_topic_name()})

        return app

    def _credentials(self) -> Any:
        s = self.settings
        if s.sasl_mechanism:
            import ssl

            context = ssl.create_default_context(cafile=s.ssl_cafile) if "SSL" in s.security_protocol else None
            return faust.SASLCredentials(
                username=s.sasl_username, password=s.sasl_password, mechanism=s.sasl_mechanism, ssl_context=context
            )
        if s.security_protocol == "SSL":
            import ssl

            return faust.SSLCredentials(ssl.create_default_context(cafile=s.ssl_cafile))
        return None

    async def _agent(self, stream: Any) -> None:
        # Each batch is scored and its outputs handed to the producer at once; delivery is
        # confirmed in the background while the next batch is taken (pipelining), with at
        # most ``max_batches_in_flight`` unconfirmed batches (backpressure). take_events acks
        # a batch when this body moves on, so every message gets one extra reference here,
        # released only once the broker acknowledged all of the batch's outputs: until then
        # its offset cannot be committed.
        slots = asyncio.Semaphore(self.settings.max_batches_in_flight)
        in_flight: set[asyncio.Future] = set()
        try:
            within = self.settings.batch_linger_s or AGENT_TAKE_WITHIN_S
            async for events in stream.take_events(self.settings.batch_size, within=within):
                for event in events:
                    event.message.incref()
                records = [_input_record(e) for e in events]
                started = time.perf_counter()
                try:
                    result = self.pipeline.process(records)
                except Exception as exc:  # a bug in the core: never ack what was not handled
                    self.die(exc)
                result.processing_s = time.perf_counter() - started
                await slots.acquire()
                futures = await self._send(result.outputs)
                task = asyncio.ensure_future(self._confirm(events, records, result, futures, slots))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            # SIGTERM cancels the agent: let the batches in hand be delivered (and acked)
            # before faust's final commit.
            if in_flight:
                await asyncio.wait(in_flight)

    async def _send(self, outputs: list[OutputRecord]) -> list[tuple[Any, list[OutputRecord]]]:
        producer = self.app.producer
        return [(await producer.send(o.topic, o.key, o.value, None, None, o.headers), [o]) for o in outputs]

    async def _confirm(
        self, events: list[Any], records: list[InputRecord], result: Any, futures: list[Any],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            await await_delivery(futures, self._send)
            for event in events:
                event.ack()  # the last reference: the offset may now be committed
            self.account(records, result, result.processing_s)
        except Exception as exc:
            self.die(exc)
        finally:
            slots.release()

    def account(self, records: list[InputRecord], result: Any, processing_s: float = 0.0) -> None:
        """A batch's outputs were acknowledged: count it (metrics, one log line at most)."""
        self.metrics.record_batch(result, len(records), processing_s, time.time())
        if result.dead_letters:
            log.info(
                "dead-lettered",
                topic=records[0].topic,
                offsets=offset_ranges(records),
                reasons=dict(result.dead_letters),
                pipeline=self.pipeline.name,
                model_version=self.pipeline.manifest.version,
            )
        self._maybe_report()

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last_report < 10:
            return
        self._last_report = now
        status = self.metrics.status()
        log.info(
            "progress",
            consumed=status["consumed"],
            predictions=status["predictions"],
            dead_letters=status["dead_letters"],
            events_per_s=status["events_per_s"],
        )

    def die(self, exc: BaseException) -> None:
        # Exiting without returning from the agent body means the batch is never acked, so
        # no offset past it is committed: the next worker re-reads it.
        log.critical("unrecoverable error; exiting without committing the batch", error=repr(exc))
        os._exit(EXIT_UNDELIVERABLE)

    def run(self) -> None:
        from workers.logs import logging_config


        worker = faust.Worker(
            self.app,
            loglevel=self.settings.log_level,
            quiet=True,
            logging_config=logging_config(self.settings.log_level, self.settings.log_format),
        )
        worker.spinner = None  # a terminal spinner would write escape codes into JSON logs
        log.info(
            "worker starting",
            pipeline=self.pipeline.name,
            model_version=self.pipeline.manifest.version,
            model_sha256=self.pipeline.manifest.artifact_sha256,
            input_topic=self.pipeline.topics.events,
            group=self.settings.group_id,
            worker_id=self.settings.worker_id,
            batch_size=self.settings.batch_size,
            scoring=self.pipeline.scorer.path,
            scoring_reason=self.pipeline.scorer.path_reason,
        )
        # Everything alive now (model, libraries, app) lives as long as the process. Frozen,
        # it is no longer traversed by full collections, which took 50-60 ms each under load
        # (a stall for every event in flight) and now take a few ms.
        gc.collect()
        gc.freeze()
        try:
            worker.execute_from_commandline()
        finally:
            self._datadir.cleanup()
