"""The default ``batch`` engine: the Kafka driver's batch fetch inside the faust app.

faust's per-event stream machinery caps an agent at a few thousand events/s here, while
the same core behind aiokafka's ``getmany`` runs at the in-process ceiling (README,
Performance). This service keeps faust for the app's lifecycle (signals, start/stop,
logging) and runs the consumer loop itself:

    getmany (up to batch_size records) -> Pipeline.process -> producer.send (all outputs)
    -> acknowledgements awaited in the background -> offsets committed in batch order.

At-least-once: an offset is committed only after every output of its batch and of all
earlier batches was acknowledged by the broker (``acks=all``). Up to
``max_batches_in_flight`` batches await acknowledgement while the next one is scored
(backpressure bounds memory). On a rebalance, revoked partitions are drained and
committed before they are handed over, so a clean rebalance creates no duplicates.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from workers.core.pipeline import BatchResult
from workers.core.records import InputRecord, OutputRecord
from workers.errors import DeliveryError
from workers.kafka.connection import aiokafka_options
from workers.kafka.delivery import Sent, await_delivery
from workers.kafka.engine import EngineContext
from workers.ops.logs import get_logger

log = get_logger("workers.batch_engine")

COMMIT_INTERVAL_S = 0.2
POLL_TIMEOUT_MS = 100  # an idle poll; getmany returns as soon as any record is there


@dataclass
class _InFlight:
    offsets: dict[TopicPartition, int]  # next offset to commit per partition once delivered
    done: asyncio.Future
    records: int


class _CommitOnRevoke(ConsumerRebalanceListener):
    def __init__(self, on_revoked: Callable[[], Any], on_assigned: Callable[[set[int]], None]) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._on_revoked()  # deliver and commit what was read before the partitions move

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned", partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        self._on_assigned({tp.partition for tp in assigned})


class BatchEngine(mode.Service):
    def __init__(self, context: EngineContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context
        self.config = context.config
        self.pipeline = context.pipeline
        self.accounting = context.accounting
        self._in_flight: deque[_InFlight] = deque()
        self._slots = asyncio.Semaphore(self.config.max_batches_in_flight)
        self._confirming: set[asyncio.Future] = set()
        self._commit_lock = asyncio.Lock()  # commits go out in batch order, never backwards
        self._to_commit: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._uncommitted = 0  # delivered records whose offsets are not committed yet
        # aiokafka may run the revoke callback while this loop holds a fetched batch, so a
        # batch is turned into in-flight work under this lock, and a batch fetched before a
        # revocation is given back (seek) instead of processed: its partitions may be gone.
        self._batch_lock = asyncio.Lock()
        self._revocations = 0
        self._stopping = False  # set on shutdown: fetched records are left for the next owner
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()
        self._partition_cache: dict[tuple[str, bytes], int] = {}
        self._producer: AIOKafkaProducer | None = None

    def install(self, app: Any) -> None:
        """Started and stopped with the app; faust's own consumer has nothing to read (ours does)."""
        app.producer_only = True
        app.add_dependency(self)

    async def on_start(self) -> None:
        c = self.config
        connection = aiokafka_options(self.context.connection)
        self._producer = AIOKafkaProducer(
            client_id=c.client_id, acks="all", enable_idempotence=True,
            # linger 0: a scored batch is complete when it is handed over; lingering would hold
            # it until the event loop is free again, i.e. after the next batch is scored (p50 -4 ms)
            linger_ms=0,
            max_batch_size=256 * 1024, **connection,
        )
        self._consumer = AIOKafkaConsumer(
            client_id=c.client_id, group_id=c.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=c.batch_size,
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024,
            **connection,
        )
        await self._producer.start()
        listener = _CommitOnRevoke(self._revoke, self.accounting.partitions_assigned)
        self._consumer.subscribe([self.pipeline.topics.events], listener=listener)
        await self._consumer.start()

    async def on_stop(self) -> None:
        # SIGTERM: stop turning fetched records into work, then deliver and commit the
        # batches in hand. (mode calls on_stop before it cancels the consume task.)
        try:
            async with self._batch_lock:
                self._stopping = True
                await self._drain()
        finally:
            if self._consumer is not None:
                await self._consumer.stop()
            if self._producer is not None:
                await self._producer.stop()

    @mode.Service.task
    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop:
            revocations = self._revocations
            fetched = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=self.config.batch_size)
            if not fetched:
                continue
            if self.config.batch_linger_s:
                fetched = await self._linger(fetched)
            async with self._batch_lock:
                if self._stopping:
                    return  # not processed, not committed: the next owner reads it
                if self._revocations != revocations:
                    self._give_back(fetched)
                    continue
                await self._start_batch(fetched)

    async def _linger(self, fetched: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, list[Any]]:
        """Wait ``batch_linger_s`` for more records: fewer, larger model calls at low rates."""
        consumer = self._consumer
        assert consumer is not None
        count = sum(len(messages) for messages in fetched.values())
        if count >= self.config.batch_size:
            return fetched
        await asyncio.sleep(self.config.batch_linger_s)
        more = await consumer.getmany(timeout_ms=0, max_records=self.config.batch_size - count)
        for tp, messages in more.items():
            fetched.setdefault(tp, []).extend(messages)  # same partition: still in offset order
        return fetched

    def _give_back(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        for tp, messages in fetched.items():
            if tp in assigned:
                consumer.seek(tp, messages[0].offset)  # read again under the new assignment

    async def _start_batch(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        records: list[InputRecord] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, messages in fetched.items():
            for m in messages:
                records.append(InputRecord(m.value, m.key, m.topic, m.partition, m.offset, m.timestamp,
                                           list(m.headers or ())))
            offsets[tp] = messages[-1].offset + 1
        started = time.perf_counter()
        try:
            result = self.pipeline.process(records)
        except Exception as exc:  # a bug in the core: never commit what was not handled
            self.context.fail(exc)
        result.processing_s = time.perf_counter() - started
        self._update_lag(fetched)
        await self._slots.acquire()
        futures = await self._send(result.outputs)
        entry = _InFlight(offsets, asyncio.get_running_loop().create_future(), len(records))
        self._in_flight.append(entry)
        task = asyncio.ensure_future(self._confirm(entry, records, result, futures))
        self._confirming.add(task)  # a strong reference until it is done
        task.add_done_callback(self._confirming.discard)

    def _update_lag(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        consumer = self._consumer
        assert consumer is not None
        lags = {}
        for tp, messages in fetched.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lags[tp.partition] = max(0, highwater - (messages[-1].offset + 1))
        self.accounting.lag_observed(lags)

    async def _send(self, outputs: list[OutputRecord]) -> Sent:
        """Group outputs by topic partition into producer batches: one future per batch.

        aiokafka's per-record ``send`` creates a future and a task switch per record; whole
        batches (``create_batch``/``send_batch``) cost a fraction of that. Keys are placed by
        the same murmur2 partitioner as Kafka's Java clients, so a key's predictions share
        a partition, in order.
        """
        producer = self._producer
        assert producer is not None
        groups: dict[tuple[str, int], list[OutputRecord]] = {}
        for o in outputs:
            partitions = self._partitions.get(o.topic)
            if partitions is None:
                partitions = self._partitions[o.topic] = sorted(await producer.partitions_for(o.topic))
            groups.setdefault((o.topic, self._partition(o.topic, o.key, partitions)), []).append(o)
        sent: Sent = []
        for (topic, partition), items in groups.items():
            batch, members = producer.create_batch(), list[OutputRecord]()
            for o in items:
                if batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers) is None:
                    sent.append((await producer.send_batch(batch, topic, partition=partition), members))
                    batch, members = producer.create_batch(), []
                    if batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers) is None:
                        raise DeliveryError(f"a {len(o.value or b'')}-byte record for {topic}[{partition}] does not "
                                            "fit in a producer batch")
                members.append(o)
            sent.append((await producer.send_batch(batch, topic, partition=partition), members))
        return sent

    def _partition(self, topic: str, key: bytes | None, partitions: list[int]) -> int:
        if key is None:
            return int(self._partitioner(None, partitions, partitions))
        cache_key = (topic, key)
        partition = self._partition_cache.get(cache_key)
        if partition is None:  # murmur2 is pure Python in aiokafka: remember it per key
            if len(self._partition_cache) > 200_000:
                self._partition_cache.clear()
            partition = self._partition_cache[cache_key] = int(self._partitioner(key, partitions, partitions))
        return partition

    async def _confirm(self, entry: _InFlight, records: list[InputRecord], result: BatchResult,
                       futures: list[Any]) -> None:
        try:
            await await_delivery(futures, self._send)
            entry.done.set_result(None)
            self.accounting.batch_delivered(records, result)
            await self._commit_delivered()
        except Exception as exc:
            self.context.fail(exc)
        finally:
            self._slots.release()

    async def _commit_delivered(self, force: bool = False) -> None:
        """Commit the longest delivered prefix of batches, in the order they were read.

        Once a full batch's worth of records is delivered, or ``COMMIT_INTERVAL_S`` after the
        last commit: a commit per small batch would load the broker at low rates, and a
        commit per interval alone would let a backlog run far ahead of the committed offset
        (what a kill -9 replays). ``force`` (revocation, shutdown) commits at once.
        """
        async with self._commit_lock:
            while self._in_flight and self._in_flight[0].done.done():
                entry = self._in_flight.popleft()
                self._to_commit.update(entry.offsets)
                self._uncommitted += entry.records
            now = time.monotonic()
            if not self._to_commit or self._consumer is None:
                return
            due = self._uncommitted >= self.config.batch_size or now - self._last_commit >= COMMIT_INTERVAL_S
            if not (force or due):
                return
            assigned = self._consumer.assignment()
            offsets = {tp: o for tp, o in self._to_commit.items() if tp in assigned}
            self._to_commit = {}
            self._uncommitted = 0
            self._last_commit = now
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                # The group moved on (rebalance): the new owner re-reads from the last commit.
                # That can duplicate outputs, never lose them.
                log.warning("commit failed; partitions will be re-read", error=repr(exc))

    @mode.Service.timer(COMMIT_INTERVAL_S)
    async def _commit_periodically(self) -> None:
        await self._commit_delivered()  # when no new batch comes to do it

    async def _revoke(self) -> None:
        async with self._batch_lock:
            self._revocations += 1
            await self._drain()

    async def _drain(self) -> None:
        pending = [entry.done for entry in self._in_flight]
        if pending:
            await asyncio.gather(*pending)
        await self._commit_delivered(force=True)
