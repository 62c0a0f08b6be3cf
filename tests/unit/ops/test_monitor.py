"""Health that tells the truth: readiness and liveness from what the engines report."""
from __future__ import annotations

import pytest

from tests.factories import FakeClock, load_test_pipeline
from workers.ops import monitor as monitor_module
from workers.ops.monitor import WorkerMonitor


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(monitor_module.time, "monotonic", fake)
    return fake


@pytest.fixture
def monitor(clock) -> WorkerMonitor:
    m = WorkerMonitor(load_test_pipeline(), "w", delivery_timeout_s=120, stall_timeout_s=60, liveness_timeout_s=30)
    m.partitions_assigned({0, 1})
    m.heartbeat(0.0)
    return m


def test_ready_once_assigned_and_moving(monitor):
    assert monitor.readiness() == {"ready": True, "model_verified": True, "partitions": [0, 1], "problems": []}


def test_not_ready_while_a_delivery_is_stuck_past_its_deadline(monitor):
    monitor.heartbeat(119.0)
    assert monitor.is_ready()
    monitor.heartbeat(121.0)
    assert not monitor.is_ready()
    assert monitor.readiness()["problems"] == ["outputs undelivered for 121s"]
    exported = monitor.metrics.registry.get_sample_value("workers_oldest_undelivered_batch_age_seconds",
                                                         {"pipeline": "fraud"})
    assert exported == 121.0


def test_not_ready_when_nothing_moves_while_there_is_lag(monitor, clock):
    monitor.lag_observed({0: 0, 1: 0})
    clock.now += 61
    monitor.heartbeat(0.0)
    assert monitor.is_ready()  # idle: no lag, nothing to move
    monitor.lag_observed({1: 500})
    assert not monitor.is_ready() and "no progress for 61s with lag 500" in monitor.readiness()["problems"]
    monitor.offsets_committed()
    assert monitor.is_ready()


def test_liveness_fails_when_the_event_loop_stops_running(monitor, clock):
    clock.now += 29
    assert monitor.is_alive()
    clock.now += 2
    assert not monitor.is_alive()
    monitor.heartbeat(0.0)
    assert monitor.is_alive()


def test_not_ready_while_stopping_on_an_error(monitor):
    monitor.failed = "cannot WRITE to topic x.dlq"
    assert monitor.readiness()["problems"] == ["stopping: cannot WRITE to topic x.dlq"]


def _events(pipeline, n: int, seed: int, now: int) -> tuple[list, list, list]:
    """``n`` fraud events (with their truth) and the input records that carry them."""
    from workers.core.records import InputRecord
    from workers.dev import fraud_data

    events, truth = fraud_data.generate(n, seed=seed, start_ms=now - 1000)
    records = [InputRecord(pipeline.input_codec.encode(e), None, "in", 0, i, now, []) for i, e in enumerate(events)]
    return events, truth, records


def test_live_quality_joins_labels_to_this_workers_own_predictions(fraud_pipeline):
    import time

    import numpy as np
    from sklearn.metrics import roc_auc_score


    now = int(time.time() * 1000)
    events, truth, records = _events(fraud_pipeline, 800, seed=9, now=now)
    monitor = WorkerMonitor(fraud_pipeline, "w")
    monitor.follow_labels(3600.0)
    result = fraud_pipeline.process(records, now)
    monitor.batch_delivered(records, result)
    for event, y in zip(events, truth, strict=True):
        monitor.label_arrived(event["event_id"], "fraud" if y else "legit", now + 10)
    monitor.label_arrived("scored-by-another-worker", "fraud", now + 10)
    scores = np.array([o.prediction["score"] for o in result.outputs])
    figures = monitor.quality_report()["1.0.0"]
    assert figures["pairs"] == 800 and figures["roc_auc"] == roc_auc_score(truth, scores)
    status = monitor.status()["live_quality"]
    assert status["counts"] == {"joined": 800} and status["pending"] == {"predictions": 0, "labels": 1}
    monitor.heartbeat(0.0)
    assert monitor.metrics.quality.labels("fraud", "1.0.0", "pairs")._value.get() == 800


def test_a_canarys_predictions_are_counted_under_the_candidates_version(fraud_pipeline):
    import time

    from tests.factories import load_test_pipeline
    from workers.core.records import InputRecord
    from workers.core.trial import CANARY, Trial
    from workers.dev import fraud_data

    now = int(time.time() * 1000)
    events, _ = fraud_data.generate(400, seed=4, start_ms=now - 1000, accounts=200)
    records = [InputRecord(fraud_pipeline.input_codec.encode(e), e["account_id"].encode(), "in", 0, i, now, [])
               for i, e in enumerate(events)]
    trial = Trial(load_test_pipeline(model_version="1.1.0"), CANARY, fraction=0.3)
    trial.attach(fraud_pipeline)
    result = trial.process(fraud_pipeline, records, now)
    monitor = WorkerMonitor(fraud_pipeline, "w")
    monitor.batch_delivered(records, result)

    def counted(version: str) -> float:
        return monitor.metrics._predictions.labels("fraud", version)._value.get()

    flagged = sum(1 for o in result.outputs if "canary" in fraud_pipeline.prediction_codec.decode(o.value)[0]["flags"])
    assert 0 < flagged < 400
    assert (counted("1.0.0"), counted("1.1.0")) == (400 - flagged, flagged)


def test_cpu_by_stage_counts_scoring_and_accounting_and_shows_in_the_metrics(fraud_pipeline):
    import time

    from prometheus_client import generate_latest

    from workers.kafka.connection import Connection
    from workers.kafka.engine import EngineConfig, EngineContext, process
    from workers.ops.stage_cpu import ACCOUNT, OUTPUTS, SCORE

    _, _, records = _events(fraud_pipeline, 2000, seed=5, now=int(time.time() * 1000))
    monitor = WorkerMonitor(fraud_pipeline, "w")

    def fail(exc: BaseException):
        raise exc

    context = EngineContext(fraud_pipeline, EngineConfig("g", "c", 500, 0.0, 4), Connection(["x:1"], "PLAINTEXT"),
                            monitor, fail, cpu=monitor.cpu)
    started = time.thread_time()
    result = process(context, records)
    scoring = time.thread_time() - started
    monitor.batch_delivered(records, result)
    totals = monitor.cpu.totals()
    assert 0.5 * scoring <= totals[SCORE] <= scoring
    assert totals[ACCOUNT] > 0 and totals[OUTPUTS] == 0.0  # no engine sent anything
    text = generate_latest(monitor.metrics.registry).decode()
    assert 'workers_cpu_seconds_total{pipeline="fraud",stage="score"}' in text
