from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest

from workers.ops.stage_cpu import ACCOUNT, OTHER, OUTPUTS, SCORE, StageCpu


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_stage_gets_the_cpu_it_used_and_the_rest_is_other():
    cpu = StageCpu()
    started = time.thread_time()
    _spin(0.05)
    cpu.add(SCORE, started)
    _spin(0.03)  # no stage: other
    started = time.thread_time()
    _spin(0.02)
    cpu.add(OUTPUTS, started)
    totals = cpu.totals()
    assert set(totals) == {SCORE, OUTPUTS, ACCOUNT, OTHER}
    assert 0.05 <= totals[SCORE] < 0.08
    assert 0.02 <= totals[OUTPUTS] < 0.05
    assert totals[ACCOUNT] == 0.0
    assert 0.03 <= totals[OTHER] < 0.06


def test_waiting_is_nobodys_cpu():
    cpu = StageCpu()
    started = time.thread_time()
    time.sleep(0.1)  # a stage that waits (it should not: stages are timed around code that does not)
    cpu.add(SCORE, started)
    assert cpu.totals()[SCORE] < 0.02


def test_exposed_as_one_counter_with_a_stage_label():
    registry = CollectorRegistry()
    cpu = StageCpu({"pipeline": "fraud"})
    registry.register(cpu)
    started = time.thread_time()
    _spin(0.02)
    cpu.add(ACCOUNT, started)
    text = generate_latest(registry).decode()
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("workers_")}
    assert set(lines) == {f'workers_cpu_seconds_total{{pipeline="fraud",stage="{s}"}}'
                          for s in (SCORE, OUTPUTS, ACCOUNT, OTHER)}
    assert lines['workers_cpu_seconds_total{pipeline="fraud",stage="account"}'] >= 0.02
    assert "# TYPE workers_cpu_seconds_total counter" in text
