"""The worker on a real broker: every event accounted for, each bad one with its reason."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from tests.factories import load_test_pipeline, make_sensor_pipeline, sensor_rows
from tests.integration.workers_harness import collect, pipeline_settings, worker_env
from workers.core.codec import SchemaStore
from workers.core.deadletter import headers_dict
from workers.core.topics import PipelineTopics
from workers.dev import fraud_data as fraud
from workers.dev.bad_inputs import BAD_KINDS, send_kind
from workers.dev.processes import start_worker, stop_worker
from workers.kafka.producer import EventProducer
from workers.pipelines import load_pipeline

pytestmark = pytest.mark.integration


ENGINES = {
    "batch": {"WORKERS_ENGINE": "batch"},
    "agent": {"WORKERS_ENGINE": "agent"},
    "batch-no-linger": {"WORKERS_ENGINE": "batch", "WORKERS_BATCH_LINGER_S": "0"},
    # batches larger than the stream: a fetch with records waits the whole linger for bytes that never come
    "batch-linger": {"WORKERS_ENGINE": "batch", "WORKERS_BATCH_SIZE": "2000", "WORKERS_BATCH_LINGER_S": "0.05",
                     "WORKERS_BATCH_MIN_BYTES": "10000000"},
}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_event_is_a_prediction_or_a_dead_letter_with_its_reason(kafka_bootstrap, unique_name, tmp_path, engine):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")
    pipeline = load_pipeline(settings)
    store = SchemaStore(settings.schemas_dir)
    old_schema = store.get("fraud/transaction.v1.avsc")
    now = int(time.time() * 1000)
    events, _ = fraud.generate(1200, seed=11, start_ms=now - 5000, span_ms=5000)
    kinds = ["good"] * 7 + ["old_schema"]
    # Bad inputs first and throughout: a poison record must not stall the good ones after it.
    plan = [*BAD_KINDS] + [kinds[i % len(kinds)] if i % 10 else list(BAD_KINDS)[i // 10 % len(BAD_KINDS)]
                          for i in range(len(events) - len(BAD_KINDS))]
    topics = PipelineTopics.for_pipeline("fraud", settings.topic_prefix)
    with EventProducer(settings, pipeline.manifest, store, topics.events) as producer:
        sent = [send_kind(producer, kind, event, old_schema, now) for event, kind in zip(events, plan, strict=True)]

    worker = start_worker(settings, tmp_path / "worker.log", {**worker_env(settings), **ENGINES[engine]})
    try:
        out = collect(settings, len(sent), worker=worker)
    finally:
        assert stop_worker(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]

    good = {s.event_id: s for s in sent if s.expected_reason is None}
    bad_by_value = {(s.key, s.value): s for s in sent if s.expected_reason is not None}
    assert out.total == len(sent)
    assert len(out.predictions) == len(good)
    assert {p["event_id"] for p in out.predictions} == set(good)  # no good input dead-lettered
    assert any(s.kind == "old_schema" for s in good.values())
    assert len(out.dead_letters) == len(bad_by_value)
    for letter in out.dead_letters:
        source = bad_by_value[(letter.key, letter.value)]  # original key and bytes, unchanged
        headers = headers_dict(letter.headers)
        assert headers["dlq.reason"] == source.expected_reason, source.kind
        assert headers["dlq.original.topic"] == topics.events
        assert int(headers["dlq.original.offset"]) >= 0
    assert out.reasons() == {r: sum(1 for s in sent if s.expected_reason == r) for r in set(BAD_KINDS.values())}

    # Each prediction equals the offline predict_proba of the same model on the same row.
    by_id = {e["event_id"]: e for e in events}
    for s in good.values():  # v1 events have no device_trust_score: the worker imputes it
        if s.kind == "old_schema":
            by_id[s.event_id] = {**by_id[s.event_id], "device_trust_score": None}
    rows = np.array([pipeline.features.row(by_id[p["event_id"]], []) for p in out.predictions])
    offline = pipeline.model.model.predict_proba(rows)[:, 1]
    np.testing.assert_allclose([p["score"] for p in out.predictions], offline, rtol=0, atol=1e-12)
    # Lineage: the prediction's source offset is where its event was consumed from.
    assert all(p["source_topic"] == topics.events and p["model_version"] == "1.0.0" for p in out.predictions)


def test_tampered_artifact_is_refused_at_start_up(tmp_path):
    import shutil

    from tests.factories import REPO

    shutil.copytree(REPO / "models" / "fraud", tmp_path / "models" / "fraud")
    artifact = tmp_path / "models" / "fraud" / "1.0.0" / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "run", "--pipeline", "fraud"],
        env={"WORKERS_MODELS_DIR": str(tmp_path / "models"), "PATH": "/usr/bin:/bin",
             "WORKERS_BOOTSTRAP_SERVERS": "127.0.0.1:1"},  # never reached: refused before Kafka
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to load" in result.stderr and "sha256" in result.stderr


def test_a_new_pipeline_streams_with_no_code_change(kafka_bootstrap, unique_name, tmp_path):
    schemas, models = make_sensor_pipeline(tmp_path)
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-", pipeline="sensor",
                                 schemas_dir=schemas, models_dir=models)
    pipeline = load_test_pipeline("sensor", schemas, models)
    rows, _ = sensor_rows(300, seed=21)
    rows[5]["temperature_c"] = float("nan")
    topics = PipelineTopics.for_pipeline("sensor", settings.topic_prefix)
    with EventProducer(settings, pipeline.manifest, SchemaStore(schemas), topics.events) as producer:
        for row in rows:
            producer.send_event(row)
    worker = start_worker(settings, tmp_path / "worker.log", worker_env(settings))
    try:
        out = collect(settings, len(rows), worker=worker)
    finally:
        stop_worker(worker)
    assert len(out.predictions) == 299 and out.reasons() == {"invalid_value": 1}
    expected = {r["reading_id"]: pipeline.model.model.predict(np.array([pipeline.features.row(r, [])]))[0]
                for i, r in enumerate(rows) if i != 5}
    for p in out.predictions:
        assert p["score"] == pytest.approx(expected[p["event_id"]], abs=1e-9)
        assert p["model_name"] == "sensor" and p["label"] is None
