"""The ``agent`` engine: a faust agent with ``stream.take_events`` (``WORKERS_ENGINE=agent``).

Delivery is at-least-once. ``stream.take_events`` turns faust's automatic acks off and
acks a batch's events only after the agent's body returns for that batch (faust
``streams.py``), and faust commits only acked offsets. So the body publishes every
prediction and dead letter, awaits the broker's acknowledgements, and only then returns.
It must never raise: faust would ack the batch anyway. Records are decoded inside the
agent (a raising topic codec silently stops a ``take`` agent, faust#586), and the agent
runs with concurrency 1 (higher values can commit past in-flight messages, faust#606):
scale with partitions and processes.

Any failure in the send path (the send call itself, or a delivery the producer gave up
on) stops the worker at once, before the batch or anything after it is acked, so faust
cannot commit past it: the next owner reads it again. This engine does not re-send or
shorten outputs itself (the batch engine does, see delivery.py).
"""
from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from workers.core.pipeline import BatchResult, Pipeline
from workers.core.records import InputRecord, OutputRecord
from workers.kafka.delivery import fatal_error
from workers.kafka.engine import EngineContext, fetch_writer_schemas, process
from workers.ops.logs import get_logger

log = get_logger("workers.agent_engine")

HEARTBEAT_INTERVAL_S = 1.0

TAKE_WITHIN_S = 0.05  # take_events needs a positive window; it returns early once a batch fills


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


def _read_with_isolation(app: Any, level: str) -> None:
    """faust reads only committed records under its exactly-once guarantee, which also makes its
    producer transactional; this engine wants the consumer's isolation level alone (the same as
    the batch engine's). Set on the aiokafka consumer faust builds, before it starts."""
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    original = cls.__dict__.get("_create_worker_consumer")
    if original is None:
        log.warning("this faust builds its consumer elsewhere: the agent engine reads uncommitted records")
        return
    if not hasattr(original, "__wrapped__"):
        @functools.wraps(original)
        def create(self: Any, transport: Any) -> Any:
            consumer = original(self, transport)
            wanted = getattr(self.app, "_workers_isolation_level", None)
            if wanted is not None and hasattr(consumer, "_isolation_level"):
                consumer._isolation_level = wanted  # read when the consumer starts its fetcher
            return consumer

        cls._create_worker_consumer = create  # type: ignore[method-assign]
    app._workers_isolation_level = level


class AgentEngine:
    def __init__(self, context: EngineContext) -> None:
        self.context = context
        self.config = context.config
        self._app: Any = None
        self._sent_at: dict[asyncio.Future, float] = {}  # delivery confirmations in progress

    @property
    def pipeline(self) -> Pipeline:
        return self.context.pipeline  # the one serving now (a rollout may switch it between batches)

    def install(self, app: Any) -> None:
        self._app = app
        _read_with_isolation(app, self.config.isolation_level)
        topic = app.topic(
            self.pipeline.topics.events,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            allow_empty=True,  # an empty payload is dead-lettered, not skipped
        )
        app.agent(topic, name=f"{self.pipeline.name}-scorer", concurrency=1)(self._agent)
        app.timer(HEARTBEAT_INTERVAL_S)(self._heartbeat)
        accounting = self.context.accounting

        @app.on_partitions_assigned.connect
        async def on_assigned(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            assigned = args[0] if args else kwargs.get("assigned", ())  # faust sends the TP set positionally
            mine = sorted((tp.topic, tp.partition) for tp in assigned if tp.topic == topic.get_topic_name())
            log.info("partitions assigned", partitions=[f"{t}[{p}]" for t, p in mine])  # as the batch engine logs it
            accounting.partitions_assigned({p for _, p in mine})

    async def _agent(self, stream: Any) -> None:
        # Each batch is scored and its outputs handed to the producer at once; delivery is
        # confirmed in the background while the next batch is taken (pipelining), with at
        # most ``max_batches_in_flight`` unconfirmed batches (backpressure). take_events acks
        # a batch when this body moves on, so every message gets one extra reference here,
        # released only once the broker acknowledged all of the batch's outputs: until then
        # its offset cannot be committed.
        slots = asyncio.Semaphore(self.config.max_batches_in_flight)
        in_flight: set[asyncio.Future] = set()
        try:
            # take_events' window: 50 ms unless the linger is longer (the batch engine's 8 ms
            # default is a broker fetch wait; faust's buffer wants a window of its own)
            within = max(self.config.batch_linger_s, TAKE_WITHIN_S)
            async for events in stream.take_events(self.config.batch_size, within=within):
                # a registry that is away makes the batch wait here, before it is referenced
                await fetch_writer_schemas(self.context, [e.message.value for e in events])
                for event in events:
                    event.message.incref()
                records = [_input_record(e) for e in events]
                result = process(self.context, records)
                await slots.acquire()
                try:
                    futures = await self._send(result.outputs)
                except Exception as exc:  # returning (or raising) would let faust ack the batch
                    self.context.fail(exc)
                task = asyncio.ensure_future(self._confirm(events, records, result, futures, slots))
                self._sent_at[task] = time.monotonic()
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                task.add_done_callback(self._sent_at.pop)
        finally:
            # SIGTERM cancels the agent: let the batches in hand be delivered (and acked)
            # before faust's final commit.
            if in_flight:
                await asyncio.wait(in_flight)

    async def _send(self, outputs: list[OutputRecord]) -> list[Any]:
        producer = self._app.producer
        futures = []
        for output in outputs:
            try:
                futures.append(await producer.send(output.topic, output.key, output.value, None, None, output.headers))
            except Exception as exc:  # e.g. the topic's metadata is not authorized: say which topic
                raise fatal_error(output.topic, exc) from exc
        return futures

    async def _heartbeat(self) -> None:
        now = time.monotonic()
        self.context.accounting.heartbeat(now - min(self._sent_at.values(), default=now))
        self.context.switch.apply(self.context)  # an idle worker switches too (never inside a batch: process is sync)

    async def _confirm(self, events: list[Any], records: list[InputRecord], result: BatchResult,
                       futures: list[Any], slots: asyncio.Semaphore) -> None:
        try:
            await asyncio.gather(*futures)  # the producer retried what it could; a failure here is final
            for event in events:
                event.ack()  # the last reference: the offset may now be committed
            self.context.accounting.batch_delivered(records, result)
        except Exception as exc:
            self.context.fail(_naming_the_topic(exc, result.outputs, futures))
        finally:
            slots.release()


def _naming_the_topic(exc: BaseException, outputs: list[OutputRecord], futures: list[Any]) -> BaseException:
    """The delivery failure as one line naming the topic it could not be written to (gather
    raises the first failure itself, so the failed future is the one holding that exception)."""
    for output, future in zip(outputs, futures, strict=False):
        if future.done() and not future.cancelled() and future.exception() is exc:
            return fatal_error(output.topic, exc)
    return exc
