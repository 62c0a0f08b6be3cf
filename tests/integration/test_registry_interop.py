"""Interop with a real Schema Registry: events written by confluent-kafka's own AvroSerializer (not the
project's code) through the worker, predictions read back with confluent-kafka's AvroDeserializer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import confluent_kafka  # the peer: installed with the dev extra, never skipped
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.factories import REPO
from tests.integration.workers_harness import free_port, get, pipeline_settings, start_observed_worker
from workers.core.codec import SchemaStore
from workers.core.deadletter import headers_dict
from workers.core.records import InputRecord
from workers.dev import fraud_data as fraud
from workers.dev.processes import stop_worker
from workers.kafka.consumer import consume
from workers.kafka.producer import EventProducer
from workers.pipelines import load_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("registry_interop")]

V1, V2 = "fraud/transaction.v1.avsc", "fraud/transaction.v2.avsc"
UNKNOWN_ID = 2_000_000_000


def _serializer(client: SchemaRegistryClient, store: SchemaStore, path: str) -> AvroSerializer:
    return AvroSerializer(client, json.dumps(store.get(path).definition), conf={"auto.register.schemas": True})


def _produce_mixed(settings, client, events: list[dict]) -> tuple[int, bytes]:
    """A third each: confluent-kafka with v1 (an older producer), confluent-kafka with v2, and the
    project's own single-object producer; plus one registry-framed record with an id nobody registered."""
    store = SchemaStore(settings.schemas_dir)
    topic = settings.topics.events
    producer = confluent_kafka.Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all"})
    old, new = _serializer(client, store, V1), _serializer(client, store, V2)
    ctx = SerializationContext(topic, MessageField.VALUE)
    v1_fields = store.get(V1).field_names
    mine = []
    for i, event in enumerate(events):
        if i % 3 == 0:
            value = old({k: event[k] for k in v1_fields}, ctx)
        elif i % 3 == 1:
            value = new(event, ctx)
        else:
            mine.append(event)
            continue
        producer.produce(topic, key=event["account_id"].encode(), value=value)
    unknown = b"\x00" + UNKNOWN_ID.to_bytes(4, "big") + new(events[0], ctx)[5:]
    producer.produce(topic, key=b"unknown", value=unknown)
    assert producer.flush(30) == 0
    pipeline = load_pipeline(settings.model_copy(update={"input_framing": "single_object",
                                                          "prediction_framing": "single_object"}))
    with EventProducer(settings, pipeline.manifest, store, topic) as ours:
        for event in mine:
            ours.send_event(event)
    return len(events) + 1, unknown


def _offline_scores(settings, events: list[dict]) -> dict[str, float]:
    pipeline = load_pipeline(settings.model_copy(update={"input_framing": "single_object",
                                                          "prediction_framing": "single_object"}))
    store = pipeline.input_codec._store
    records = []
    for i, event in enumerate(events):
        value = pipeline.input_codec.encode({k: event[k] for k in store.get(V1).field_names}, store.get(V1)) \
            if i % 3 == 0 else pipeline.input_codec.encode(event)
        records.append(InputRecord(value, None, "offline", 0, i, None, []))
    result = pipeline.process(records)
    codec = pipeline.prediction_codec
    return {p["event_id"]: p["score"] for p in (codec.decode(o.value)[0] for o in result.outputs)}


def _read_predictions(settings, client, expected: int, timeout_s: float = 90) -> list[dict]:
    deserialize = AvroDeserializer(client)  # the writer schema comes from the registry, by the id in each record
    consumer = confluent_kafka.Consumer({"bootstrap.servers": settings.bootstrap_servers,
                                         "group.id": f"{settings.topic_prefix}downstream",
                                         "auto.offset.reset": "earliest"})
    topic = settings.topics.predictions
    consumer.subscribe([topic])
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            out.append(deserialize(message.value(), SerializationContext(topic, MessageField.VALUE)))
    finally:
        consumer.close()
    return out


def test_confluent_serialized_events_through_the_worker_and_predictions_back(
        kafka_bootstrap, schema_registry_url, unique_name, tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("sr") + "-", schema_registry_url=schema_registry_url,
                                 input_framing="both", prediction_framing="registry")
    client = SchemaRegistryClient({"url": schema_registry_url})
    events, _ = fraud.generate(600, seed=21, start_ms=int(time.time() * 1000) - 5000, span_ms=5000)
    sent, unknown = _produce_mixed(settings, client, events)

    worker, port = start_observed_worker(settings, tmp_path / "worker.log", {
        "WORKERS_SCHEMA_REGISTRY_URL": schema_registry_url, "WORKERS_INPUT_FRAMING": "both",
        "WORKERS_PREDICTION_FRAMING": "registry"})
    try:
        predictions = _read_predictions(settings, client, len(events))
        dead = list(consume(settings, [settings.topics.dlq], idle_timeout_s=5))
    finally:
        assert stop_worker(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]

    offline = _offline_scores(settings, events)
    assert len(predictions) == len(events) and len(dead) == sent - len(events)
    assert {p["event_id"]: p["score"] for p in predictions} == offline  # the same scores, bit for bit
    (letter,) = dead
    headers = headers_dict(letter.headers)
    assert headers["dlq.reason"] == "unknown_schema" and letter.value == unknown
    assert f"schema id {UNKNOWN_ID} is not in the schema registry" in headers["dlq.error.message"]
    # downstream finds the prediction schema under the topic's subject (TopicNameStrategy)
    registered = client.get_latest_version(f"{settings.topics.predictions}-value")
    assert json.loads(registered.schema.schema_str)["name"] == "Prediction"
    assert port  # the worker served its endpoints


def test_a_registry_that_cannot_be_reached_makes_the_batch_wait_not_dead_letters(
        kafka_bootstrap, schema_registry_url, unique_name, tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("srdown") + "-")
    client = SchemaRegistryClient({"url": schema_registry_url})
    store = SchemaStore(settings.schemas_dir)
    events, _ = fraud.generate(60, seed=22, start_ms=int(time.time() * 1000) - 5000, span_ms=5000)
    serialize = _serializer(client, store, V2)
    producer = confluent_kafka.Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all"})
    ctx = SerializationContext(settings.topics.events, MessageField.VALUE)
    for event in events:
        producer.produce(settings.topics.events, key=event["account_id"].encode(), value=serialize(event, ctx))
    assert producer.flush(30) == 0

    framing = {"WORKERS_INPUT_FRAMING": "registry"}
    closed = get_closed_url()
    worker, port = start_observed_worker(settings, tmp_path / "down.log",
                                         {**framing, "WORKERS_SCHEMA_REGISTRY_URL": closed})
    try:
        problems: list[str] = []
        deadline = time.monotonic() + 60
        while not any("unreachable" in p for p in problems) and time.monotonic() < deadline:
            code, body = get(port, "/readyz")
            problems = json.loads(body).get("problems", []) if code else []
            time.sleep(0.5)
        assert any("schema registry" in p and "unreachable" in p for p in problems), problems
        assert code == 503
        waited = list(consume(settings, [settings.topics.predictions, settings.topics.dlq], idle_timeout_s=3))
        assert waited == []  # nothing scored, nothing dead-lettered as corrupt
    finally:
        assert stop_worker(worker) == 0, (tmp_path / "down.log").read_text()[-3000:]  # SIGTERM while waiting

    worker, _ = start_observed_worker(settings, tmp_path / "up.log",
                                      {**framing, "WORKERS_SCHEMA_REGISTRY_URL": schema_registry_url})
    try:
        outputs = []
        for record in consume(settings, [settings.topics.predictions, settings.topics.dlq], idle_timeout_s=60):
            outputs.append(record)
            if len(outputs) >= len(events):
                break
    finally:
        assert stop_worker(worker) == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert len(outputs) == len(events)
    assert {o.topic for o in outputs} == {settings.topics.predictions}  # all scored once it answered


def get_closed_url() -> str:
    """A registry URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"


def test_schemas_register_and_check_speak_the_registrys_rules(schema_registry_url, unique_name, tmp_path):
    env = {**os.environ, "WORKERS_SCHEMA_REGISTRY_URL": schema_registry_url,
           "WORKERS_TOPIC_PREFIX": unique_name("reg") + "-"}

    def workers(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    schemas = REPO / "schemas" / "fraud"
    registered = workers("schemas", "register", "--schema", str(schemas / "transaction.v1.avsc"),
                         "--schema", str(schemas / "transaction.v2.avsc"))
    assert registered.returncode == 0, registered.stderr
    lines = registered.stdout.splitlines()
    assert len(lines) == 3 and all(": id " in line for line in lines)
    assert lines[0].split(": id ")[1] != lines[1].split(": id ")[1]  # two versions of the events subject
    assert workers("schemas", "register").returncode == 0  # idempotent
    forward = workers("schemas", "register", "--compatibility", "forward")
    assert forward.returncode == 0, forward.stderr
    assert json.loads(urllib.request.urlopen(  # the subject's own rule now
        f"{schema_registry_url}/config/{env['WORKERS_TOPIC_PREFIX']}fraud.events-value").read())[
        "compatibilityLevel"] == "FORWARD"
    assert workers("schemas", "register", "--compatibility", "backward").returncode == 0

    v2 = json.loads((schemas / "transaction.v2.avsc").read_text())
    required = {**v2, "fields": [*v2["fields"], {"name": "merchant_risk", "type": "double"}]}
    optional = {**v2, "fields": [*v2["fields"], {"name": "merchant_risk", "type": ["null", "double"],
                                                  "default": None}]}
    (tmp_path / "required.avsc").write_text(json.dumps(required))
    (tmp_path / "optional.avsc").write_text(json.dumps(optional))
    refused = workers("schemas", "check", str(tmp_path / "required.avsc"))
    assert refused.returncode == 1
    assert "reads the new version's events: " in refused.stdout  # the model could still read it...
    assert "(BACKWARD): NO" in refused.stdout  # ...but the registry's rule refuses it
    accepted = workers("schemas", "check", str(tmp_path / "optional.avsc"))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "(BACKWARD): yes" in accepted.stdout
