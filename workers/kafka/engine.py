"""What a consuming engine is handed, the same for both engines (``batch`` and ``agent``).

An engine reads raw records, runs ``Pipeline.process`` on micro-batches, publishes the
outputs and commits an offset only after its outputs were acknowledged. It reports to
``Accounting`` (delivered batches, assignment, lag) and, on an error it cannot handle,
calls ``fail``, which ends the process without committing anything past what was
delivered. ``install(app)`` wires it into the faust app that hosts its lifecycle.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import structlog

from workers.core.canary import Decision
from workers.core.pipeline import BatchResult, Pipeline
from workers.core.records import InputRecord
from workers.core.trial import Trial
from workers.errors import RegistryUnavailableError, SchemaError
from workers.kafka.connection import Connection
from workers.ops.stage_cpu import SCORE, StageCpu

log = structlog.get_logger("workers.engine")
REGISTRY_RETRY_FIRST_S = 0.5
REGISTRY_RETRY_MAX_S = 10.0


class Accounting(Protocol):
    def batch_delivered(self, records: list[InputRecord], result: BatchResult) -> None: ...

    def partitions_assigned(self, partitions: set[int]) -> None: ...

    def lag_observed(self, lags: dict[int, int]) -> None: ...

    def offsets_committed(self) -> None: ...

    def heartbeat(self, oldest_undelivered_s: float) -> None:
        """Called every second from the event loop: it runs, and how long the oldest output has waited."""

    def registry_problem(self, problem: str | None) -> None:
        """The schema registry cannot be reached (``problem``), or can again (None)."""


@dataclass(frozen=True)
class EngineConfig:
    group_id: str
    client_id: str
    batch_size: int
    batch_linger_s: float
    max_batches_in_flight: int
    batch_min_bytes: int = 1
    delivery_timeout_s: float = 120.0
    shutdown_timeout_s: float = 30.0
    max_message_bytes: int = 1_000_000
    isolation_level: str = "read_committed"  # of the input topic
    output_compression: str | None = None  # compression.type of the produced batches


class PipelineSwitch:
    """A verified pipeline waiting to replace the serving one, or a trial to start or end: offered
    from another thread (a rollout), applied on the event loop between batches, so the batch in
    flight finishes with its own model. A trial's decision (its guards) is applied the same way,
    right after the batch that made it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: tuple[Pipeline, threading.Event] | None = None
        self._trial: tuple[Trial | None, threading.Event] | None = None
        self.listeners: list[Callable[[Pipeline], None]] = []  # told of the pipeline now serving
        self.trial_listeners: list[Callable[[Trial | None], None]] = []  # told of the trial now running
        self.decision_listeners: list[Callable[[Trial, Decision], None]] = []  # told what a trial's guards decided

    def offer(self, pipeline: Pipeline) -> threading.Event:
        """Set once ``pipeline`` serves (a later offer replaces one not applied yet)."""
        applied = threading.Event()
        with self._lock:
            self._waiting = (pipeline, applied)
        return applied

    def offer_trial(self, trial: Trial | None) -> threading.Event:
        """Set once ``trial`` runs (None: once no trial runs)."""
        applied = threading.Event()
        with self._lock:
            self._trial = (trial, applied)
        return applied

    def apply(self, context: EngineContext) -> None:
        if self._waiting is None and self._trial is None:
            return
        with self._lock:
            waiting, self._waiting = self._waiting, None
            trial, self._trial = self._trial, None
        if trial is not None:
            self._run_trial(context, trial[0])
            trial[1].set()
        if waiting is not None:
            pipeline, applied = waiting
            self._serve(context, pipeline)
            applied.set()

    def _serve(self, context: EngineContext, pipeline: Pipeline) -> None:
        pipeline.carry_over(context.pipeline)
        context.pipeline = pipeline
        if context.trial is not None:
            context.trial.attach(pipeline)
        for listener in self.listeners:
            listener(pipeline)

    def _run_trial(self, context: EngineContext, trial: Trial | None) -> None:
        if trial is not None:
            trial.attach(context.pipeline)
        context.trial = trial
        for listener in self.trial_listeners:
            listener(trial)

    def judge(self, context: EngineContext) -> None:
        """After a trial's batch: a rollback ends it now, a promotion makes its candidate the primary now."""
        trial = context.trial
        decision = trial.decision() if trial is not None else None
        if trial is None or decision is None:
            return
        self._run_trial(context, None)
        if decision.action == "promote":
            self._serve(context, trial.candidate)
        for listener in self.decision_listeners:
            listener(trial, decision)


@dataclass
class EngineContext:
    pipeline: Pipeline  # replaced between batches when a rollout switches the model (``switch``)
    config: EngineConfig
    connection: Connection
    accounting: Accounting
    fail: Callable[[BaseException], NoReturn]
    schema_registry: SchemaSource | None = None  # where writer schemas of registry-framed events come from
    switch: PipelineSwitch = field(default_factory=PipelineSwitch)
    trial: Trial | None = None  # a candidate in shadow or canary next to ``pipeline`` (set by ``switch``)
    cpu: StageCpu = field(default_factory=StageCpu)  # CPU seconds by stage (workers_cpu_seconds_total)


class SchemaSource(Protocol):
    def schema(self, schema_id: int) -> Any | None: ...


def process(context: EngineContext, records: list[InputRecord]) -> BatchResult:
    """``Pipeline.process``, timed. An exception here is a bug in the core: the engine stops
    without acking or committing what was not handled."""
    context.switch.apply(context)  # between batches: a verified model offered by a rollout starts here
    started, cpu_started = time.perf_counter(), time.thread_time()
    trial = context.trial
    try:
        result = context.pipeline.process(records) if trial is None else trial.process(context.pipeline, records)
    except Exception as exc:
        context.fail(exc)
    result.processing_s = time.perf_counter() - started
    context.cpu.add(SCORE, cpu_started)
    if trial is not None:
        context.switch.judge(context)
    return result


async def fetch_writer_schemas(context: EngineContext, values: list[bytes | None],
                               stopping: Callable[[], bool] = lambda: False) -> bool:
    """Before ``process``: fetch the writer schemas of the registry ids these values use.

    While the registry cannot be reached the batch waits (nothing is dead-lettered, scored or
    committed) and readiness says why. False when the engine is stopping meanwhile: the caller
    leaves the batch unprocessed and uncommitted for the next owner.
    """
    registered = context.pipeline.registered
    if registered is None:
        return True
    ids = registered.missing(values)
    if not ids:
        return True
    source = context.schema_registry
    if source is None:
        context.fail(RuntimeError("registry-framed input without a schema registry"))
    loop = asyncio.get_running_loop()
    delay = REGISTRY_RETRY_FIRST_S
    while True:
        try:
            answers = await loop.run_in_executor(None, lambda: {i: source.schema(i) for i in sorted(ids)})
            break
        except RegistryUnavailableError as exc:
            context.accounting.registry_problem(str(exc))
            log.warning("schema registry unavailable; the batch waits", error=str(exc), retry_in_s=delay,
                        schema_ids=sorted(ids))
            waited_until = time.monotonic() + delay
            while time.monotonic() < waited_until:
                if stopping():
                    return False
                await asyncio.sleep(0.1)
            delay = min(delay * 2, REGISTRY_RETRY_MAX_S)
        except Exception as exc:  # a refusal (credentials, a malformed answer): an operator must act
            context.fail(exc)
    context.accounting.registry_problem(None)
    for schema_id, definition in answers.items():
        try:
            registered.add(schema_id, definition)
        except SchemaError as exc:  # registered, but not an Avro schema this worker can read
            log.warning("registry schema unreadable; its events are dead-lettered", schema_id=schema_id,
                        error=str(exc))
            registered.add(schema_id, None)
        log.info("writer schema fetched", schema_id=schema_id, known=definition is not None)
    return True


class Engine(Protocol):
    """Built as ``EngineClass(context)``; ``install`` registers it with the faust app."""

    def install(self, app: Any) -> None: ...

