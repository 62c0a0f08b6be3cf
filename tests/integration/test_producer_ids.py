"""On the real broker: a gap in an idempotent producer's sequence numbers, and the way out.

aiokafka takes a batch's sequence numbers when it first drains it, even when it then fails
the batch unsent (no partition leader for longer than its request timeout): the broker then
refuses every later batch of that producer id to the partition. The gap is made here as
aiokafka makes it (the numbers taken, nothing sent); the batch engine re-sends under a new
producer id (``aiokafka_fixes.new_producer_id``).
"""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import OutOfOrderSequenceNumber
from aiokafka.structs import TopicPartition

from workers.kafka.admin import create_topics
from workers.kafka.aiokafka_fixes import new_producer_id
from workers.kafka.connection import aiokafka_options
from workers.kafka.consumer import consume
from workers.settings import Settings

pytestmark = pytest.mark.integration


async def _send_across_a_gap(settings: Settings, topic: str) -> tuple[bool, bool, int, int]:
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **aiokafka_options(settings))
    await producer.start()
    try:
        await (await producer.send(topic, b"before", partition=0))
        first_id = producer._txn_manager.producer_id
        producer._txn_manager.increment_sequence_number(TopicPartition(topic, 0), 1)  # a batch failed unsent
        try:
            await (await producer.send(topic, b"refused", partition=0))
            refused = False
        except OutOfOrderSequenceNumber:
            refused = True
        renewed = new_producer_id(producer)
        await (await producer.send(topic, b"after", partition=0))
        return refused, renewed, first_id, producer._txn_manager.producer_id
    finally:
        await producer.stop()


def test_a_new_producer_id_writes_again_after_a_sequence_gap(broker_settings, unique_name):
    topic = unique_name("events")
    create_topics(broker_settings, [topic], partitions=1)
    refused, renewed, first_id, second_id = asyncio.run(_send_across_a_gap(broker_settings, topic))
    assert refused  # the broker refuses the producer id's next batch for good
    assert renewed and second_id not in (first_id, -1)
    values = [record.value for record in consume(broker_settings, [topic], idle_timeout_s=5)]
    assert values == [b"before", b"after"]
