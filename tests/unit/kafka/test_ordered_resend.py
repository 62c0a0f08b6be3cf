"""The batch engine's re-send rules, with a scripted producer (the broker behaviour is in the drills).

A batch the producer gave up on is re-sent in the original order, after every failed batch
before it and before anything new; if a later batch of the same partition was already
written, re-sending would reorder a key's outputs, so the engine stops instead.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, NoReturn

import pytest
from aiokafka.errors import NotLeaderForPartitionError, TopicAuthorizationFailedError

from tests.factories import load_test_pipeline
from workers.core.pipeline import BatchResult
from workers.core.records import OutputRecord
from workers.kafka.batch_engine import BatchEngine, _InFlight
from workers.kafka.connection import Connection
from workers.kafka.delivery import Group
from workers.kafka.engine import EngineConfig, EngineContext


class Stop(Exception):
    """What ``fail`` raises here instead of ending the process."""


class ScriptedProducer:
    """Records every (topic, partition, values) sent; every send succeeds. ``renewed`` is the
    engine's new producer (a new producer id): it records into the same list."""

    def __init__(self, sent: list | None = None, ids: list | None = None) -> None:
        self.sent: list[tuple[str, int, list[bytes]]] = [] if sent is None else sent
        self.ids = [self] if ids is None else ids  # every producer the engine used, in order
        self.senders: list[int] = []  # which producer (its place in ids) sent each of its batches
        self.started = self.stopped = False

    def renewed(self) -> ScriptedProducer:
        new = ScriptedProducer(self.sent, self.ids)
        self.ids.append(new)
        return new

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def create_batch(self) -> Any:
        return _Batch()

    async def send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future:
        self.sent.append((topic, partition, list(batch.values)))
        self.ids[0].senders.append(self.ids.index(self))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class _Batch:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def append(self, key: Any, value: bytes, timestamp: Any, headers: Any) -> int:
        self.values.append(value)
        return 1


class Accounting:
    def batch_delivered(self, records: Any, result: Any) -> None: ...

    def partitions_assigned(self, partitions: set[int]) -> None: ...

    def lag_observed(self, lags: dict[int, int]) -> None: ...

    def offsets_committed(self) -> None: ...

    def heartbeat(self, oldest_undelivered_s: float) -> None: ...


@pytest.fixture(scope="module")
def pipeline():
    return load_test_pipeline()


def _engine(pipeline) -> tuple[BatchEngine, ScriptedProducer, list[BaseException]]:
    failures: list[BaseException] = []

    def fail(exc: BaseException) -> NoReturn:
        failures.append(exc)
        raise Stop(str(exc))

    context = EngineContext(pipeline, EngineConfig("g", "c", 500, 0.0, 4, delivery_timeout_s=60.0),
                            Connection(["x:1"], "PLAINTEXT"), Accounting(), fail)
    engine = BatchEngine(context)
    producer = ScriptedProducer()
    engine._producer = producer  # type: ignore[assignment]
    engine._new_producer = lambda: engine._producer.renewed()  # type: ignore[method-assign,union-attr]
    return engine, producer, failures


def _group(value: bytes, outcome: BaseException | None, partition: int = 0) -> Group:
    future = asyncio.get_running_loop().create_future()
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)
    return Group("t.predictions", partition, [OutputRecord("t.predictions", b"k", value, [])], future)


def _entry(*groups: Group) -> _InFlight:
    return _InFlight({}, [], BatchResult(outputs=[]), list(groups), sent_at=0.0 + asyncio.get_running_loop().time())


def _settled_to_a_stop(pipeline, entries: Callable[[], list[_InFlight]]) -> tuple[list, list[BaseException]]:
    """Settle the first of ``entries`` (all in flight) and expect the engine to stop: what was
    sent, and why it stopped."""
    async def scenario() -> tuple[list, list[BaseException]]:
        engine, producer, failures = _engine(pipeline)
        in_flight = entries()
        engine._in_flight.extend(in_flight)
        with pytest.raises(Stop):
            await engine._settle(in_flight[0])
        return producer.sent, failures

    return asyncio.run(scenario())


def test_failed_batches_are_re_sent_in_their_original_order_and_nothing_overtakes_them(pipeline, monkeypatch):
    monkeypatch.setattr("workers.kafka.batch_engine.backoff", lambda attempt: 0.0)

    async def scenario() -> tuple[list, list, bool]:
        engine, producer, failures = _engine(pipeline)
        first = _entry(_group(b"e0", NotLeaderForPartitionError()))
        second = _entry(_group(b"e1", NotLeaderForPartitionError()))  # the same partition failed after it
        engine._in_flight.extend([first, second])
        await engine._settle(first)
        gate_closed = not engine._send_gate.is_set()  # new batches wait until the held ones are delivered
        await engine._settle(second)
        return producer.sent, failures, gate_closed

    sent, failures, gate_closed = asyncio.run(scenario())
    assert failures == [] and gate_closed
    assert [values for _, _, values in sent] == [[b"e0"], [b"e1"]]  # in the order they were first sent


def test_a_later_batch_already_written_stops_the_engine_instead_of_reordering(pipeline, monkeypatch):
    monkeypatch.setattr("workers.kafka.batch_engine.backoff", lambda attempt: 0.0)

    sent, failures = _settled_to_a_stop(pipeline, lambda: [
        _entry(_group(b"e0", NotLeaderForPartitionError())),
        _entry(_group(b"e1", None)),  # written while e0 waited: re-sending e0 would put it after e1
    ])
    assert sent == [] and "was written before a failed one could be re-sent" in str(failures[0])


def test_another_partition_written_meanwhile_does_not_block_the_re_send(pipeline, monkeypatch):
    monkeypatch.setattr("workers.kafka.batch_engine.backoff", lambda attempt: 0.0)

    async def scenario() -> tuple[list, list]:
        engine, producer, failures = _engine(pipeline)
        first = _entry(_group(b"e0", NotLeaderForPartitionError(), partition=0))
        second = _entry(_group(b"e1", None, partition=1))
        engine._in_flight.extend([first, second])
        await engine._settle(first)
        return producer.sent, failures

    sent, failures = asyncio.run(scenario())
    assert sent == [("t.predictions", 0, [b"e0"])] and failures == []


def test_an_authorization_failure_is_never_retried(pipeline):
    sent, failures = _settled_to_a_stop(pipeline, lambda: [_entry(_group(b"e0", TopicAuthorizationFailedError()))])
    assert sent == [] and "cannot WRITE to topic t.predictions: not authorized" in str(failures[0])


def test_an_error_after_settling_ends_the_engine_at_once_instead_of_stalling_the_window(pipeline):
    """A bug in the accounting must not leave the fetch loop waiting on a slot that is never freed."""

    class BrokenAccounting(Accounting):
        def batch_delivered(self, records: Any, result: Any) -> None:
            raise AttributeError("a bug in the monitor")

    async def scenario() -> list[BaseException]:
        engine, _, failures = _engine(pipeline)
        engine.accounting = BrokenAccounting()
        entry = _entry(_group(b"e0", None))
        engine._in_flight.append(entry)
        engine._unsettled.put_nowait(entry)
        with pytest.raises(Stop):
            await asyncio.wait_for(engine._deliver(engine), 5)  # a mode task: called with its service
        return failures

    failures = asyncio.run(scenario())
    assert [type(f) for f in failures] == [AttributeError]


def test_placing_outputs_is_timed_as_the_outputs_stage_without_the_metadata_wait(pipeline):
    from workers.ops.stage_cpu import OUTPUTS

    async def other_work(done: asyncio.Event) -> None:  # what the event loop runs while metadata is awaited
        end = time.thread_time() + 0.2
        while time.thread_time() < end:
            pass
        done.set()

    async def scenario() -> tuple[float, float, list]:
        engine, producer, _ = _engine(pipeline)
        answered = asyncio.Event()

        async def partitions_of(topic: str) -> list[int]:
            work = asyncio.ensure_future(other_work(answered))
            await answered.wait()
            await work
            engine._partitions[topic] = [0, 1, 2, 3]
            return engine._partitions[topic]

        engine._partitions_of = partitions_of  # type: ignore[method-assign]
        outputs = [OutputRecord("t.predictions", b"k%d" % i, b"v" * 100, []) for i in range(5000)]
        started = time.thread_time()
        await engine._send(outputs)
        return engine.context.cpu.totals()[OUTPUTS], time.thread_time() - started - 0.2, producer.sent

    timed, own, sent = asyncio.run(scenario())
    assert sum(len(values) for _, _, values in sent) == 5000
    assert 0.3 * own < timed < own + 0.05  # the stage's own work, not the other work done during the wait


def test_a_re_send_waits_for_a_batch_being_sent_so_that_it_cannot_overtake_it(pipeline, monkeypatch):
    """A later batch has queued its outputs for the failed batch's partition and waits for room
    for another partition: it is not among the batches in flight yet, but re-sending now would
    put the failed outputs after it. The re-send waits for that send, then sees it and stops."""
    from aiokafka.errors import KafkaTimeoutError

    from workers.kafka.key_partitions import key_hashes

    monkeypatch.setattr("workers.kafka.batch_engine.backoff", lambda attempt: 0.0)
    keys = [b"k%d" % i for i in range(20)]
    hashes = key_hashes(keys)
    first_key = keys[0]
    other_key = next(k for k, h in zip(keys, hashes, strict=True) if h % 2 != hashes[0] % 2)
    partition = int(hashes[0] % 2)

    class SlowSecondSend(ScriptedProducer):
        def __init__(self) -> None:
            super().__init__()
            self.room = asyncio.Event()

        async def send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future:
            if self.sent:
                await self.room.wait()  # the accumulator is full for this partition
            return await super().send_batch(batch, topic, partition)

    async def scenario() -> tuple[list, list]:
        engine, _, failures = _engine(pipeline)
        producer = SlowSecondSend()
        engine._producer = producer  # type: ignore[assignment]
        engine._new_producer = producer.renewed  # type: ignore[method-assign]
        engine._partitions["t.predictions"] = [0, 1]
        failed = _entry(_group(b"e0", KafkaTimeoutError(), partition=partition))  # never queued
        engine._in_flight.append(failed)
        later = BatchResult(outputs=[OutputRecord("t.predictions", first_key, b"e1", []),
                                     OutputRecord("t.predictions", other_key, b"e2", [])])
        sending = asyncio.ensure_future(engine._dispatch({}, [], later))
        while not producer.sent:
            await asyncio.sleep(0)
        settling = asyncio.ensure_future(engine._settle(failed))
        await asyncio.sleep(0.05)  # the re-send would have gone out by now if it did not wait
        producer.room.set()
        await sending
        with pytest.raises(Stop):
            await settling
        return producer.sent, failures

    sent, failures = asyncio.run(scenario())
    assert [values for _, _, values in sent] == [[b"e1"], [b"e2"]]  # e0 is not re-sent after e1
    assert "was written before a failed one could be re-sent" in str(failures[0])


def test_a_later_producer_batch_of_the_same_batch_already_written_stops_the_engine(pipeline, monkeypatch):
    """A partition's outputs over one producer batch go as several: if the first failed and the
    second was written, re-sending the first would put it after the second."""
    monkeypatch.setattr("workers.kafka.batch_engine.backoff", lambda attempt: 0.0)

    sent, failures = _settled_to_a_stop(pipeline, lambda: [
        _entry(_group(b"e0a", NotLeaderForPartitionError()), _group(b"e0b", None))])
    assert sent == [] and "was written before a failed one could be re-sent" in str(failures[0])


def _stopped_at_the_deadline(pipeline, meanwhile: Callable[[BatchEngine], Any]) -> tuple[list, float]:
    """A failed batch with 0.2 s of its 60 s delivery deadline left, and ``meanwhile`` (a coroutine
    function given the engine) set up before it is settled: why the engine stopped, and after how long."""
    async def scenario() -> tuple[list, float]:
        engine, _, failures = _engine(pipeline)  # delivery_timeout_s=60
        failed = _entry(_group(b"e0", NotLeaderForPartitionError()))
        failed.sent_at = time.monotonic() - 59.8
        engine._in_flight.append(failed)
        await meanwhile(engine)
        started = time.monotonic()
        with pytest.raises(Stop):
            await asyncio.wait_for(engine._settle(failed), 10)
        return failures, time.monotonic() - started

    return asyncio.run(scenario())


def test_waiting_for_a_stuck_send_is_bounded_by_the_delivery_deadline(pipeline):
    async def stuck_send(engine: BatchEngine) -> None:
        await engine._sending.acquire()  # a send that does not finish (the producer waits for room)

    failures, waited = _stopped_at_the_deadline(pipeline, stuck_send)
    assert "not acknowledged within 60s" in str(failures[0]) and waited < 5


def test_a_batch_the_producer_gave_back_is_re_sent_from_a_new_producer_once_the_old_one_has_settled(
        pipeline, monkeypatch):
    """The batch may hold sequence numbers the broker never saw: from the same producer id the
    re-send would be refused as out of sequence. Outputs of another partition still pending in
    the old producer are delivered first, so nothing of it can be written after the re-send."""
    monkeypatch.setattr("workers.kafka.batch_engine.backoff", lambda attempt: 0.0)

    async def scenario() -> tuple[list, list, ScriptedProducer, list]:
        engine, producer, failures = _engine(pipeline)
        failed = _entry(_group(b"e0", NotLeaderForPartitionError(), partition=0))
        other = asyncio.get_running_loop().create_future()
        still_sending = _entry(Group("t.predictions", 1, [OutputRecord("t.predictions", b"k", b"e1", [])], other))
        engine._in_flight.extend([failed, still_sending])
        settling = asyncio.ensure_future(engine._settle(failed))
        await asyncio.sleep(0.05)
        renewed_before_other_settled = len(producer.ids) > 1
        other.set_result(None)  # the old producer delivers its last batch
        await asyncio.wait_for(settling, 5)
        return producer.sent, failures, producer, [renewed_before_other_settled]

    sent, failures, old, [early] = asyncio.run(scenario())
    assert failures == [] and not early
    assert len(old.ids) == 2 and old.stopped and old.ids[1].started and not old.ids[1].stopped
    assert sent == [("t.predictions", 0, [b"e0"])] and old.senders == [1]  # from the new producer


def test_a_batch_refused_before_it_was_queued_is_re_sent_from_the_same_producer(pipeline, monkeypatch):
    from aiokafka.errors import KafkaTimeoutError

    monkeypatch.setattr("workers.kafka.batch_engine.backoff", lambda attempt: 0.0)

    async def scenario() -> tuple[list, ScriptedProducer]:
        engine, producer, _ = _engine(pipeline)
        group = _group(b"e0", KafkaTimeoutError())
        group.queued = False  # the accumulator stayed full: it took no sequence numbers
        entry = _entry(group)
        engine._in_flight.append(entry)
        await engine._settle(entry)
        return producer.sent, producer

    sent, producer = asyncio.run(scenario())
    assert sent == [("t.predictions", 0, [b"e0"])] and producer.ids == [producer] and not producer.stopped
    assert producer.senders == [0]


def test_batches_given_back_by_a_producer_already_replaced_do_not_replace_it_again(pipeline, monkeypatch):
    monkeypatch.setattr("workers.kafka.batch_engine.backoff", lambda attempt: 0.0)

    async def scenario() -> tuple[list, ScriptedProducer]:
        engine, producer, _ = _engine(pipeline)
        first = _entry(_group(b"e0", NotLeaderForPartitionError(), partition=0))
        second = _entry(_group(b"e1", NotLeaderForPartitionError(), partition=1))  # the same producer gave it back
        engine._in_flight.extend([first, second])
        await engine._settle(first)
        await engine._settle(second)
        return producer.sent, producer

    sent, producer = asyncio.run(scenario())
    assert len(producer.ids) == 2  # one new producer for both
    assert sent == [("t.predictions", 0, [b"e0"]), ("t.predictions", 1, [b"e1"])] and producer.senders == [1, 1]


def test_waiting_for_a_later_batch_of_the_partition_is_bounded_by_the_delivery_deadline(pipeline, monkeypatch):
    """The producer retries a batch it has sent for as long as a leader is named."""
    monkeypatch.setattr("workers.kafka.batch_engine.backoff", lambda attempt: 0.0)

    async def later_batch_never_acknowledged(engine: BatchEngine) -> None:
        never = asyncio.get_running_loop().create_future()
        engine._in_flight.append(_entry(Group("t.predictions", 0, [], never)))

    failures, waited = _stopped_at_the_deadline(pipeline, later_batch_never_acknowledged)
    assert "not re-sent within 60s" in str(failures[0]) and waited < 5
