"""Replay after a fix turns dead letters into predictions; a second replay is detectable."""
from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.integration.workers_harness import collect, pipeline_settings, worker_env
from workers.core.codec import SchemaStore
from workers.core.replay import REPLAY_COUNT, REPLAY_ORIGIN, ReplaySelection
from workers.core.topics import PipelineTopics
from workers.dev import fraud_data as fraud
from workers.dev.bad_inputs import send_kind
from workers.dev.processes import start_worker, stop_worker
from workers.kafka.producer import EventProducer
from workers.kafka.replay import replay
from workers.pipelines import load_pipeline

pytestmark = pytest.mark.integration


def test_replay_after_raising_the_lateness_limit(kafka_bootstrap, unique_name, tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")
    topics = PipelineTopics.for_pipeline("fraud", settings.topic_prefix)
    pipeline = load_pipeline(settings)
    now = int(time.time() * 1000)
    events, _ = fraud.generate(40, seed=4, start_ms=now - 1000)
    with EventProducer(settings, pipeline.manifest, SchemaStore(settings.schemas_dir), topics.events) as producer:
        good = [producer.send_event(e) for e in events[:20]]
        late = [send_kind(producer, "late", e, now_ms=now) for e in events[20:30]]
        corrupt = [send_kind(producer, "garbage", e, now_ms=now) for e in events[30:]]

    worker = start_worker(settings, tmp_path / "w1.log", worker_env(settings))
    try:
        first = collect(settings, 40, worker=worker)
    finally:
        stop_worker(worker)
    assert len(first.predictions) == 20 and first.reasons() == {"late": 10, "corrupt": 10}

    # Dry run: lists, publishes nothing.
    cli = [sys.executable, "-m", "workers.cli", "replay", "--pipeline", "fraud", "--topic-prefix",
           settings.topic_prefix, "--bootstrap-servers", kafka_bootstrap, "--reason", "late"]
    listed = subprocess.run([*cli, "--dry-run"], capture_output=True, text=True, timeout=60, check=True)
    assert "would replay 10 (late=10)" in listed.stdout
    assert listed.stdout.count("reason=late") == 10

    # Fix (a higher lateness limit), then replay the late ones only.
    replayed = subprocess.run([*cli, "--rate", "1000"], capture_output=True, text=True, timeout=60, check=True)
    assert "replayed 10 (late=10)" in replayed.stdout
    env = {**worker_env(settings), "WORKERS_MAX_LATENESS_S": "86400"}
    worker = start_worker(settings, tmp_path / "w2.log", env)
    try:
        second = collect(settings, 50, worker=worker)  # 40 from before + 10 replayed
        assert len(second.predictions) == 30
        replayed_ids = {p["event_id"] for p in second.predictions if "replayed" in p["flags"]}
        assert replayed_ids == {s.event_id for s in late}

        # The same dead letters replayed again: same event ids, but the headers tell it apart.
        report = replay(settings, topics.dlq, topics.events, ReplaySelection(reasons=frozenset({"late"})))
        assert report.published == 10
        third = collect(settings, 60, worker=worker)
    finally:
        stop_worker(worker)
    replays = [dict(r.headers) for r in third.prediction_records if REPLAY_COUNT in dict(r.headers)]
    assert len(replays) == 20
    origins = Counter(h[REPLAY_ORIGIN] for h in replays)
    assert len(origins) == 10 and set(origins.values()) == {2}  # each dead letter replayed twice
    ids = Counter(p["event_id"] for p in third.predictions)
    assert {i for i, n in ids.items() if n == 2} == {s.event_id for s in late}  # dedupe by event id
    assert all(ids[s.event_id] == 1 for s in good)
    assert len(third.dead_letters) == 20  # the corrupt ones were not replayed
    assert corrupt  # (sent, and still dead letters)
