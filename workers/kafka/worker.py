"""The worker process: one Pipeline, one consuming engine, hosted by a faust app.

The faust app gives the process its lifecycle (signals, start and stop in order,
logging). The engine (``WORKERS_ENGINE``) does the consuming: ``batch`` (default,
``batch_engine``: the Kafka driver's batch fetch, ~4x faster here) or ``agent``
(``agent_engine``: a faust agent with ``stream.take_events``). Both are built the same
way, from an ``EngineContext``, and report to the same ``WorkerMonitor``.
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import NoReturn

import faust
from threadpoolctl import threadpool_limits

from workers.core.pipeline import Pipeline
from workers.errors import EXIT_RUNTIME, WorkersError
from workers.kafka import aiokafka_fixes
from workers.kafka.agent_engine import AgentEngine
from workers.kafka.batch_engine import BatchEngine
from workers.kafka.connection import connection, faust_options
from workers.kafka.engine import EngineConfig, EngineContext
from workers.kafka.schema_registry import SchemaRegistry
from workers.ops import gc_tuning
from workers.ops.logs import get_logger, logging_config
from workers.ops.monitor import WorkerMonitor
from workers.settings import Settings

log = get_logger("workers.worker")


class InferenceWorker:
    """Wires one Pipeline into a faust app; ``run()`` blocks until SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, pipeline: Pipeline, monitor: WorkerMonitor | None = None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        # Native thread pools (OpenMP in HistGradientBoosting, BLAS) default to one thread per
        # core. On small batches their spin-waits burn the cores the broker and other workers
        # need, and one descheduled thread stalls the whole call (README, Performance: p99 at 25%
        # load fell from 335 to 36 ms with one thread).
        threadpool_limits(settings.model_threads)
        aiokafka_fixes.apply()  # before any client exists: no busy loop while a broker is away
        self.monitor = monitor or WorkerMonitor.from_settings(pipeline, settings)
        self._datadir = tempfile.TemporaryDirectory(prefix="workers-faust-")
        conn = connection(settings)
        self.app = faust.App(
            settings.group_id,  # the app id is the consumer group
            **faust_options(conn),
            key_serializer="raw",
            value_serializer="raw",
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            # as the batch engine's aiokafka default: after a crash, the group moves the partitions of a
            # dead worker on within 10 s, not faust's 60 (a restarted agent worker waited ~58 s for them)
            broker_session_timeout=10.0,
            broker_max_poll_records=max(500, settings.batch_size),
            producer_acks=-1,
            producer_compression_type=settings.compression_type,
            producer_linger_ms=5,
            producer_max_batch_size=256 * 1024,
            stream_buffer_maxsize=max(4096, 2 * settings.batch_size),  # bounded: backpressure, not memory growth
            topic_allow_declare=False,  # topics are created by `workers topics create`
            topic_disable_leader=True,
            web_enabled=False,
            datadir=self._datadir.name,  # faust wants one; nothing of ours is stored there
        )
        self.context = context = EngineContext(
            pipeline=pipeline,
            config=EngineConfig(group_id=settings.group_id, client_id=f"workers-{settings.worker_id}",
                                batch_size=settings.batch_size, batch_linger_s=settings.batch_linger_s,
                                batch_min_bytes=settings.batch_min_bytes,
                                max_batches_in_flight=settings.max_batches_in_flight,
                                delivery_timeout_s=settings.delivery_timeout_s,
                                shutdown_timeout_s=settings.shutdown_timeout_s,
                                max_message_bytes=settings.max_message_bytes,
                                isolation_level=settings.isolation_level,
                                output_compression=settings.compression_type),
            connection=conn,
            accounting=self.monitor,
            fail=self.fail,
            cpu=self.monitor.cpu,
            schema_registry=SchemaRegistry.from_settings(settings) if pipeline.registered is not None else None,
        )
        context.switch.listeners.append(self.monitor.model_switched)  # a rollout switched the model
        self.engine = BatchEngine(context) if settings.engine == "batch" else AgentEngine(context)
        self.engine.install(self.app)

    def fail(self, exc: BaseException) -> NoReturn:
        # Exiting without acking or committing the batch in hand means no offset past it is
        # committed: the next worker re-reads it.
        self.monitor.failed = str(exc)  # /readyz answers 503 until the process is gone
        message = str(exc) if isinstance(exc, WorkersError) else f"{type(exc).__name__}: {exc}"
        log.critical("unrecoverable error; exiting without committing undelivered work", error=message)
        logging.shutdown()  # flush the log line: os._exit skips interpreter clean-up
        os._exit(EXIT_RUNTIME)

    def run(self) -> None:
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
            engine=self.settings.engine,
            batch_size=self.settings.batch_size,
            scoring=self.pipeline.scorer.path,
            scoring_reason=self.pipeline.scorer.path_reason,
            signed_by=self.pipeline.model.signer or "not required (no WORKERS_TRUSTED_KEYS)",
        )
        gc_tuning.freeze_and_tune()  # the model, libraries and app live as long as the process
        try:
            worker.execute_from_commandline()
        finally:
            self._datadir.cleanup()
