"""Metrics, health, drift and logs of a real worker process on the real broker."""
from __future__ import annotations

import json
import time

import pytest

from tests.integration.workers_harness import collect, get, metrics, pipeline_settings, start_observed_worker
from workers.dev.demo import produce_mix
from workers.dev.processes import stop_worker

pytestmark = pytest.mark.integration


def test_metrics_health_and_counts_after_a_known_stream(kafka_bootstrap, unique_name, tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")
    sent = produce_mix(settings, 600, bad_fraction=0.1, old_fraction=0.1, seed=3)
    worker, port = start_observed_worker(settings, tmp_path / "worker.log")
    try:
        statuses = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code, _ = get(port, "/readyz")
            statuses.append(code)
            if code == 200:
                break
            time.sleep(0.05)
        assert 503 in statuses and statuses[-1] == 200  # not ready before verified + assigned, then ready
        assert get(port, "/healthz")[0] == 200
        collect(settings, len(sent), worker=worker)
        time.sleep(0.5)  # the last batch's metrics are recorded right after its acks
        m = metrics(port)
        expected = {}
        for s in sent:
            if s.expected_reason:
                expected[s.expected_reason] = expected.get(s.expected_reason, 0) + 1
        good = len(sent) - sum(expected.values())
        assert m["workers_events_consumed_total{}"] == len(sent)
        assert m["workers_predictions_total{model_version=1.0.0}"] == good
        for reason, count in expected.items():
            assert m[f"workers_dead_letters_total{{reason={reason}}}"] == count
        assert m["workers_batch_size_events_sum{}"] == len(sent)
        assert m["workers_end_to_end_latency_seconds_count{}"] == good
        assert m["workers_prediction_score_count{}"] == good
        assert m["workers_batch_processing_seconds_count{}"] == m["workers_batch_size_events_count{}"]
        assert m["workers_ready{}"] == 1
        info = [k for k in m if k.startswith("workers_model_info")]
        assert len(info) == 1 and "version=1.0.0" in info[0] and "sha256=7fb2d334fed126ea" in info[0]
        assert "scoring=lean-hgb" in info[0]
        assert all(v == 0 for k, v in m.items() if k.startswith("workers_consumer_lag_records"))
        status = json.loads(get(port, "/status.json")[1])
        assert status["predictions"] == good and status["dead_letters"] == dict(sorted(expected.items()))
        assert status["model"]["scoring"] == "lean-hgb"
    finally:
        stop_worker(worker)
    log_lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()
                 if line.startswith("{")]
    dead = [line for line in log_lines if line["event"] == "dead-lettered"]
    assert dead and all("offsets" in line and "model_version" in line for line in dead)
    assert len(log_lines) < 50  # per batch, not per event
    raw = (tmp_path / "worker.log").read_text()
    assert "acct-" not in raw  # no keys or payloads in logs by default


@pytest.mark.parametrize(("shift", "drifts"), [({"amount": 8.0}, True), ({}, False)])
def test_shifted_feature_raises_its_drift_gauge_and_logs_an_alert(kafka_bootstrap, unique_name, tmp_path,
                                                                 shift, drifts):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")
    sent = produce_mix(settings, 1500, 0.0, 0.0, seed=8, shift=shift)
    worker, port = start_observed_worker(settings, tmp_path / "worker.log", {"WORKERS_DRIFT_WINDOW": "1000"})
    try:
        collect(settings, len(sent), worker=worker)
        time.sleep(1.5)  # drift is checked every 0.25 s and on the heartbeat (1 s): the last batches too
        m = metrics(port)
    finally:
        stop_worker(worker)
    amount_psi = m["workers_feature_drift_psi{feature=amount}"]
    alerts = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()
              if '"drift detected"' in line]
    if drifts:
        assert amount_psi > 0.2
        assert alerts and "amount" in alerts[0]["features"]
    else:
        assert amount_psi < 0.2
        assert max(v for k, v in m.items() if k.startswith("workers_feature_drift_psi")) < 0.2
        assert alerts == []


def test_agent_engine_reports_ready_once_partitions_are_assigned(kafka_bootstrap, unique_name, tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")
    worker, port = start_observed_worker(settings, tmp_path / "worker.log", {"WORKERS_ENGINE": "agent"})
    try:
        codes = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not codes or codes[-1] != 200):
            codes.append(get(port, "/readyz")[0])
            time.sleep(0.1)
        ready = json.loads(get(port, "/readyz")[1])
    finally:
        stop_worker(worker)
    assert 503 in codes and codes[-1] == 200
    assert ready["partitions"] == [0, 1, 2]
