"""Events written by a transactional producer, on the real broker: only committed ones are scored.

Kafka shops write with transactions (Kafka Streams and Flink exactly-once sinks, transactional
outboxes). An aborted transaction's records stay in the log, marked aborted; a consumer
reading uncommitted records (the clients' default) scores events that were never produced
as far as their producer is concerned. The worker reads ``read_committed`` by default.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from workers.dev import drills
from workers.kafka.connection import aiokafka_options
from workers.kafka.consumer import consume
from workers.kafka.producer import EventProducer
from workers.kafka.quality import label_codec, measure
from workers.settings import Settings

pytestmark = pytest.mark.integration


class _Transactions:
    """A transactional producer of a drill's events."""

    def __init__(self, drill: drills.Drill) -> None:
        self.drill = drill
        with EventProducer(drill.settings, drill.manifest, drill.store, drill.topics.events) as producer:
            self._encode = lambda event: (producer.key_of(event), producer.codec.encode(event))
        self.producer = AIOKafkaProducer(transactional_id=f"{drill.settings.topic_prefix}tx",
                                         **aiokafka_options(drill.settings))

    async def write(self, events: list[dict]) -> None:
        await self.producer.begin_transaction()
        for event in events:
            key, value = self._encode(event)
            await self.producer.send(self.drill.topics.events, value, key=key)
        await self.producer.flush()


def _scored_keys(drill: drills.Drill, idle_s: float) -> set[bytes]:
    return {r.key for r in consume(drill.settings, [drill.topics.predictions], idle_timeout_s=idle_s) if r.key}


def _keys(events: list[dict]) -> set[bytes]:
    return {e["account_id"].encode() for e in events}


async def _across_transactions(drill: drills.Drill, events: list[dict], env: dict[str, str]) -> dict[str, set[bytes]]:
    """Committed, aborted, then a transaction left open while the worker runs and committed later:
    the keys scored after each step."""
    committed, aborted, late = events[:100], events[100:200], events[200:300]
    tx = _Transactions(drill)
    await tx.producer.start()
    try:
        await tx.write(committed)
        await tx.producer.commit_transaction()
        await tx.write(aborted)
        await tx.producer.abort_transaction()
        await tx.write(late)  # open while the worker reads
        drill.start_worker(env)
        before_commit = await asyncio.to_thread(_scored_keys, drill, 6.0)
        await tx.producer.commit_transaction()
        started = time.monotonic()
        after_commit: set[bytes] = set()
        while not _keys(late) <= after_commit and time.monotonic() - started < 60:
            after_commit = await asyncio.to_thread(_scored_keys, drill, 3.0)
        return {"before commit": before_commit, "after commit": after_commit}
    finally:
        await tx.producer.stop()
        drill.stop_all()


@pytest.mark.parametrize("engine", ["batch", "agent"])
def test_only_committed_events_are_scored(broker_settings, tmp_path, engine):
    drill = drills.Drill(broker_settings, f"tx{engine}", tmp_path)
    events = drill.events(300, 21)
    scored = asyncio.run(_across_transactions(drill, events, {"WORKERS_ENGINE": engine}))
    committed, aborted, late = _keys(events[:100]), _keys(events[100:200]), _keys(events[200:300])
    assert scored["before commit"] == committed  # the open transaction's events wait for its commit
    assert scored["after commit"] == committed | late
    assert not scored["after commit"] & aborted


def test_reading_uncommitted_scores_aborted_and_open_transactions(broker_settings, tmp_path):
    drill = drills.Drill(broker_settings, "txuncommitted", tmp_path)
    events = drill.events(300, 22)
    scored = asyncio.run(_across_transactions(drill, events, {"WORKERS_ISOLATION_LEVEL": "read_uncommitted"}))
    assert scored["before commit"] == _keys(events)


async def _labels_across_transactions(settings: Settings) -> None:
    """Two labels committed, three in an aborted transaction, none for a scored event."""
    codec = label_codec(settings)
    producer = AIOKafkaProducer(transactional_id=f"{settings.topic_prefix}labels", **aiokafka_options(settings))
    await producer.start()
    try:
        for n, (count, commit) in enumerate(((2, True), (3, False))):
            await producer.begin_transaction()
            for i in range(count):
                label = {"event_id": f"e-{n}-{i}", "label": "fraud", "value": None,
                         "label_time": int(time.time() * 1000)}
                await producer.send(settings.topics.labels, codec.encode(label), key=label["event_id"].encode())
            await producer.flush()
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


@pytest.mark.parametrize(("level", "read"), [("read_committed", 2), ("read_uncommitted", 5)])
def test_quality_reads_the_labels_of_committed_transactions(broker_settings, unique_name, level, read):
    from workers.kafka.admin import create_topics

    settings = broker_settings.model_copy(update={"pipeline": "fraud", "topic_prefix": unique_name("q") + "-",
                                                  "isolation_level": level})
    create_topics(settings, [settings.topics.predictions, settings.topics.labels])
    asyncio.run(_labels_across_transactions(settings))
    assert measure(settings, idle_timeout_s=3.0)["pending"]["labels"] == read
