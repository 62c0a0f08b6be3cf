"""The real broker round trip every other integration test relies on."""
from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer

from workers.kafka.admin import create_topics
from workers.settings import Settings

pytestmark = pytest.mark.integration

PARTITIONS = 3
PER_KEY = 20
KEYS = [f"acct-{i}".encode() for i in range(6)]


def _produce(bootstrap: str, topic: str) -> dict[bytes, list[bytes]]:
    """Keyed records with headers; returns the values sent per key, in order."""
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = []
    for i in range(PER_KEY):
        for key in KEYS:
            value = f"{key.decode()}:{i}".encode()
            headers = [("seq", str(i).encode()), ("source", b"smoke")]
            futures.append(producer.send(topic, key=key, value=value, headers=headers))
            sent[key].append(value)
    producer.flush()
    for f in futures:
        f.get(timeout=10)  # every record acknowledged
    producer.close()
    return sent


def _check(records: list[tuple[int, bytes, bytes, list[tuple[str, bytes]]]], sent: dict[bytes, list[bytes]]):
    assert len(records) == PER_KEY * len(KEYS)
    per_key: dict[bytes, list[bytes]] = defaultdict(list)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for partition, key, value, headers in records:
        per_key[key].append(value)
        partitions_of_key[key].add(partition)
        assert dict(headers)["source"] == b"smoke"
        assert dict(headers)["seq"] == value.split(b":")[1]
    assert per_key == sent  # same values, and in order per key
    assert all(len(p) == 1 for p in partitions_of_key.values())  # a key stays on one partition
    assert len({p for ps in partitions_of_key.values() for p in ps}) > 1  # keys spread out


def test_kafka_python_round_trip(kafka_bootstrap, unique_name):
    settings = Settings(bootstrap_servers=kafka_bootstrap)
    topic = unique_name("smoke")
    assert create_topics(settings, [topic], partitions=PARTITIONS) == [topic]
    assert create_topics(settings, [topic], partitions=PARTITIONS) == []  # idempotent
    sent = _produce(kafka_bootstrap, topic)

    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=unique_name("group"),
        auto_offset_reset="earliest", consumer_timeout_ms=5000,
    )
    assert len(consumer.partitions_for_topic(topic)) == PARTITIONS
    records = [(m.partition, m.key, m.value, m.headers) for m in consumer]
    consumer.close()
    _check(records, sent)


def test_aiokafka_consumes_what_kafka_python_produced(kafka_bootstrap, unique_name):
    from aiokafka import AIOKafkaConsumer

    settings = Settings(bootstrap_servers=kafka_bootstrap)
    topic = unique_name("smoke")
    create_topics(settings, [topic], partitions=PARTITIONS)
    sent = _produce(kafka_bootstrap, topic)
    expected = PER_KEY * len(KEYS)

    async def consume():
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, group_id=unique_name("group"),
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got = []
        try:
            while len(got) < expected:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), timeout=30)
                for _tp, messages in batches.items():
                    got += [(m.partition, m.key, m.value, list(m.headers)) for m in messages]
        finally:
            await consumer.stop()
        return got

    _check(asyncio.run(consume()), sent)
