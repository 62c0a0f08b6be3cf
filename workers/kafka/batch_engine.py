"""The default ``batch`` engine: the Kafka driver's batch fetch inside the faust app.

faust's per-event stream machinery caps an agent at a few thousand events/s here, while
the same core behind aiokafka's ``getmany`` runs at the in-process ceiling (README,
Performance). This service keeps faust for the app's lifecycle (signals, start/stop,
logging) and runs the consumer loop itself:

    getmany (up to batch_size records) -> Pipeline.process -> producer.send_batch (all outputs)
    -> acknowledgements settled in batch order (delivery.py) -> offsets committed in batch order.

At-least-once: an offset is committed only after every output of its batch and of all
earlier batches was acknowledged by the broker (``acks=all``). Up to
``max_batches_in_flight`` batches await acknowledgement while the next one is scored
(backpressure bounds memory). On a rebalance, revoked partitions are drained and
committed before they are handed over, so a clean rebalance creates no duplicates.

Order: the idempotent producer keeps each partition's order through its own retries.
When it gives up on a batch (a broker down longer than its request timeout), new sends
are held and the failed batches are re-sent in their original order, unless a later
batch of the same partition was already written: then re-sending would reorder a key's
outputs, so the worker stops without committing and a restart re-sends both in order.
Every wait is bounded: ``delivery_timeout_s`` for an output, ``shutdown_timeout_s`` for
the drain at SIGTERM and at a rebalance; past either, the worker exits (code 70) without
committing what is undelivered.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from workers.core.deadletter import PAYLOAD_TRUNCATED, record_size, with_reference
from workers.core.pipeline import BatchResult, Pipeline
from workers.core.records import InputRecord, OutputRecord
from workers.errors import DeliveryError
from workers.kafka import input_records
from workers.kafka.connection import aiokafka_options
from workers.kafka.delivery import Failure, Group, backoff, classify, failed_future, fatal_error
from workers.kafka.engine import EngineContext, fetch_writer_schemas, process
from workers.kafka.input_records import as_input_record
from workers.kafka.key_partitions import NO_KEY, key_hashes
from workers.kafka.producer_batches import append_outputs
from workers.ops.logs import get_logger
from workers.ops.stage_cpu import OUTPUTS

log = get_logger("workers.batch_engine")

COMMIT_INTERVAL_S = 0.2
HEARTBEAT_INTERVAL_S = 1.0
POLL_TIMEOUT_MS = 100  # an idle poll; getmany returns as soon as any record is there
COMMIT_TIMEOUT_S = 5.0  # a final commit at shutdown or revocation, at most (within shutdown_timeout_s)


IDLE_FETCH = {"fetch_min_bytes": 1, "fetch_max_wait_ms": 500}  # return as soon as anything is there


def _fetch_wait(config: Any) -> dict[str, int]:
    """Batching at low rates, done by the broker: a fetch returns once ``batch_min_bytes`` of
    records are there or ``batch_linger_s`` has passed. Waiting costs this process nothing,
    where many small fetches and small batches each pay the client's and the model's fixed
    costs (README, Performance)."""
    if not config.batch_linger_s:
        return IDLE_FETCH
    return {"fetch_min_bytes": config.batch_min_bytes, "fetch_max_wait_ms": max(1, round(config.batch_linger_s * 1000))}


def pace_fetches(consumer: Any, options: dict[str, int]) -> bool:
    """Change the fetch wait of a running aiokafka consumer (read when each fetch request is
    built). False if this aiokafka keeps it elsewhere: the wait then stays as configured."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "_fetch_min_bytes") or not hasattr(fetcher, "_fetch_max_wait_ms"):
        return False
    fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = options["fetch_min_bytes"], options["fetch_max_wait_ms"]
    return True


@dataclass(eq=False)
class _InFlight:
    offsets: dict[TopicPartition, int]  # next offset to commit per partition once delivered
    records: list[InputRecord]
    result: BatchResult
    groups: list[Group]
    sent_at: float
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class _CommitOnRevoke(ConsumerRebalanceListener):
    def __init__(self, on_revoked: Callable[[Any], Any], on_assigned: Callable[[Any], None]) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._on_revoked(revoked)  # deliver and commit what was read before the partitions move

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned", partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        self._on_assigned(assigned)


class BatchEngine(mode.Service):
    def __init__(self, context: EngineContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context
        self.config = context.config
        self.accounting = context.accounting
        self._in_flight: deque[_InFlight] = deque()  # sent, in order; left until committed
        self._unsettled: asyncio.Queue[_InFlight] = asyncio.Queue()  # sent, in order; until delivered
        self._settling: _InFlight | None = None
        self._committing: asyncio.Future | None = None
        self._slots = asyncio.Semaphore(self.config.max_batches_in_flight)
        self._send_gate = asyncio.Event()  # cleared while failed batches are re-sent: nothing may overtake them
        self._send_gate.set()
        self._sending = asyncio.Lock()  # held while a batch is sent and registered (see _dispatch)
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
        self._next_offsets: dict[TopicPartition, int] = {}  # first offset not yet handed to the pipeline
        self._quiet = False  # the last poll returned no record: fetches do not linger
        self._careful_rounds = 0  # fetch one record at a time after a record the client could not parse
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()  # for records without a key
        key_hashes([b""])  # compiled (or loaded from numba's cache) now, not in the first batch
        self._producer: AIOKafkaProducer | None = None
        self._producers = 0  # producers replaced so far (see _renew_producer)
        self._input_records = input_records.install()  # fetched records come as InputRecords

    @property
    def pipeline(self) -> Pipeline:
        return self.context.pipeline  # the one serving now (a rollout may switch it between batches)

    def install(self, app: Any) -> None:
        """Started and stopped with the app; faust's own consumer has nothing to read (ours does)."""
        app.producer_only = True
        app.add_dependency(self)

    def _new_producer(self) -> AIOKafkaProducer:
        c = self.config
        return AIOKafkaProducer(
            client_id=c.client_id, acks="all", enable_idempotence=True,
            # linger 0: a scored batch is complete when it is handed over; lingering would hold
            # it until the event loop is free again, i.e. after the next batch is scored (p50 -4 ms)
            linger_ms=0,
            max_batch_size=256 * 1024,
            compression_type=c.output_compression,
            # how long a batch may wait for a partition leader, and a metadata wait for a topic,
            # before the failure comes back to be re-sent or reported (never beyond the deadline)
            request_timeout_ms=int(min(40.0, c.delivery_timeout_s) * 1000),
            **aiokafka_options(self.context.connection),
        )

    async def on_start(self) -> None:
        c = self.config
        connection = aiokafka_options(self.context.connection)
        self._producer = self._new_producer()
        self._consumer = AIOKafkaConsumer(
            client_id=c.client_id, group_id=c.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=c.batch_size, isolation_level=c.isolation_level,
            value_deserializer=input_records.AS_INPUT_RECORDS,
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024,
            **_fetch_wait(c),
            **connection,
        )
        await self._producer.start()
        self._consumer.subscribe([self.pipeline.topics.events], listener=_CommitOnRevoke(self._revoke, self._assign))
        await self._consumer.start()

    async def on_stop(self) -> None:
        # SIGTERM: stop turning fetched records into work, then deliver and commit the
        # batches in hand, within shutdown_timeout_s. (mode calls on_stop before it cancels
        # the engine's tasks, so the deliverer keeps running meanwhile.)
        self._stopping = True
        try:
            await self._drain_within_deadline("shutdown")
        finally:
            if self._consumer is not None:
                await self._consumer.stop()
            if self._producer is not None:
                await self._producer.stop()

    # ------------------------------------------------------------------ consuming

    @mode.Service.task
    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop and not self._stopping:
            revocations = self._revocations
            careful = self._careful_rounds > 0  # may hold markers of records the client could not parse
            try:
                if careful:
                    fetched = await self._fetch_one_by_one()
                    self._careful_rounds -= 1
                else:
                    fetched = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=self.config.batch_size)
            except KafkaError:
                raise  # the client's own errors: retried inside aiokafka, or fatal for the service
            except Exception as exc:  # a record the client cannot parse (e.g. a header key that is not UTF-8)
                await self._rewind_after_unparseable(exc)
                continue
            if self._quiet != (not fetched):
                # A quiet stream (a poll without records) is fetched without a linger: an idle
                # worker then makes 2 fetches a second instead of one per linger (5% of a core),
                # and the first record after a pause is scored at once. Records bring the linger back.
                self._quiet = not fetched
                pace_fetches(consumer, IDLE_FETCH if self._quiet else _fetch_wait(self.config))
            if not fetched:
                self._past_records_without_events(())
                continue
            if self.pipeline.registered is not None:  # registry-framed input: its writer schemas first
                values = [getattr(m, "value", None) for messages in fetched.values() for m in messages]
                if not await fetch_writer_schemas(self.context, values, lambda: self._stopping):
                    return  # stopping while the registry was away: not processed, not committed
            async with self._batch_lock:
                if self._stopping:
                    return  # not processed, not committed: the next owner reads it
                if self._revocations != revocations:
                    self._give_back(fetched)
                    continue
                await self._start_batch(fetched, careful)
                self._past_records_without_events(fetched)

    async def _rewind_after_unparseable(self, exc: BaseException) -> None:
        """aiokafka drops what it had drained in a fetch that raised: rewind every partition to the
        first record not yet handed to the pipeline, then read one record at a time to find the bad one."""
        consumer = self._consumer
        assert consumer is not None
        log.warning("a fetched record could not be parsed; finding it", error=f"{type(exc).__name__}: {exc}")
        for tp in consumer.assignment():
            offset = self._next_offsets.get(tp)
            if offset is None:
                offset = await consumer.committed(tp)
            if offset is None:
                offset = (await consumer.beginning_offsets([tp]))[tp]
            consumer.seek(tp, offset)
        self._careful_rounds = 3

    async def _fetch_one_by_one(self) -> dict[TopicPartition, list[Any]]:
        """Up to a batch of records, one per call, so that a record that cannot be parsed is
        found exactly: it becomes a marker the pipeline dead-letters, and reading goes on after it."""
        consumer = self._consumer
        assert consumer is not None
        fetched: dict[TopicPartition, list[Any]] = {}
        share = max(1, self.config.batch_size // max(1, len(consumer.assignment())))
        for tp in sorted(consumer.assignment()):
            records: list[Any] = []
            while len(records) < share:
                try:
                    got = await consumer.getmany(tp, timeout_ms=0 if records else POLL_TIMEOUT_MS, max_records=1)
                except KafkaError:
                    raise
                except Exception as exc:
                    offset = await consumer.position(tp)
                    records.append(_Unparseable(tp.topic, tp.partition, offset, f"{type(exc).__name__}: {exc}"))
                    consumer.seek(tp, offset + 1)
                    log.error("record could not be parsed; dead-lettered as corrupt", topic=tp.topic,
                              partition=tp.partition, offset=offset, error=f"{type(exc).__name__}: {exc}")
                    break
                if not got:
                    break
                records.extend(got[tp])
            if records:
                fetched[tp] = records
        return fetched

    def _give_back(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        for tp, messages in fetched.items():
            if tp in assigned:
                consumer.seek(tp, messages[0].offset)  # read again under the new assignment

    async def _start_batch(self, fetched: dict[TopicPartition, list[Any]], careful: bool = False) -> None:
        records: list[InputRecord] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, messages in fetched.items():
            if self._input_records and not careful:  # as fetched: no copy per record
                records += messages
            else:
                for m in messages:
                    if isinstance(m, _Unparseable):
                        records.append(InputRecord(None, None, m.topic, m.partition, m.offset, None, [], m.error))
                    else:
                        records.append(as_input_record(m))
            offsets[tp] = messages[-1].offset + 1
        self._next_offsets.update(offsets)
        result = process(self.context, records)
        self._update_lag(fetched)
        await self._slots.acquire()
        await self._dispatch(offsets, records, result)

    async def _dispatch(self, offsets: dict[TopicPartition, int], records: list[InputRecord],
                        result: BatchResult) -> None:
        """Send a scored batch's outputs and put it among the batches in flight, after any re-send.

        Sending and registering happen under ``_sending``: a re-send waits for a send in
        progress, so that every batch queued in the producer before it is among the later
        batches it checks (``_check_resend``). A batch whose producer batch for one partition
        is queued while another partition waits for room is otherwise not yet registered.
        """
        while True:
            await self._send_gate.wait()  # failed batches being re-sent go first
            async with self._sending:
                if not self._send_gate.is_set():
                    continue  # a re-send began while this batch waited for the lock: it still goes first
                entry = _InFlight(offsets, records, result, await self._send(result.outputs), time.monotonic())
                self._in_flight.append(entry)
                self._unsettled.put_nowait(entry)
                return

    def _update_lag(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        lags = {}
        for tp, messages in fetched.items():
            end = self._readable_end(tp)
            if end is not None:
                lags[tp.partition] = max(0, end - (messages[-1].offset + 1))
        self.accounting.lag_observed(lags)

    def _past_records_without_events(self, fetched: Collection[TopicPartition]) -> None:
        """The partitions not in this batch, from the consumer's position, which moves past what
        carries no event (a transaction's commit or abort marker; under read_committed an
        aborted transaction's records): their lag, and their position for the next commit.

        Measured from the last record, a partition whose input ends with a marker showed a lag
        of 1 for good, and an idle worker turned not ready (no progress with lag above zero);
        and the group's committed offset stayed one below the end, which lag monitors (Burrow)
        report as a stalled consumer. Everything of the partition before its position was
        delivered (nothing of it is in flight) or carries no event, so committing it keeps
        at-least-once. Committed by the periodic commit, never awaited here: a commit waits for
        the group coordinator, and this loop must not."""
        consumer = self._consumer
        assert consumer is not None
        in_flight = {tp for entry in self._in_flight for tp in entry.offsets}
        lags = {}
        for tp in consumer.assignment():
            if tp in fetched:
                continue
            position = _position_now(consumer, tp)
            if position is None:
                continue
            end = self._readable_end(tp)
            if end is not None:
                lags[tp.partition] = max(0, end - position)
            handed = self._next_offsets.get(tp)
            if handed is not None and position > handed and tp not in in_flight and not self._careful_rounds:
                self._next_offsets[tp] = self._to_commit[tp] = position
        if lags:
            self.accounting.lag_observed(lags)

    def _readable_end(self, tp: TopicPartition) -> int | None:
        """Where this consumer's input ends: the last stable offset when it reads committed records
        (an open transaction's records are not readable yet), else the high watermark."""
        consumer = self._consumer
        assert consumer is not None
        if self.config.isolation_level == "read_committed":
            stable = consumer.last_stable_offset(tp)
            if stable is not None and stable >= 0:
                return int(stable)
        highwater = consumer.highwater(tp)
        return None if highwater is None else int(highwater)

    # ------------------------------------------------------------------ sending

    async def _send(self, outputs: list[OutputRecord]) -> list[Group]:
        """Group outputs by topic partition into producer batches: one future per batch.

        aiokafka's per-record ``send`` creates a future and a task switch per record; whole
        batches (``create_batch``/``send_batch``) cost a fraction of that. Keys are placed by
        the same murmur2 partitioner as Kafka's Java clients, so a key's predictions share
        a partition, in order. A dead letter larger than ``max_message_bytes`` is sent with
        a reference instead of its original bytes.
        """
        cpu, started = self.context.cpu, time.thread_time()
        by_topic: dict[str, dict[int, list[OutputRecord]]] = {}
        known, limit = self._partitions, self.config.max_message_bytes
        topic: str | None = None
        hashes = key_hashes([o.key for o in outputs])  # all keys in one compiled call
        for o, hashed in zip(outputs, hashes, strict=True):  # per record: plain lookups; a coroutine for a new topic
            if o.reason is not None and record_size(o) > limit:
                o = with_reference(o)
            if o.topic != topic:  # outputs come in runs of one topic: look it up once per run
                topic = o.topic
                placed = known.get(topic)
                if not placed:  # a metadata request: waiting is not this stage's CPU
                    cpu.add(OUTPUTS, started)
                    placed = await self._partitions_of(topic)
                    started = time.thread_time()
                partitions = placed
                count = len(partitions)
                lists = by_topic.setdefault(topic, {})
            if hashed != NO_KEY:
                partition = partitions[hashed % count]
            else:  # no key: anywhere, as the clients place it
                partition = int(self._partitioner(None, partitions, partitions))
            members = lists.get(partition)
            if members is None:
                members = lists[partition] = []
            members.append(o)
        cpu.add(OUTPUTS, started)
        groups: list[Group] = []
        for topic_name, lists in by_topic.items():
            for partition, items in lists.items():
                groups += await self._send_records(topic_name, partition, items)
        return groups

    async def _send_records(self, topic: str, partition: int, items: list[OutputRecord]) -> list[Group]:
        producer = self._producer
        assert producer is not None
        groups: list[Group] = []
        start = 0
        while start < len(items):  # as many producer batches as the records need (the first always fits)
            started = time.thread_time()
            batch = producer.create_batch()
            end = append_outputs(batch, items, start)
            self.context.cpu.add(OUTPUTS, started)
            groups.append(await self._send_batch(batch, topic, partition, items[start:end]))
            start = end
        return groups

    async def _send_batch(self, batch: Any, topic: str, partition: int, members: list[OutputRecord]) -> Group:
        producer, generation = self._producer, self._producers
        assert producer is not None
        try:
            future = await producer.send_batch(batch, topic, partition=partition)
        except KafkaError as exc:  # not even queued (e.g. the accumulator stayed full): settled like a failure
            return Group(topic, partition, members, failed_future(exc), sent_at=time.monotonic(), queued=False)
        return Group(topic, partition, members, future, sent_at=time.monotonic(), producer=generation)

    async def _partitions_of(self, topic: str) -> list[int]:
        partitions = self._partitions.get(topic)
        if partitions is None:
            producer = self._producer
            assert producer is not None
            try:
                partitions = self._partitions[topic] = sorted(await producer.partitions_for(topic))
            except KafkaError as exc:
                self._fatal(fatal_error(topic, exc))
        return partitions

    # ------------------------------------------------------------------ delivering

    @mode.Service.task
    async def _deliver(self) -> None:
        """Settle sent batches in the order they were sent: account, release, commit."""
        try:
            await self._deliver_in_order()
        except Exception as exc:
            # A bug past the settling (e.g. in the accounting): exit now, committing nothing more.
            # Left to crash the task, the in-flight window would never free its slot, the fetch
            # loop would wait on it holding the batch lock, and the exit would take the whole
            # shutdown deadline.
            self.context.fail(exc)

    async def _deliver_in_order(self) -> None:
        while True:
            entry = self._settling = await self._unsettled.get()
            try:
                await self._settle(entry)
            except Exception as exc:
                self.context.fail(exc)
            self._settling = None
            entry.done.set_result(None)
            self.accounting.batch_delivered(entry.records, entry.result)
            self._slots.release()
            if not self._send_gate.is_set() and self._unsettled.empty():
                self._send_gate.set()  # every batch that was held back is delivered: sending resumes
            if self._committing is None or self._committing.done():
                # in the background: settling the next batches (and freeing their slots) must not wait
                # for the commit's round trip, or the fetch loop stalls on a full in-flight window
                self._committing = asyncio.ensure_future(self._commit_delivered())

    async def _settle(self, entry: _InFlight) -> None:
        groups = entry.groups
        while True:
            results = await asyncio.gather(*(g.future for g in groups), return_exceptions=True)
            failed = [(g, r) for g, r in zip(groups, results, strict=True) if isinstance(r, BaseException)]
            if not failed:
                return
            kinds = [classify(exc) for _, exc in failed]
            for (group, exc), kind in zip(failed, kinds, strict=True):
                if kind is Failure.FATAL:
                    self._fatal(fatal_error(group.topic, exc))
                if kind is Failure.RETRIABLE:
                    # this batch's own later producer batches count too (a partition's outputs over
                    # one producer batch): one of them written already would be overtaken as well
                    after = groups[next(i for i, g in enumerate(groups) if g is group) + 1:]
                    await self._check_resend(entry, group, exc, after)
            if Failure.RETRIABLE in kinds:
                await asyncio.sleep(backoff(max(g.attempts for g, _ in failed)))
            if any(kind is Failure.RETRIABLE and group.queued and group.producer == self._producers
                   for (group, _), kind in zip(failed, kinds, strict=True)):
                await self._renew_producer(entry)  # once per producer that gave something back
            groups = []
            for (group, exc), kind in zip(failed, kinds, strict=True):  # re-sent in the order they were sent
                if kind is Failure.TOO_LARGE:
                    groups += await self._resend_too_large(group, exc)
                else:
                    for new in await self._send_records(group.topic, group.partition or 0, group.outputs):
                        new.attempts = group.attempts + 1
                        groups.append(new)

    def _time_left(self, entry: _InFlight) -> float:
        """Seconds until ``entry``'s outputs are past the delivery deadline (negative: past it)."""
        return self.config.delivery_timeout_s - (time.monotonic() - entry.sent_at)

    async def _check_resend(self, entry: _InFlight, group: Group, exc: BaseException,
                            after: Sequence[Group] = ()) -> None:
        """A retriable failure may be re-sent only in time, to a topic that exists, and in order.

        ``after``: the groups sent after this one in the same round of this batch.
        """
        log.warning("delivery failed; re-sending in order", topic=group.topic, partition=group.partition,
                    records=len(group.outputs), error=f"{type(exc).__name__}: {exc}",
                    waited_s=round(time.monotonic() - entry.sent_at, 1))
        self._send_gate.clear()  # nothing new may overtake the re-send
        out_of_time = True
        budget = self._time_left(entry)
        if budget > 0:
            with contextlib.suppress(TimeoutError):
                # a batch being sent now is registered first, so that it is among the later ones below
                await asyncio.wait_for(self._sending.acquire(), budget)
                self._sending.release()
                out_of_time = False
        if out_of_time or self._time_left(entry) < 0:
            self._fatal(DeliveryError(
                f"outputs to topic {group.topic}[{group.partition}] not acknowledged within "
                f"{self.config.delivery_timeout_s:.0f}s (WORKERS_DELIVERY_TIMEOUT_S; last error "
                f"{type(exc).__name__}); stopping without committing undelivered outputs"))
        if type(exc).__name__ == "UnknownTopicOrPartitionError" and not await self._topic_exists(group.topic):
            self._fatal(fatal_error(group.topic, exc))
        position = list(self._in_flight).index(entry)
        later = [g for g in [*after, *(g for e in list(self._in_flight)[position + 1:] for g in e.groups)]
                 if (g.topic, g.partition) == (group.topic, group.partition)]
        if later:
            # the producer retries a batch it has sent for as long as a leader is named: bounded here
            budget = self._time_left(entry)
            _, unsettled = await asyncio.wait([g.future for g in later], timeout=max(0.001, budget))
            if unsettled:
                self._fatal(DeliveryError(
                    f"outputs to topic {group.topic}[{group.partition}] not re-sent within "
                    f"{self.config.delivery_timeout_s:.0f}s (WORKERS_DELIVERY_TIMEOUT_S): a later batch of the "
                    "partition is still unacknowledged; stopping without committing undelivered outputs"))
            if any(not g.future.cancelled() and g.future.exception() is None for g in later):
                self._fatal(DeliveryError(
                    f"a later batch for topic {group.topic}[{group.partition}] was written before a failed "
                    "one could be re-sent; stopping without committing so that a restart re-sends both in order"))

    async def _renew_producer(self, entry: _InFlight) -> None:
        """Re-sends go out from a new producer (a new producer id) once nothing of the old one is pending.

        The producer gives a batch back only when it expired without a partition leader (a broker
        away for longer than the request timeout). Such a batch may hold sequence numbers the
        broker never saw (a send answered "not leader" while the broker shut down, then the
        outage): the broker would refuse everything after it from that producer id
        (``OutOfOrderSequenceNumber``), the re-send too. A new id starts a new sequence, as Kafka's
        Java producer bumps its epoch (KAFKA-12152). Everything the old producer still holds is
        delivered or failed first, so nothing of it can be written after a re-send.
        """
        old = self._producer
        assert old is not None
        pending = {g.future for e in self._in_flight for g in e.groups if not g.future.done()}
        budget = self._time_left(entry)
        deadline = time.monotonic() + budget
        new = None
        try:
            if pending:
                await asyncio.wait_for(asyncio.wait(pending), max(0.001, budget))
            while new is None:
                candidate = self._new_producer()
                try:
                    await asyncio.wait_for(candidate.start(), max(0.001, deadline - time.monotonic()))
                    new = candidate
                except KafkaError:  # the broker is not answering yet
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(candidate.stop(), COMMIT_TIMEOUT_S)
                    if time.monotonic() >= deadline:
                        raise TimeoutError from None
                    await asyncio.sleep(1.0)
        except TimeoutError:
            self._fatal(DeliveryError(
                f"outputs to re-send could not go out from a new producer within "
                f"{self.config.delivery_timeout_s:.0f}s (WORKERS_DELIVERY_TIMEOUT_S); "
                "stopping without committing undelivered outputs"))
        self._producer = new
        self._producers += 1
        log.warning("re-sending from a new producer id", pending_settled=len(pending))
        with contextlib.suppress(Exception):  # nothing is left in it; a stuck stop must not hold the re-send
            await asyncio.wait_for(old.stop(), COMMIT_TIMEOUT_S)

    async def _resend_too_large(self, group: Group, exc: BaseException) -> list[Group]:
        """One by one; a dead letter that is still too large goes with a reference to its bytes."""
        if group.outputs and not group.outputs[0].is_dead_letter:
            self._fatal(fatal_error(group.topic, exc))
        if len(group.outputs) == 1:
            letter = group.outputs[0]
            if dict(letter.headers).get(PAYLOAD_TRUNCATED) == b"true":  # even the reference is refused
                self._fatal(fatal_error(group.topic, exc))
            log.warning("dead letter too large for its topic; written with a reference to the original",
                        topic=group.topic, bytes=record_size(letter))
            return await self._send_records(group.topic, group.partition or 0, [with_reference(letter)])
        groups = []
        for output in group.outputs:
            groups += await self._send_records(group.topic, group.partition or 0, [output])
        return groups

    async def _topic_exists(self, topic: str) -> bool:
        producer = self._producer
        assert producer is not None
        try:
            metadata = await producer.client.fetch_all_metadata()
        except KafkaError:
            return True  # cannot tell: let the deadline decide
        return topic in metadata.topics()

    def _fatal(self, error: DeliveryError) -> NoReturn:
        self.context.fail(error)

    @mode.Service.timer(HEARTBEAT_INTERVAL_S)
    async def _heartbeat(self) -> None:
        """The event loop runs (liveness), and how long the oldest undelivered batch has waited (readiness)."""
        oldest = self._settling or (self._in_flight[0] if self._in_flight and not self._in_flight[0].done.done()
                                    else None)
        self.accounting.heartbeat(time.monotonic() - oldest.sent_at if oldest is not None else 0.0)
        self.context.switch.apply(self.context)  # an idle worker switches too

    # ------------------------------------------------------------------ committing

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
                self._uncommitted += len(entry.records)
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
                self.accounting.offsets_committed()
            except KafkaError as exc:
                # The group moved on (rebalance): the new owner re-reads from the last commit.
                # That can duplicate outputs, never lose them.
                log.warning("commit failed; partitions will be re-read", error=repr(exc))

    @mode.Service.timer(COMMIT_INTERVAL_S)
    async def _commit_periodically(self) -> None:
        await self._commit_delivered()  # when no new batch comes to do it

    # ------------------------------------------------------------------ rebalancing and stopping

    def _assign(self, assigned: Any) -> None:
        self._next_offsets = {tp: o for tp, o in self._next_offsets.items() if tp in assigned}
        self.accounting.partitions_assigned({tp.partition for tp in assigned})

    async def _revoke(self, revoked: Any) -> None:
        await self._drain_within_deadline("rebalance")
        self.pipeline.forget_partitions({(tp.topic, tp.partition) for tp in revoked})
        if self.context.trial is not None:
            self.context.trial.forget_partitions({(tp.topic, tp.partition) for tp in revoked})

    async def _drain_within_deadline(self, why: str) -> None:
        """Deliver and commit within ``shutdown_timeout_s`` in all: a share of it is kept for the
        final commit of what was delivered when the rest cannot be."""
        reserve = min(COMMIT_TIMEOUT_S, 0.2 * self.config.shutdown_timeout_s)
        try:
            await asyncio.wait_for(self._drain(), self.config.shutdown_timeout_s - reserve)
        except TimeoutError:
            undelivered = sum(len(e.records) for e in self._in_flight if not e.done.done())
            with contextlib.suppress(TimeoutError, KafkaError):  # what was delivered is committed
                await asyncio.wait_for(self._commit_delivered(force=True), reserve)
            self.context.fail(DeliveryError(
                f"{why}: {undelivered} records still undelivered after {self.config.shutdown_timeout_s:.0f}s "
                "(WORKERS_SHUTDOWN_TIMEOUT_S); exiting without committing them"))

    async def _drain(self) -> None:
        async with self._batch_lock:
            self._revocations += 1
            pending = [entry.done for entry in self._in_flight]
            if pending:
                await asyncio.gather(*pending)
            await self._commit_delivered(force=True)


def _position_now(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's next offset for ``tp`` if it has one (``position()`` would wait for one)."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
        return int(state.position) if state is not None and state.has_valid_position else None
    except (AttributeError, KeyError, TypeError):  # unassigned meanwhile, or another aiokafka
        return None


@dataclass(frozen=True)
class _Unparseable:
    """Where a record the client could not parse was; it stands in for the record in a batch."""

    topic: str
    partition: int
    offset: int
    error: str
