"""Downstream consumers: read predictions or dead letters as an application would (kafka-python)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from workers.core.records import Headers
from workers.errors import KafkaUnavailableError
from workers.kafka import clients
from workers.ops.logs import get_logger
from workers.settings import Settings

log = get_logger("workers.consumer")


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
    """Yield records until ``max_records`` or ``idle_timeout_s`` without a new record.

    A client whose IO thread stopped answering (kafka-python raises ``KafkaTimeoutError`` after
    ``kafka_python_fixes.RUN_WAIT_BOUND_S``) is closed and replaced by a new one that goes on
    after the last record yielded, so a stall costs time, not records, and yields nothing twice."""
    from kafka.errors import GroupAuthorizationFailedError, KafkaTimeoutError, TopicAuthorizationFailedError

    consumer = _open(settings, topics, group_id, from_beginning)
    next_offsets: dict[tuple[str, int], int] = {}  # after the last record yielded, per partition
    seen = 0
    last = time.monotonic()
    try:
        for topic in topics:  # kafka-python only logs an unauthorized topic and then waits forever
            if not consumer.partitions_for_topic(topic):
                raise KafkaUnavailableError(
                    f"topic {topic} does not exist on {settings.bootstrap_servers}, or "
                    f"{settings.client_name or 'this client'} may not DESCRIBE it (see `workers acl print`)")
        while max_records is None or seen < max_records:
            try:
                # never more than are still wanted: a record fetched and not yielded would be lost
                # to a group that commits on close
                batches = consumer.poll(timeout_ms=200, max_records=None if max_records is None else max_records - seen)
            except (TopicAuthorizationFailedError, GroupAuthorizationFailedError) as exc:
                raise KafkaUnavailableError(
                    f"{settings.client_name or 'this client'} may not READ {', '.join(topics)}"
                    f"{' with group ' + group_id if group_id else ''} ({type(exc).__name__}); "
                    "see `workers acl print`") from None
            except KafkaTimeoutError as exc:
                log.warning("consumer stalled, replacing it", topics=topics, group=group_id, error=str(exc))
                _close_quietly(consumer)
                consumer = _open(settings, topics, group_id, from_beginning, next_offsets)
                last = time.monotonic()
                continue
            if not batches:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    return
                continue
            last = time.monotonic()
            for _tp, messages in batches.items():
                for m in messages:
                    if m.offset < next_offsets.get((m.topic, m.partition), 0):
                        continue  # yielded before a replacement consumer went back to its group's commit
                    next_offsets[m.topic, m.partition] = m.offset + 1
                    yield Consumed(m.topic, m.partition, m.offset, m.key, m.value, list(m.headers or []), m.timestamp)
                    seen += 1
                    if max_records is not None and seen >= max_records:
                        return  # a poll can bring more than were asked for
    finally:
        consumer.close()


def _open(settings: Settings, topics: list[str], group_id: str | None, from_beginning: bool,
          next_offsets: dict[tuple[str, int], int] | None = None) -> Any:
    """A consumer of ``topics``. Replacing a stalled one (``next_offsets`` given) without a group:
    every partition assigned, those already read from after their last record yielded. In a
    group, the group's committed offsets decide, and ``consume`` skips what it yielded already."""
    replacing = next_offsets is not None and group_id is None
    after = next_offsets or {}
    consumer = clients.consumer(
        settings,
        *([] if replacing else topics),
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group_id is not None,
        client_id="workers-tail",
    )
    if replacing:
        from kafka import TopicPartition

        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        for tp in partitions:
            if (tp.topic, tp.partition) in after:
                consumer.seek(tp, after[tp.topic, tp.partition])
    return consumer


def _close_quietly(consumer: Any) -> None:
    try:
        consumer.close(autocommit=False)  # what it would commit may be past what was yielded
    except Exception as exc:  # a stalled client may fail to close; the new one does not need it
        log.warning("stalled consumer did not close cleanly", error=str(exc))


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
