"""What a consuming engine is handed, the same for both engines (``batch`` and ``agent``).

An engine reads raw records, runs ``Pipeline.process`` on micro-batches, publishes the
outputs and commits an offset only after its outputs were acknowledged. It reports to
``Accounting`` (delivered batches, assignment, lag) and, on an error it cannot handle,
calls ``fail``, which ends the process without committing anything past what was
delivered. ``install(app)`` wires it into the faust app that hosts its lifecycle.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from workers.core.pipeline import BatchResult, Pipeline
from workers.core.records import InputRecord
from workers.kafka.connection import Connection


class Accounting(Protocol):
    def batch_delivered(self, records: list[InputRecord], result: BatchResult) -> None: ...

    def partitions_assigned(self, partitions: set[int]) -> None: ...

    def lag_observed(self, lags: dict[int, int]) -> None: ...

    def offsets_committed(self) -> None: ...

    def heartbeat(self, oldest_undelivered_s: float) -> None:
        """Called every second from the event loop: it runs, and how long the oldest output has waited."""


@dataclass(frozen=True)
class EngineConfig:
    group_id: str
    client_id: str
    batch_size: int
    batch_linger_s: float
    max_batches_in_flight: int
    delivery_timeout_s: float = 120.0
    shutdown_timeout_s: float = 30.0
    max_message_bytes: int = 1_000_000


@dataclass(frozen=True)
class EngineContext:
    pipeline: Pipeline
    config: EngineConfig
    connection: Connection
    accounting: Accounting
    fail: Callable[[BaseException], NoReturn]


def process(context: EngineContext, records: list[InputRecord]) -> BatchResult:
    """``Pipeline.process``, timed. An exception here is a bug in the core: the engine stops
    without acking or committing what was not handled."""
    started = time.perf_counter()
    try:
        result = context.pipeline.process(records)
    except Exception as exc:
        context.fail(exc)
    result.processing_s = time.perf_counter() - started
    return result


class Engine(Protocol):
    """Built as ``EngineClass(context)``; ``install`` registers it with the faust app."""

    def install(self, app: Any) -> None: ...
