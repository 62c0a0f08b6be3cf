"""Compressed batches, on the real broker: events from producers that compress are scored.

Producers in Kafka shops compress (lz4, zstd and snappy are common, set on the producer or as a
topic's ``compression.type``). A client without a batch's codec cannot read the batch at all:
the worker stopped at the first lz4 batch with ``UnsupportedCodecError`` and again after every
restart. Here librdkafka (confluent-kafka, as a Java producer would) writes the events with each
codec Kafka has; the worker compresses its predictions (``WORKERS_OUTPUT_COMPRESSION``) and the
broker its dead letters (a topic's ``compression.type``), and kafka-python (the harness, ``tail``,
``replay``) decodes them.
"""
from __future__ import annotations

import pytest

from workers.core import reasons
from workers.dev import drills
from workers.kafka.producer import EventProducer

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")


def test_events_of_every_codec_are_scored_and_outputs_written_compressed(broker_settings, tmp_path):
    from confluent_kafka import Producer

    # the worker compresses its predictions itself; the broker recompresses the dead letters (topic config)
    drill = drills.Drill(broker_settings, "codecs", tmp_path, topic_config={"dlq": {"compression.type": "lz4"}})
    events = drill.events(400, 31)
    with EventProducer(drill.settings, drill.manifest, drill.store, drill.topics.events) as producer:
        encoded = [(producer.key_of(e) or b"", producer.codec.encode(e)) for e in events]
    share = len(encoded) // len(CODECS)
    for n, codec in enumerate(CODECS):
        librdkafka = Producer({"bootstrap.servers": drill.settings.bootstrap_servers, "compression.type": codec,
                               "linger.ms": 50, "enable.idempotence": True})
        part = encoded[n * share:(n + 1) * share]
        for i, (key, value) in enumerate(part):
            corrupt = i == 0  # a dead letter per codec, its original bytes out of a compressed batch
            librdkafka.produce(drill.topics.events, value[:-3] if corrupt else value, key=key)
            drill.sent_keys.append(key)
            if corrupt:
                drill.expected_reason[key] = reasons.CORRUPT
        assert librdkafka.flush(30) == 0
    drill.start_worker({"WORKERS_OUTPUT_COMPRESSION": "zstd"})
    result = drill.account(drills.DrillResult("compressed"), timeout_s=60)
    drill.stop_all()
    assert result.passed, result.problems
    assert (result.lost, result.duplicated) == (0, 0)
    assert (result.predictions, result.dead_letters) == (len(events) - len(CODECS), len(CODECS))
    _assert_compressed(drill)


def _log_bytes(settings, topic: str) -> int:
    from workers.kafka.clients import admin_client

    with admin_client(settings) as admin:
        return sum(p["partition_size"] for broker in admin.describe_log_dirs() for d in broker["log_dirs"]
                   for t in d["topics"] if t["name"] == topic for p in t["partitions"])


def _assert_compressed(drill: drills.Drill) -> None:
    from workers.kafka.consumer import consume

    written = sum(len(r.value or b"") + len(r.key or b"") + sum(len(k) + len(v) for k, v in r.headers)
                  for r in consume(drill.settings, [drill.topics.predictions], idle_timeout_s=3))
    # uncompressed, the log holds at least the records' bytes; zstd takes predictions to well under half
    assert _log_bytes(drill.settings, drill.topics.predictions) < 0.5 * written


def test_the_agent_engine_compresses_what_it_produces(broker_settings, tmp_path):
    drill = drills.Drill(broker_settings, "zstdagent", tmp_path)
    drill.produce(drill.events(2000, 32))
    drill.start_worker({"WORKERS_ENGINE": "agent", "WORKERS_OUTPUT_COMPRESSION": "zstd"})
    result = drill.account(drills.DrillResult("compressing"), timeout_s=60)
    drill.stop_all()
    assert result.passed and result.predictions == 2000, result.problems
    _assert_compressed(drill)
