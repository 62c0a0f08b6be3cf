"""Compressed batches, on the real broker: events from producers that compress are scored.

Producers in Kafka shops compress (lz4, zstd and snappy are common, set on the producer or as a
topic's ``compression.type``). A client without a batch's codec cannot read the batch at all:
the worker stopped at the first lz4 batch with ``UnsupportedCodecError`` and again after every
restart. Here librdkafka (confluent-kafka, as a Java producer would) writes the events with each
codec Kafka has, and the broker stores the outputs compressed, so both of the project's clients
(aiokafka in the worker, kafka-python in the harness, ``tail`` and ``replay``) decode them.
"""
from __future__ import annotations

import pytest

from workers.core import reasons
from workers.dev import drills
from workers.kafka.producer import EventProducer

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")


def test_events_of_every_codec_are_scored_and_compressed_outputs_read_back(broker_settings, tmp_path):
    from confluent_kafka import Producer

    drill = drills.Drill(broker_settings, "codecs", tmp_path, topic_config={
        "predictions": {"compression.type": "lz4"}, "dlq": {"compression.type": "zstd"}})
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
    drill.start_worker()
    result = drill.account(drills.DrillResult("compressed"), timeout_s=60)
    drill.stop_all()
    assert result.passed, result.problems
    assert (result.lost, result.duplicated) == (0, 0)
    assert (result.predictions, result.dead_letters) == (len(events) - len(CODECS), len(CODECS))
