"""Events written by a transactional producer, on the real broker: only committed ones are scored.

Kafka shops write with transactions (Kafka Streams and Flink exactly-once sinks, transactional
outboxes). An aborted transaction's records stay in the log, marked aborted; a consumer
reading uncommitted records (the clients' default) scores events that were never produced
as far as their producer is concerned. The worker reads ``read_committed`` by default.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.workers_harness import free_port, metrics
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
        # an open transaction must outlive a slow worker start (aiokafka's default: 60 s)
        self.producer = AIOKafkaProducer(transactional_id=f"{drill.settings.topic_prefix}tx",
                                         transaction_timeout_ms=300_000, **aiokafka_options(drill.settings))

    async def write(self, events: list[dict]) -> None:
        await self.producer.begin_transaction()
        for event in events:
            key, value = self._encode(event)
            await self.producer.send(self.drill.topics.events, value, key=key)
        await self.producer.flush()


def _scored_keys(drill: drills.Drill, idle_s: float) -> set[bytes]:
    return {r.key for r in consume(drill.settings, [drill.topics.predictions], idle_timeout_s=idle_s) if r.key}


def _scored_once(drill: drills.Drill, wanted: set[bytes], timeout_s: float = 90) -> set[bytes]:
    """The keys scored once ``wanted`` all are (or ``timeout_s`` passed), and a moment more."""
    deadline, scored = time.monotonic() + timeout_s, set()
    while not wanted <= scored and time.monotonic() < deadline:
        scored = _scored_keys(drill, 2.0)
    return scored | _scored_keys(drill, 2.0)


def _keys(events: list[dict]) -> set[bytes]:
    return {e["account_id"].encode() for e in events}


def _settled_lags(drill: drills.Drill, port: int, timeout_s: float = 30) -> dict[str, float]:
    """The worker's lag per partition once every partition reports 0 (or ``timeout_s`` passed)."""
    deadline, lags = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        lags = {k: v for k, v in metrics(port).items() if k.startswith("workers_consumer_lag_records")}
        if len(lags) == drill.settings.partitions and not any(lags.values()):
            break
        time.sleep(0.5)
    return lags


def _ends_and_committed(drill: drills.Drill, timeout_s: float = 30) -> tuple[dict[int, int], dict[int, int | None]]:
    """The events topic's end offsets, and the group's committed ones once they reach them (or
    ``timeout_s`` passed)."""
    from kafka import TopicPartition

    from workers.kafka import clients
    from workers.kafka.consumer import committed_offsets

    consumer = clients.consumer(drill.settings)
    try:
        topic = drill.topics.events
        ends = {tp.partition: o for tp, o in consumer.end_offsets(
            [TopicPartition(topic, p) for p in range(drill.settings.partitions)]).items()}
    finally:
        consumer.close()
    deadline = time.monotonic() + timeout_s
    while True:
        committed = committed_offsets(drill.settings, drill.settings.group_id, topic)
        if committed == ends or time.monotonic() > deadline:
            return ends, committed
        time.sleep(0.5)


async def _across_transactions(drill: drills.Drill, events: list[dict], env: dict[str, str],
                               metrics_port: int | None = None) -> dict[str, Any]:
    """Committed, aborted, then a transaction left open while the worker runs and committed later:
    the keys scored after each step, and (``metrics_port``) the worker's lag and the group's
    committed offsets once caught up."""
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
        # what it scores while the transaction is open: the committed ones, then a few seconds more
        before_commit = await asyncio.to_thread(_scored_once, drill, _keys(committed))
        await tx.producer.commit_transaction()
        after_commit = await asyncio.to_thread(_scored_once, drill, _keys(committed) | _keys(late))
        scored: dict[str, Any] = {"before commit": before_commit, "after commit": after_commit}
        if metrics_port is not None:
            scored["lags"] = await asyncio.to_thread(_settled_lags, drill, metrics_port)
            scored["ends"], scored["committed"] = await asyncio.to_thread(_ends_and_committed, drill)
        return scored
    finally:
        await tx.producer.stop()
        drill.stop_all()


@pytest.mark.parametrize("engine", ["batch", "agent"])
def test_only_committed_events_are_scored(broker_settings, tmp_path, engine):
    drill = drills.Drill(broker_settings, f"tx{engine}", tmp_path)
    events = drill.events(300, 21)
    port = free_port() if engine == "batch" else None  # the agent engine reports no lag
    env = {"WORKERS_ENGINE": engine, **({"WORKERS_METRICS_PORT": str(port)} if port else {})}
    scored = asyncio.run(_across_transactions(drill, events, env, port))
    committed, aborted, late = _keys(events[:100]), _keys(events[100:200]), _keys(events[200:300])
    assert scored["before commit"] == committed  # the open transaction's events wait for its commit
    assert scored["after commit"] == committed | late
    assert not scored["after commit"] & aborted
    if port is not None:
        # every partition ends with a commit marker, which carries no record: measured from the
        # last record, the lag stayed 1, and the idle worker would have turned not ready
        lags = scored["lags"]
        assert len(lags) == drill.settings.partitions and not any(lags.values()), lags
        # and the group's committed offsets reach the end, past the markers, as a Java consumer's do
        assert scored["committed"] == scored["ends"]


def test_reading_uncommitted_scores_aborted_and_open_transactions(broker_settings, tmp_path):
    drill = drills.Drill(broker_settings, "txuncommitted", tmp_path)
    events = drill.events(300, 22)
    scored = asyncio.run(_across_transactions(drill, events, {"WORKERS_ISOLATION_LEVEL": "read_uncommitted"}))
    assert scored["after commit"] == _keys(events)
    assert _keys(events[100:200]) <= scored["before commit"]  # the aborted ones, at once


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
