"""``workers run --processes 2`` on the real broker: one group, disjoint partitions, every event once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.integration.workers_harness import collect, get, metrics, pipeline_settings, worker_env
from workers.dev.demo import produce_mix
from workers.dev.processes import child_pids, free_port, stop_worker

pytestmark = pytest.mark.integration


def _ready(port: int) -> dict | None:
    code, body = get(port, "/readyz")
    return json.loads(body) if code == 200 else None


def test_two_processes_share_the_partitions_and_score_every_event_once(kafka_bootstrap, unique_name, tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")  # 3 partitions
    base = free_port(2)
    env = {**worker_env(settings), "WORKERS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "WORKERS_PIPELINE": settings.pipeline, "WORKERS_TOPIC_PREFIX": settings.topic_prefix,
           "WORKERS_METRICS_PORT": str(base), "WORKERS_WORKER_ID": "sup"}
    log = tmp_path / "supervisor.log"
    with open(log, "ab") as out:
        supervisor = subprocess.Popen([sys.executable, "-m", "workers.cli", "run", "--processes", "2"],
                                      env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        readiness: list[dict | None] = [None, None]
        while time.monotonic() < deadline and supervisor.poll() is None:
            readiness = [_ready(base), _ready(base + 1)]
            owned = [set(r["partitions"]) for r in readiness if r]
            if len(owned) == 2 and owned[0] | owned[1] == {0, 1, 2} and not owned[0] & owned[1]:
                break  # both members joined one group: the rebalance is over
            time.sleep(0.2)
        assert supervisor.poll() is None, log.read_text()[-3000:]
        first, second = (set(r["partitions"]) for r in readiness if r)
        assert first and second and not first & second and first | second == {0, 1, 2}, readiness
        children = child_pids(supervisor.pid)
        assert len(children) == 2

        sent = produce_mix(settings, 1200, bad_fraction=0.05, old_fraction=0.1, seed=5)
        outputs = collect(settings, len(sent), worker=supervisor)
        time.sleep(0.5)  # the last batch's metrics are recorded right after its acks
        per_process = [metrics(base), metrics(base + 1)]
    finally:
        code = stop_worker(supervisor, timeout=60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert all(not _alive(pid) for pid in children)

    good = {s.event_id for s in sent if s.expected_reason is None}
    predicted = Counter(p["event_id"] for p in outputs.predictions)
    assert outputs.total == len(sent)
    assert set(predicted) == good and max(predicted.values()) == 1  # each good event scored exactly once
    assert outputs.reasons() == Counter(s.expected_reason for s in sent if s.expected_reason)
    consumed = [m["workers_events_consumed_total{}"] for m in per_process]
    assert sum(consumed) == len(sent) and all(c > 0 for c in consumed)  # both processes scored
    ids = {k.split("worker_id=")[1].split(",")[0].rstrip("}") for m in per_process for k in m
           if k.startswith("workers_model_info")}
    assert ids == {"sup-0", "sup-1"}
    stopped = [json.loads(line) for line in text.splitlines() if '"worker processes stopped"' in line]
    assert stopped and stopped[-1]["exit_code"] == 0 and stopped[-1]["reason"] == "received SIGTERM"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_process_that_dies_stops_the_others_and_the_supervisor_exits_70(kafka_bootstrap, unique_name,
                                                                                  tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")
    env = {**os.environ, **worker_env(settings), "WORKERS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "WORKERS_PIPELINE": settings.pipeline, "WORKERS_TOPIC_PREFIX": settings.topic_prefix}
    log = tmp_path / "supervisor.log"
    with open(log, "ab") as out:
        supervisor = subprocess.Popen([sys.executable, "-m", "workers.cli", "run", "--processes", "2"], env=env,
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and log.read_text().count('"worker starting"') < 2:
            time.sleep(0.2)
        children = child_pids(supervisor.pid)
        assert len(children) == 2, log.read_text()[-3000:]
        os.kill(children[0], signal.SIGKILL)
        code = supervisor.wait(60)
    finally:
        stop_worker(supervisor)
    assert code == 70, log.read_text()[-3000:]
    assert not _alive(children[1])
