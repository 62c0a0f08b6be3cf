"""Health that tells the truth: readiness and liveness from what the engines report."""
from __future__ import annotations

import pytest

from tests.factories import load_test_pipeline
from workers.ops import monitor as monitor_module
from workers.ops.monitor import WorkerMonitor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
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
