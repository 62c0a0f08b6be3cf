"""On the real broker: a batch aiokafka fails unsent leaves its producer's sequence intact.

With no leader for a partition for longer than the request timeout, aiokafka fails the
partition's oldest batch unsent, and (unfixed) its sequence numbers are gone: the broker then
refuses every later batch of that producer to the partition as out of sequence, which
stopped the worker after a long broker outage (aio-libs/aiokafka#1017). Here the partition's
leader is hidden from the producer for a few seconds, as a restarting broker hides it; in the
second case the broker is first unreachable for the producer (every send fails with "node
not ready" and is retried), as while a broker is away.

A batch the broker refuses as too large (over the topic's ``max.message.bytes``) was not
appended either: the same holds for it.
"""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, NotLeaderForPartitionError, OutOfOrderSequenceNumber
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.producer.sender import SendProduceReqHandler
from aiokafka.structs import TopicPartition

from workers.kafka import aiokafka_fixes
from workers.kafka.admin import create_topics
from workers.kafka.connection import aiokafka_options
from workers.kafka.consumer import consume
from workers.settings import Settings

pytestmark = pytest.mark.integration

EXPIRY_MS = 3000  # the producer's request timeout: how long a batch may wait for a leader
TOPIC_LIMIT = 2048  # max.message.bytes of the topic that refuses a batch as too large


async def _send_across_an_expired_batch(settings: Settings, topic: str, unreachable_first: bool) -> str:
    """Send, let one batch expire without a leader, send again: how the last send ended."""
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, request_timeout_ms=EXPIRY_MS,
                                **aiokafka_options(settings))
    await producer.start()
    try:
        await (await producer.send(topic, b"before", partition=0))
        client, cluster, partition = producer.client, producer.client.cluster, TopicPartition(topic, 0)
        if unreachable_first:
            async def not_ready(node_id: int, **kwargs: object) -> bool:
                return False

            client.ready = not_ready  # type: ignore[method-assign]
        expired = await producer.send(topic, b"expired", partition=0)
        if unreachable_first:
            await asyncio.sleep(1.0)  # drained and numbered, every attempt refused before it is written
        leader_of = cluster.leader_for_partition
        cluster.leader_for_partition = lambda tp: None if tp == partition else leader_of(tp)  # type: ignore[method-assign]
        with pytest.raises(NotLeaderForPartitionError):
            await asyncio.wait_for(expired, EXPIRY_MS / 1000 + 10)
        del cluster.leader_for_partition  # the broker is back, and the partition's leader
        if unreachable_first:
            del client.ready
        return await _last_send(producer, topic)
    finally:
        await producer.stop()


async def _send_across_a_refused_batch(settings: Settings, topic: str) -> str:
    """Send, have one batch refused as too large, send again: how the last send ended."""
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **aiokafka_options(settings))
    await producer.start()
    try:
        await (await producer.send(topic, b"before", partition=0))  # a first write is taken at any sequence
        with pytest.raises(MessageSizeTooLargeError):
            await asyncio.wait_for(await producer.send(topic, bytes(TOPIC_LIMIT * 2), partition=0), 30)
        return await _last_send(producer, topic)
    finally:
        await producer.stop()


async def _last_send(producer: AIOKafkaProducer, topic: str) -> str:
    try:
        await asyncio.wait_for(await producer.send(topic, b"after", partition=0), 30)
    except OutOfOrderSequenceNumber:
        return "refused as out of sequence"
    except KafkaError as exc:
        return f"failed: {type(exc).__name__}"
    return "written"


def _values(settings: Settings, topic: str) -> list[bytes | None]:
    return [record.value for record in consume(settings, [topic], idle_timeout_s=5)]


def _unfixed(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls, name in ((MessageAccumulator, "_pop_batch"), (SendProduceReqHandler, "_can_retry")):
        monkeypatch.setattr(cls, name, cls.__dict__[name].__wrapped__)


@pytest.mark.parametrize("unreachable_first", [False, True], ids=["never-drained", "refused-before-written"])
def test_a_batch_expired_unsent_leaves_the_partition_writable(broker_settings, unique_name, unreachable_first):
    aiokafka_fixes.apply()
    topic = unique_name("events")
    create_topics(broker_settings, [topic], partitions=1)
    assert asyncio.run(_send_across_an_expired_batch(broker_settings, topic, unreachable_first)) == "written"
    assert _values(broker_settings, topic) == [b"before", b"after"]


@pytest.mark.parametrize("unreachable_first", [False, True], ids=["never-drained", "refused-before-written"])
def test_without_the_fix_the_broker_refuses_the_next_batch(broker_settings, unique_name, monkeypatch,
                                                            unreachable_first):
    aiokafka_fixes.apply()
    _unfixed(monkeypatch)
    topic = unique_name("events")
    create_topics(broker_settings, [topic], partitions=1)
    outcome = asyncio.run(_send_across_an_expired_batch(broker_settings, topic, unreachable_first))
    assert outcome == "refused as out of sequence"
    assert _values(broker_settings, topic) == [b"before"]


@pytest.mark.parametrize("fixed", [True, False], ids=["fixed", "unfixed"])
def test_a_batch_refused_as_too_large_leaves_the_partition_writable(broker_settings, unique_name, monkeypatch, fixed):
    aiokafka_fixes.apply()
    if not fixed:
        _unfixed(monkeypatch)
    topic = unique_name("letters")
    create_topics(broker_settings, [topic], partitions=1, config={"max.message.bytes": str(TOPIC_LIMIT)})
    outcome = asyncio.run(_send_across_a_refused_batch(broker_settings, topic))
    assert outcome == ("written" if fixed else "refused as out of sequence")
    assert _values(broker_settings, topic) == ([b"before", b"after"] if fixed else [b"before"])
