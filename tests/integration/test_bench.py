"""Smoke: the benchmark runs end to end on the real broker and reports sane numbers.

Speed targets are read from the benchmark's own report, never asserted here: timings on
a shared 2-core machine are noisy.
"""
from __future__ import annotations

import json
import os

import pytest

from tests.conftest import CPU_HEAVY
from workers.dev import bench
from workers.kafka.clients import admin_client
from workers.settings import Settings

pytestmark = pytest.mark.integration


@CPU_HEAVY
def test_quick_benchmark_reports_every_measure(kafka_bootstrap, tmp_path):
    settings = Settings(bootstrap_servers=kafka_bootstrap)
    result = bench.run(settings, events=6000, naive_events=300, partitions=2,
                       latency_seconds=2.0,
                       load_fractions=[0.1], out_dir=tmp_path, warm_workers=True)
    assert result.ceiling_eps > 0 and result.worker_eps > 0 and result.agent_engine_eps > 0 and result.naive_eps > 0
    assert result.backlog_peak_rss_mb > 50 and result.steady_rss_mb > 50
    assert len(result.latency) == 1 and result.latency[0]["received"] > 0
    assert 0 < result.latency[0]["p50_ms"] <= result.latency[0]["p99_ms"] <= result.latency[0]["max_ms"]
    # the worker's share (to its producer) is part of the end-to-end latency, never more
    assert 0 <= result.latency[0]["worker_p50_ms"] <= result.latency[0]["p50_ms"] + 1
    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report["ratios"]) == {"worker / ceiling", "worker / hand-written loop", "worker / naive",
                                     "worker / agent engine", "two workers / one", "model call, public / lean",
                                     "worker CPU/event at 10% / draining"}
    assert report["ratios"]["worker CPU/event at 10% / draining"] == pytest.approx(
        result.latency[0]["cpu_us_per_event"] / result.cpu_us_per_event["batch"])
    # the hand-written confluent-kafka loop drained the same backlog and was measured like the worker
    assert result.handwritten_eps > 0 and result.ceiling_public_eps > 0
    assert set(report["cpu_us_per_event"]) >= {"batch", "handwritten", "agent", "naive"}
    assert all(v > 0 for v in report["cpu_us_per_event"].values())
    assert len(result.handwritten_latency) == 1 and result.handwritten_latency[0]["received"] > 0
    assert result.latency[0]["cpu_us_per_event"] > 0 and result.handwritten_latency[0]["cpu_us_per_event"] > 0
    assert set(report["model_call_ms"]) == {"public", "lean-hgb"} and min(report["model_call_ms"].values()) > 0
    assert result.two_workers_eps > 0
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    # the worker's CPU by stage, read from its /metrics, adds up to what /proc says it used
    for stages, total in ((result.drain_cpu_us_by_stage, result.cpu_us_per_event["batch"]),
                          (result.latency[0]["cpu_us_by_stage"], result.latency[0]["cpu_us_per_event"])):
        assert set(stages) == {"score", "outputs", "account", "other"}
        assert stages["score"] > 0 and stages["outputs"] > 0 and stages["account"] > 0
        assert 0.5 * total <= sum(stages.values()) <= 1.5 * total
    assert "worker CPU us/event by stage" in bench.table(result)
    assert "worker / naive" in bench.table(result)
    # the run's topics are gone: runs in a row measure the same broker
    with admin_client(settings) as admin:
        assert not [t for t in admin.list_topics() if t.startswith(f"bench-{os.getpid()}-")]
