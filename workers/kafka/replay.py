"""Dead-letter replay (kafka-python): re-publish selected dead letters to the pipeline's input topic.

* It streams: each dead letter is read, checked and re-published in turn; memory does not
  grow with the topic.
* It keeps its progress in a consumer group named after the selection (printed in the
  report), committed once what was published is acknowledged: a second run with the same
  selection replays only dead letters that arrived since (``from_beginning`` reads again
  from the start). It reads up to the topic's end as of its start, so it terminates while
  new dead letters arrive.
* A record that was replayed ``max_replays`` times already is skipped and reported: a
  record that keeps failing is not re-published over and over.
* Records go only to the pipeline's own input topic or to topics explicitly allowed; a
  dead letter whose ``dlq.original.topic`` names any other topic is refused and reported.
* A dead letter written with a reference instead of its bytes (too large for the
  dead-letter topic) is replayed from its source topic while that still holds it, checked
  against the sha256 in its headers.
* The replay marks are signed with ``WORKERS_REPLAY_KEY`` so that workers can trust them.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workers.core.deadletter import (
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    PAYLOAD_SHA256,
    PAYLOAD_TRUNCATED,
    REASON,
)
from workers.core.replay import ReplaySelection, replay_count, replay_headers
from workers.errors import ConfigError
from workers.kafka import clients
from workers.settings import Settings

COMMIT_EVERY = 1000  # records published between progress commits
ORIGINAL_FETCH_TIMEOUT_S = 10.0


@dataclass
class ReplayReport:
    group: str = ""
    scanned: int = 0
    selected: int = 0
    published: int = 0
    over_limit: int = 0  # replayed max_replays times already: skipped
    refused: Counter[str] = field(default_factory=Counter)  # target topic -> records refused
    unavailable: int = 0  # truncated dead letters whose original is no longer in the source topic
    by_reason: Counter[str] = field(default_factory=Counter)


def progress_group(settings: Settings, selection: ReplaySelection) -> str:
    """One consumer group per pipeline and selection: replaying other reasons later still sees them."""
    key = json.dumps([sorted(selection.reasons), selection.since_ms, selection.until_ms, selection.from_offset,
                      selection.to_offset])
    return f"{settings.topic_prefix}{settings.pipeline}-replay-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def replay(
    settings: Settings,
    dlq_topic: str,
    target_topic: str,
    selection: ReplaySelection,
    *,
    dry_run: bool = False,
    rate: float | None = None,
    limit: int | None = None,
    from_beginning: bool = False,
    max_replays: int = 3,
    allowed_targets: frozenset[str] = frozenset(),
    replay_key: bytes | None = None,
    on_record: Callable[[str, dict[str, str]], None] | None = None,
) -> ReplayReport:
    from kafka import OffsetAndMetadata, TopicPartition

    report = ReplayReport(group=progress_group(settings, selection))
    allowed = {target_topic, *allowed_targets}
    consumer = clients.consumer(settings, client_id="workers-replay", group_id=report.group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = None
    originals = None
    try:
        partitions = [TopicPartition(dlq_topic, p) for p in sorted(consumer.partitions_for_topic(dlq_topic) or ())]
        if not partitions:
            raise ConfigError(f"dead-letter topic {dlq_topic!r} does not exist on {settings.bootstrap_servers} "
                              "(check --pipeline and --topic-prefix)")
        consumer.assign(partitions)
        if from_beginning:
            consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        if not dry_run:
            producer = clients.producer(settings, acks="all", linger_ms=10, client_id="workers-replay")
        futures: list[Any] = []
        done: dict[Any, int] = {}  # partition -> next offset, once published and acknowledged

        def settle() -> None:
            if producer is None:
                return
            producer.flush()
            for f in futures:
                f.get(timeout=60)  # every replayed record acknowledged, or this raises
            futures.clear()
            if done:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in done.items()})

        interval = 1 / rate if rate else 0.0
        next_send = time.monotonic()
        remaining = {tp for tp in partitions if consumer.position(tp) < end[tp]}
        def reached() -> bool:
            return limit is not None and report.selected >= limit

        while remaining and not reached():
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for m in messages:
                    if m.offset >= end[tp] or reached():
                        remaining.discard(tp)
                        break
                    report.scanned += 1
                    headers = list(m.headers or [])
                    done[tp] = m.offset + 1
                    if not selection.matches(m.offset, headers):
                        continue
                    values = {k: v.decode("utf-8", "replace") for k, v in headers}
                    target = values.get(ORIGINAL_TOPIC) or target_topic
                    origin = f"{m.topic}/{m.partition}/{m.offset}"
                    if target not in allowed:
                        report.refused[target] += 1
                        continue
                    if replay_count(headers) >= max_replays:
                        report.over_limit += 1
                        continue
                    value = m.value
                    if values.get(PAYLOAD_TRUNCATED) == "true":
                        if originals is None:
                            originals = clients.consumer(settings, client_id="workers-replay-originals",
                                                         enable_auto_commit=False)
                        value = _fetch_original(originals, values)
                        if value is None:
                            report.unavailable += 1
                            continue
                    report.selected += 1
                    report.by_reason[values.get(REASON, "?")] += 1
                    if on_record is not None:
                        on_record(origin, {**values, "target": target})
                    if producer is None:
                        continue
                    delay = next_send - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    next_send = max(next_send, time.monotonic()) + interval
                    new_headers = replay_headers(headers, origin, int(time.time() * 1000), value, replay_key)
                    futures.append(producer.send(target, key=m.key, value=value, headers=new_headers))
                    report.published += 1
                    if len(futures) >= COMMIT_EVERY:
                        settle()
            remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
        settle()
    finally:
        consumer.close()
        if originals is not None:
            originals.close()
        if producer is not None:
            producer.close()
    return report


def _fetch_original(consumer: Any, headers: dict[str, str]) -> bytes | None:
    """The original bytes of a truncated dead letter, from its source topic, if still there and intact."""
    from kafka import TopicPartition

    try:
        tp = TopicPartition(headers[ORIGINAL_TOPIC], int(headers[ORIGINAL_PARTITION]))
        offset = int(headers[ORIGINAL_OFFSET])
    except (KeyError, ValueError):
        return None
    consumer.assign([tp])
    consumer.seek(tp, offset)
    deadline = time.monotonic() + ORIGINAL_FETCH_TIMEOUT_S
    while time.monotonic() < deadline:
        for message in consumer.poll(timeout_ms=500, max_records=1).get(tp, []):
            if message.offset != offset:
                return None  # gone (retention or compaction): the next record is another one
            value = message.value or b""
            return value if hashlib.sha256(value).hexdigest() == headers.get(PAYLOAD_SHA256) else None
    return None
