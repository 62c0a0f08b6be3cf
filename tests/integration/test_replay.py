"""Replay on the real broker: progress kept, replays bounded, targets checked, marks verifiable."""
from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.integration.workers_harness import collect, pipeline_settings, worker_env
from workers.core.deadletter import ORIGINAL_TOPIC, REASON
from workers.core.replay import REPLAY_AT, REPLAY_COUNT, REPLAY_ORIGIN
from workers.dev import fraud_data as fraud
from workers.dev.bad_inputs import send_kind
from workers.dev.processes import start_worker, stop_worker
from workers.kafka import audit as audit_log
from workers.kafka import clients
from workers.kafka.producer import EventProducer
from workers.pipelines import load_manifest

pytestmark = pytest.mark.integration

KEY = "replay-integration-key"


def _replay(settings, *args: str) -> str:
    cli = [sys.executable, "-m", "workers.cli", "replay", "--pipeline", "fraud", "--topic-prefix",
           settings.topic_prefix, "--bootstrap-servers", settings.bootstrap_servers, "--reason", "late", *args]
    env = {**worker_env(settings), "WORKERS_REPLAY_KEY": KEY}
    import os

    out = subprocess.run(cli, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_replay_keeps_progress_bounds_repeats_refuses_foreign_targets_and_signs(kafka_bootstrap, unique_name,
                                                                               tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")
    topics = settings.topics
    manifest, store = load_manifest(settings)
    now = int(time.time() * 1000)
    events, _ = fraud.generate(41, seed=4, start_ms=now - 1000)
    with EventProducer(settings, manifest, store, topics.events) as producer:
        good = [producer.send_event(e) for e in events[:20]]
        late = [send_kind(producer, "late", e, now_ms=now) for e in events[20:30]]
        for e in events[30:40]:
            send_kind(producer, "garbage", e, now_ms=now)
        # an ordinary producer forging replay marks: scored, but never flagged as replayed
        forged = producer.codec.encode(events[40])
        producer.send_raw(forged, b"forger", [(REPLAY_COUNT, b"1"), (REPLAY_ORIGIN, b"x/0/0"), (REPLAY_AT, b"1")])

    # 1. Default lateness: the late events are dead-lettered.
    worker = start_worker(settings, tmp_path / "w1.log", {**worker_env(settings), "WORKERS_REPLAY_KEY": KEY})
    try:
        first = collect(settings, 41, worker=worker)
        assert len(first.predictions) == 21 and first.reasons() == {"late": 10, "corrupt": 10}
        assert not [p for p in first.predictions if "replayed" in p["flags"]]  # the forged marks

        listed = _replay(settings, "--dry-run")
        assert "would replay 10 (late=10)" in listed and listed.count("reason=late") == 10

        # 2. Replayed while the limit is unchanged: they fail again (now with replay count 1).
        assert "replayed 10 (late=10)" in _replay(settings, "--rate", "1000")
        again = collect(settings, 51, worker=worker)
        assert again.reasons() == {"late": 20, "corrupt": 10}

        # 3. The same selection again: only the new dead letters are read; they were replayed
        #    max-replays (1) times already, so nothing is re-published.
        third = _replay(settings, "--max-replays", "1")
        assert "scanned 10 dead letters" in third and "replayed 0" in third
        assert "skipped 10 already replayed 1 times" in third
    finally:
        stop_worker(worker)

    # 4. A dead letter that claims to come from the predictions topic is refused.
    producer = clients.producer(settings, acks="all")
    producer.send(topics.dlq, key=b"k", value=b"\x00not an event",
                  headers=[(REASON, b"late"), (ORIGINAL_TOPIC, topics.predictions.encode())]).get(timeout=30)
    producer.close()
    fourth = _replay(settings)
    assert f"refused 1 whose original topic '{topics.predictions}'" in fourth and "replayed 0" in fourth

    # 5. After the fix, from the beginning: the 10 originals and their 10 failed replays (count 1 < 3).
    worker = start_worker(settings, tmp_path / "w2.log",
                          {**worker_env(settings), "WORKERS_MAX_LATENESS_S": "86400", "WORKERS_REPLAY_KEY": KEY})
    try:
        fifth = _replay(settings, "--from-beginning")
        assert "replayed 20 (late=20)" in fifth and "refused 1" in fifth
        last = collect(settings, 72, worker=worker)  # 52 before (the forged dead letter included) + 20
    finally:
        stop_worker(worker)
    replayed = [p for p in last.predictions if "replayed" in p["flags"]]
    assert Counter(p["event_id"] for p in replayed) == Counter({s.event_id: 2 for s in late})
    counts = Counter(dict(r.headers)[REPLAY_COUNT] for r in last.prediction_records
                     if REPLAY_COUNT in dict(r.headers))
    assert counts == {b"1": 10, b"2": 10}  # a second replay of a record is told apart by its count
    assert all(Counter(p["event_id"] for p in last.predictions)[s.event_id] == 1 for s in good)

    # The audit trail: both workers' model loads and starts, and every replay run (not the dry run).
    trail = list(audit_log.read(settings))
    actions = Counter(r["action"] for r in trail)
    assert actions == {"model_loaded": 2, "worker_started": 2, "replay_run": 4}
    loads = [r for r in trail if r["action"] == "model_loaded"]
    assert {r["details"]["sha256"] for r in loads} == {manifest.artifact_sha256}
    runs = [r["details"] for r in trail if r["action"] == "replay_run"]
    assert [int(r["replayed"]) for r in runs] == [10, 0, 0, 20] and runs[2]["refused"] == "1"
    assert all(r["actor"].startswith("os:") and r["host"] for r in trail)  # no SASL here: the OS user
