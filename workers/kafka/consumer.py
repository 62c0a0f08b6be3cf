"""Downstream consumers: read predictions or dead letters as an application would (kafka-python)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from workers.core.records import Headers
from workers.errors import KafkaUnavailableError
from workers.kafka import clients
from workers.settings import Settings


@dataclass(slots=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


def consume(
    settings: Settings,
    topics: list[str],
    *,
    group_id: str | None = None,
    from_beginning: bool = True,
    idle_timeout_s: float | None = None,
    max_records: int | None = None,
) -> Iterator[Consumed]:
    """Yield records until ``max_records`` or ``idle_timeout_s`` without a new record."""
    consumer = clients.consumer(
        settings,
        *topics,
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group_id is not None,
        client_id="workers-tail",
    )
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    seen = 0
    last = time.monotonic()
    try:
        for topic in topics:  # kafka-python only logs an unauthorized topic and then waits forever
            if not consumer.partitions_for_topic(topic):
                raise KafkaUnavailableError(
                    f"topic {topic} does not exist on {settings.bootstrap_servers}, or "
                    f"{settings.sasl_username or 'this client'} may not DESCRIBE it (see `workers acl print`)")
        while max_records is None or seen < max_records:
            try:
                # never more than are still wanted: a record fetched and not yielded would be lost
                # to a group that commits on close
                batches = consumer.poll(timeout_ms=200, max_records=None if max_records is None else max_records - seen)
            except (TopicAuthorizationFailedError, GroupAuthorizationFailedError) as exc:
                raise KafkaUnavailableError(
                    f"{settings.sasl_username or 'this client'} may not READ {', '.join(topics)}"
                    f"{' with group ' + group_id if group_id else ''} ({type(exc).__name__}); "
                    "see `workers acl print`") from None
            if not batches:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    return
                continue
            last = time.monotonic()
            for _tp, messages in batches.items():
                for m in messages:
                    yield Consumed(m.topic, m.partition, m.offset, m.key, m.value, list(m.headers or []), m.timestamp)
                    seen += 1
                    if max_records is not None and seen >= max_records:
                        return  # a poll can bring more than were asked for
    finally:
        consumer.close()


def end_offsets_total(settings: Settings, topics: list[str]) -> int:
    """Records written so far to ``topics`` (the sum of their partitions' end offsets)."""
    from kafka import TopicPartition

    consumer = clients.consumer(settings)
    try:
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def committed_offsets(settings: Settings, group_id: str, topic: str) -> dict[int, int | None]:
    """{partition: the group's committed offset (None: nothing committed)} of a topic."""
    from kafka import TopicPartition

    consumer = clients.consumer(settings, group_id=group_id, enable_auto_commit=False)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        return {p: consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        consumer.close()
