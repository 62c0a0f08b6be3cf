"""aiokafka retries a failed metadata update after its backoff: a worker whose broker is away
does not spin a core asking again and again (a real client against a port that refuses)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.producer.sender import SendProduceReqHandler
from aiokafka.structs import BrokerMetadata

from workers.dev.processes import free_port
from workers.kafka import aiokafka_fixes


async def _updates_in(seconds: float, backoff_ms: int) -> int:
    """Metadata updates a sender-like loop gets through while the only broker refuses connections."""
    port = free_port()  # nothing listens there: every connection is refused at once
    client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{port}", retry_backoff_ms=backoff_ms)
    client.cluster._brokers = {1: BrokerMetadata(1, "127.0.0.1", port, None)}  # the broker it knew
    client._sync_task = asyncio.ensure_future(client._md_synchronizer())
    updates = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert await client.force_metadata_update() is False
            updates += 1
    finally:
        client._sync_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client._sync_task
        await client.close()
    return updates


@pytest.fixture(autouse=True)
def _quiet_aiokafka(caplog):
    caplog.set_level(logging.CRITICAL, logger="aiokafka")


def test_a_failed_update_waits_for_the_backoff():
    aiokafka_fixes.apply()
    updates = asyncio.run(_updates_in(1.0, backoff_ms=100))
    assert 1 <= updates <= 11  # at most one attempt per 100 ms (fewer on a loaded machine): never a spin


def test_without_the_fix_the_loop_spins(monkeypatch):
    aiokafka_fixes.apply()
    patched = AIOKafkaClient.__dict__["_metadata_update"]
    monkeypatch.setattr(AIOKafkaClient, "_metadata_update", patched.__wrapped__)
    assert asyncio.run(_updates_in(1.0, backoff_ms=100)) > 50


def test_apply_wraps_once():
    aiokafka_fixes.apply()
    aiokafka_fixes._applied = False
    aiokafka_fixes.apply()
    assert not hasattr(AIOKafkaClient.__dict__["_metadata_update"].__wrapped__, "__wrapped__")
    assert not hasattr(MessageAccumulator.__dict__["_pop_batch"].__wrapped__, "__wrapped__")
    assert not hasattr(SendProduceReqHandler.__dict__["_can_retry"].__wrapped__, "__wrapped__")


class _Cluster:
    """Cluster metadata where the partition has a leader or not."""

    def __init__(self) -> None:
        self.leader: int | None = 1

    def leader_for_partition(self, tp: object) -> int | None:
        return self.leader


async def _numbered_batch() -> tuple[MessageAccumulator, Any, Any, Any, _Cluster]:
    """A partition's batch, drained (so numbered) by an idempotent producer's accumulator."""
    from aiokafka.producer.transaction_manager import TransactionManager
    from aiokafka.structs import TopicPartition

    tp = TopicPartition("t", 0)
    txn = TransactionManager(None, 60_000)
    txn.set_pid_and_epoch(7, 0)
    cluster = _Cluster()
    accumulator = MessageAccumulator(cluster, 16384, 0, 0.05, txn_manager=txn)
    builder = accumulator.create_builder()
    builder.append(key=None, value=b"v", timestamp=None)
    await accumulator.add_batch(builder, tp, timeout=1)
    drained, _ = accumulator.drain_by_nodes(ignore_nodes=set())
    return accumulator, txn, tp, drained[1][tp], cluster


def _handler(txn: Any) -> Any:
    class Handler:  # what SendProduceReqHandler._can_retry reads of its own
        _sender = type("Sender", (), {"_txn_manager": txn})()

    return Handler()


async def _expire_after_a_failed_send(error: BaseException) -> tuple[int, int]:
    """A batch drained (numbered), its send failing with ``error``, back at the head of the queue,
    then expired without a leader: the partition's next sequence number before and after."""
    accumulator, txn, tp, batch, cluster = await _numbered_batch()
    numbered = txn.sequence_number(tp)
    assert SendProduceReqHandler._can_retry(_handler(txn), error, batch)  # retriable: back in the queue
    accumulator.reenqueue(batch)
    await asyncio.sleep(0.06)  # past its time to live
    cluster.leader = None
    accumulator.drain_by_nodes(ignore_nodes=set())
    assert batch.future.done() and isinstance(batch.future.exception(), NotLeaderForPartitionError)
    return numbered, txn.sequence_number(tp)


async def _refused_as_too_large(earlier: BaseException | None) -> tuple[int, int]:
    """A batch drained (numbered), after a failed attempt with ``earlier`` if given, then refused by the
    broker as too large: the partition's next sequence number before and after."""
    accumulator, txn, tp, batch, _ = await _numbered_batch()
    numbered = txn.sequence_number(tp)
    if earlier is not None:
        assert SendProduceReqHandler._can_retry(_handler(txn), earlier, batch)
        accumulator.reenqueue(batch)
        drained, _ = accumulator.drain_by_nodes(ignore_nodes=set())
        assert drained[1][tp] is batch
    assert not SendProduceReqHandler._can_retry(_handler(txn), MessageSizeTooLargeError(), batch)
    return numbered, txn.sequence_number(tp)


@pytest.mark.parametrize("earlier", [None, NodeNotReadyError()], ids=["first-attempt", "after-node-not-ready"])
def test_a_batch_refused_as_too_large_gives_its_numbers_back(earlier):
    """The broker checks the size before it appends: the numbers are unused."""
    aiokafka_fixes.apply()
    assert asyncio.run(_refused_as_too_large(earlier)) == (1, 0)


def test_a_batch_refused_as_too_large_after_a_possible_write_keeps_its_numbers():
    """An earlier attempt may have been written (then the topic's limit shrank): kept, as aiokafka keeps them."""
    aiokafka_fixes.apply()
    assert asyncio.run(_refused_as_too_large(RequestTimedOutError())) == (1, 1)


def test_without_the_fix_a_batch_refused_as_too_large_keeps_its_numbers(monkeypatch):
    aiokafka_fixes.apply()
    monkeypatch.setattr(SendProduceReqHandler, "_can_retry", SendProduceReqHandler.__dict__["_can_retry"].__wrapped__)
    assert asyncio.run(_refused_as_too_large(None)) == (1, 1)


def test_a_batch_never_written_gives_its_sequence_numbers_back():
    aiokafka_fixes.apply()
    assert asyncio.run(_expire_after_a_failed_send(NodeNotReadyError())) == (1, 0)


def test_without_the_fix_a_batch_never_written_keeps_its_numbers(monkeypatch):
    aiokafka_fixes.apply()
    for cls, name in ((MessageAccumulator, "_pop_batch"), (SendProduceReqHandler, "_can_retry")):
        monkeypatch.setattr(cls, name, cls.__dict__[name].__wrapped__)
    assert asyncio.run(_expire_after_a_failed_send(NodeNotReadyError())) == (1, 1)  # the gap the broker refuses


@pytest.mark.parametrize("error", [KafkaConnectionError(), RequestTimedOutError(), NotLeaderForPartitionError()])
def test_a_batch_that_may_have_been_written_keeps_its_sequence_numbers(error):
    """The broker may have written it: the next batch with the same numbers would be dropped as a
    duplicate while the broker answers success."""
    aiokafka_fixes.apply()
    assert asyncio.run(_expire_after_a_failed_send(error)) == (1, 1)


async def _expire_the_head_of_two() -> tuple[bool, BaseException | None, int]:
    """A partition's batch in flight, a second queued meanwhile, the first back at the head (its
    send failed before it was written); the leader gone, the first expires, the second is younger."""
    from aiokafka.producer.transaction_manager import TransactionManager
    from aiokafka.structs import TopicPartition

    tp = TopicPartition("t", 0)
    txn = TransactionManager(None, 60_000)
    txn.set_pid_and_epoch(7, 0)
    cluster = _Cluster()
    accumulator = MessageAccumulator(cluster, 16384, 0, 0.2, txn_manager=txn)

    async def queued(value: bytes) -> Any:
        builder = accumulator.create_builder()
        builder.append(key=None, value=value, timestamp=None)
        await accumulator.add_batch(builder, tp, timeout=1)
        return accumulator._batches[tp][-1]

    first = await queued(b"first")
    accumulator.drain_by_nodes(ignore_nodes=set())  # in flight, numbered
    await asyncio.sleep(0.15)
    second = await queued(b"second")
    accumulator.reenqueue(first)  # "node not ready": back at the head
    await asyncio.sleep(0.1)  # the first is past its 0.2 s, the second is not
    cluster.leader = None
    accumulator.drain_by_nodes(ignore_nodes=set())
    assert first.future.done()
    return second.future.done(), second.future.exception() if second.future.done() else None, \
        txn.sequence_number(tp)


def test_the_batches_behind_an_expired_one_fail_with_it():
    """Left queued, the younger one would be sent when the leader is back, before the re-send."""
    aiokafka_fixes.apply()
    done, error, sequence = asyncio.run(_expire_the_head_of_two())
    assert done and isinstance(error, NotLeaderForPartitionError) and sequence == 0


def test_without_the_fix_the_younger_batch_stays_queued(monkeypatch):
    aiokafka_fixes.apply()
    monkeypatch.setattr(MessageAccumulator, "_pop_batch", MessageAccumulator.__dict__["_pop_batch"].__wrapped__)
    done, _, sequence = asyncio.run(_expire_the_head_of_two())
    assert not done and sequence == 1  # and the expired one took a number the broker never saw
