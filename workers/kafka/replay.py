"""Dead-letter replay (kafka-python): re-publish selected dead letters to the input topic.

Reads the dead-letter topic from the start up to its end offsets as of the moment the
replay starts (so it terminates, even while new dead letters arrive), selects by
reason, failure time and offset range, and re-publishes each record's original key and
bytes to the topic it originally came from, marked with replay headers.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.core.deadletter import ORIGINAL_TOPIC, REASON
from workers.core.replay import ReplaySelection, replay_headers
from workers.errors import ConfigError
from workers.kafka import clients
from workers.kafka.producer import paced
from workers.settings import Settings


@dataclass
class ReplayReport:
    scanned: int = 0
    selected: int = 0
    published: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)


def replay(
    settings: Settings,
    dlq_topic: str,
    default_target: str,
    selection: ReplaySelection,
    *,
    dry_run: bool = False,
    rate: float | None = None,
    limit: int | None = None,
    on_record: Callable[[str, dict[str, str]], None] | None = None,
) -> ReplayReport:
    from kafka import TopicPartition

    report = ReplayReport()
    consumer = clients.consumer(settings, client_id="workers-replay", enable_auto_commit=False)
    producer = None
    try:
        partitions = [TopicPartition(dlq_topic, p) for p in sorted(consumer.partitions_for_topic(dlq_topic) or ())]
        if not partitions:
            raise ConfigError(f"dead-letter topic {dlq_topic!r} does not exist on {settings.bootstrap_servers} "
                              "(check --pipeline and --topic-prefix)")
        if not dry_run:
            producer = clients.producer(settings, acks="all", linger_ms=10, client_id="workers-replay")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if end[tp] > 0}
        selected = []
        while remaining:
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for m in messages:
                    if m.offset >= end[tp]:
                        remaining.discard(tp)
                        break
                    report.scanned += 1
                    headers = list(m.headers or [])
                    if selection.matches(m.offset, headers):
                        selected.append((m, headers))
                    if m.offset >= end[tp] - 1:
                        remaining.discard(tp)
            remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
        if limit is not None:
            selected = selected[:limit]
        report.selected = len(selected)
        futures = []
        for m, headers in paced(selected, rate):
            values = {k: v.decode("utf-8", "replace") for k, v in headers}
            report.by_reason[values.get(REASON, "?")] += 1
            target = values.get(ORIGINAL_TOPIC) or default_target
            origin = f"{m.topic}/{m.partition}/{m.offset}"
            if on_record is not None:
                on_record(origin, {**values, "target": target})
            if producer is not None:
                new_headers = replay_headers(headers, origin, int(time.time() * 1000))
                futures.append(producer.send(target, key=m.key, value=m.value, headers=new_headers))
        if producer is not None:
            producer.flush()
            for f in futures:
                f.get(timeout=60)  # every replayed record acknowledged, or this raises
            report.published = len(futures)
    finally:
        consumer.close()
        if producer is not None:
            producer.close()
    return report
