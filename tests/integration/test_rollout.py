"""Rollouts on a real broker: two workers in one group follow `workers rollout` live.

Promote mid-stream: both switch, every event accounted for (none lost, none scored twice),
each partition's predictions go from the old version to the new one and never back, an
audit record per worker. Rollback returns to 1.0.0. A version whose artifact fails its
sha256 is refused by both: they keep scoring with their model and the refusal is audited.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.factories import REPO
from tests.integration.workers_harness import (
    collect,
    get,
    metrics,
    pipeline_settings,
    start_observed_worker,
    worker_env,
)
from workers.core import audit
from workers.core.topics import PipelineTopics
from workers.dev import fraud_data as fraud
from workers.dev.processes import stop_worker
from workers.kafka import audit as audit_log
from workers.kafka import rollout_commands
from workers.kafka.admin import create_topics
from workers.kafka.producer import EventProducer
from workers.pipelines import load_manifest
from workers.settings import Settings

pytestmark = pytest.mark.integration
WORKERS = ("w-a", "w-b")
BAD = "1.2.0"


@pytest.fixture
def models(tmp_path) -> Path:
    """1.0.0 (CURRENT), 1.1.0, and 1.2.0: 1.1.0 with one byte of its artifact flipped (its sha256 fails)."""
    root = tmp_path / "models"
    shutil.copytree(REPO / "models" / "fraud", root / "fraud")
    bad = root / "fraud" / BAD
    shutil.copytree(root / "fraud" / "1.1.0", bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "version": BAD}))
    data = bytearray((bad / "model.joblib").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model.joblib").write_bytes(bytes(data))
    return root


def _send(settings: Settings, n: int, seed: int, rate: float | None = None) -> list[str]:
    """``n`` events (at ``rate`` per second when given); their event ids."""
    manifest, store = load_manifest(settings)
    events, _ = fraud.generate(n, seed=seed, start_ms=int(time.time() * 1000) - 1000, span_ms=1000)
    with EventProducer(settings, manifest, store, settings.topics.events) as producer:
        for i, event in enumerate(events):
            producer.send_event(event)
            if rate and i % 50 == 49:
                producer.flush()
                time.sleep(50 / rate)
    return [e["event_id"] for e in events]


def _wait_for_audit(settings: Settings, action: str, version: str, count: int, timeout_s: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r for r in audit_log.read(settings, idle_timeout_s=1.0)
                 if r["action"] == action and r["details"].get("version") == version]
        if len({r["worker_id"] for r in found}) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _versions(predictions: list[dict], ids: list[str]) -> set[str]:
    wanted = set(ids)
    return {p["model_version"] for p in predictions if p["event_id"] in wanted}


@pytest.mark.parametrize("engine", ["batch", "agent"])
def test_promote_rollback_and_a_refused_version_with_two_workers(kafka_bootstrap, unique_name, tmp_path, models,
                                                                 engine):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-", models_dir=models,
                                 schemas_dir=REPO / "schemas")
    workers = [start_observed_worker(settings, tmp_path / f"{w}.log",
                                     {"WORKERS_WORKER_ID": w, "WORKERS_ENGINE": engine}) for w in WORKERS]
    try:
        deadline = time.monotonic() + 90
        while not all(get(port, "/readyz")[0] == 200 for _, port in workers):
            assert time.monotonic() < deadline, "workers not ready"
            assert all(p.poll() is None for p, _ in workers), [(tmp_path / f"{w}.log").read_text()[-2000:]
                                                                for w in WORKERS]
            time.sleep(0.5)

        # Promote 1.1.0 while events stream in.
        sent: list[str] = []
        streaming = threading.Thread(target=lambda: sent.extend(_send(settings, 6000, seed=1, rate=1500)))
        streaming.start()
        time.sleep(1.0)
        print("\n".join(rollout_commands.change(settings, "promote", "1.1.0")))
        switched = _wait_for_audit(settings, audit.MODEL_SWITCHED, "1.1.0", 2)
        assert {r["worker_id"] for r in switched} == set(WORKERS)
        assert all(r["details"]["previous"] == "1.0.0" and r["details"]["command"] == "promote 1.1.0"
                   for r in switched)
        streaming.join()
        after = _send(settings, 500, seed=2)
        out = collect(settings, len(sent) + len(after))
        ids = [p["event_id"] for p in out.predictions]
        assert out.dead_letters == [] and len(ids) == len(set(ids)) == len(sent) + len(after)  # none lost, none twice
        assert set(ids) == set(sent) | set(after)
        assert _versions(out.predictions, sent) == {"1.0.0", "1.1.0"}  # the switch happened mid-stream
        assert _versions(out.predictions, after) == {"1.1.0"}
        by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for p in out.predictions:
            by_partition[p["source_partition"]].append((p["source_offset"], p["model_version"]))
        for partition, seen in by_partition.items():  # old, then new, never back
            versions = [v for _, v in sorted(seen)]
            assert versions == sorted(versions), partition
        sha = {v: load_manifest(settings.model_copy(update={"model_version": v}))[0].artifact_sha256
               for v in ("1.0.0", "1.1.0")}
        assert all(p["model_sha256"] == sha[p["model_version"]] for p in out.predictions)

        # Rollback: back to 1.0.0.
        rollout_commands.change(settings, "rollback")
        assert {r["worker_id"] for r in _wait_for_audit(settings, audit.MODEL_SWITCHED, "1.0.0", 2)} == set(WORKERS)
        back = _send(settings, 300, seed=3)
        out = collect(settings, len(sent) + len(after) + len(back))
        assert _versions(out.predictions, back) == {"1.0.0"}

        # A version whose artifact fails its sha256: refused by both, who keep scoring with 1.0.0.
        rollout_commands.change(settings, "promote", BAD)
        refused = _wait_for_audit(settings, audit.ROLLOUT_REFUSED, BAD, 2)
        assert {r["worker_id"] for r in refused} == set(WORKERS)
        assert all("sha256" in r["details"]["error"] for r in refused)
        kept = _send(settings, 300, seed=4)
        out = collect(settings, len(sent) + len(after) + len(back) + len(kept))
        ids = [p["event_id"] for p in out.predictions]
        assert len(ids) == len(set(ids)) == len(sent) + len(after) + len(back) + len(kept)
        assert _versions(out.predictions, kept) == {"1.0.0"}
        status = rollout_commands.status(settings)
        assert status[0].startswith(f"fraud: primary {BAD} (previous 1.0.0)")
        assert sum(f"REFUSED {BAD}" in line for line in status) == 2, status
        for _, port in workers:
            assert metrics(port)["workers_rollout_refusals_total{}"] == 1
            assert metrics(port)["workers_model_switches_total{}"] == 2
    finally:
        codes = [stop_worker(p) for p, _ in workers]
    assert codes == [0, 0], [(tmp_path / f"{w}.log").read_text()[-3000:] for w in WORKERS]


def _run_check(settings) -> dict:
    env = {**os.environ, **worker_env(settings), "WORKERS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "WORKERS_PIPELINE": settings.pipeline, "WORKERS_TOPIC_PREFIX": settings.topic_prefix}
    done = subprocess.run([sys.executable, "-m", "workers.cli", "run", "--check"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # one JSON line on stdout; logs go to stderr
    return json.loads(lines[0])


def test_run_check_without_a_control_topic_prints_one_line(kafka_bootstrap, unique_name, models):
    prefix = unique_name("p") + "-"
    settings = Settings(bootstrap_servers=kafka_bootstrap, pipeline="fraud", topic_prefix=prefix, partitions=3,
                        models_dir=models, schemas_dir=REPO / "schemas")
    create_topics(settings, [PipelineTopics.for_pipeline("fraud", prefix).events])  # no <pipeline>.control
    checked = _run_check(settings)
    assert (checked["model_version"], checked["rollout_primary"], checked["refused"]) == ("1.0.0", None, [])
    assert checked["partitions"] == 3


def test_a_worker_that_starts_later_reads_the_state_first(kafka_bootstrap, unique_name, tmp_path, models):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-", models_dir=models,
                                 schemas_dir=REPO / "schemas")
    rollout_commands.change(settings, "promote", "1.1.0")
    rollout_commands.change(settings, "promote", BAD)  # refused: the worker falls back to the primary before it
    checked = _run_check(settings)  # what a worker would serve, before one starts
    assert (checked["model_version"], checked["rollout_primary"]) == ("1.1.0", BAD)
    assert [r["version"] for r in checked["refused"]] == [BAD]
    sent = _send(settings, 200, seed=5)
    worker, port = start_observed_worker(settings, tmp_path / "w.log", {"WORKERS_WORKER_ID": "w-late"})
    try:
        out = collect(settings, len(sent), worker=worker)
        assert len(out.predictions) == len(sent) and _versions(out.predictions, sent) == {"1.1.0"}
        assert metrics(port)["workers_rollout_refusals_total{}"] == 1
    finally:
        assert stop_worker(worker) == 0, (tmp_path / "w.log").read_text()[-3000:]
    refused = _wait_for_audit(settings, audit.ROLLOUT_REFUSED, BAD, 1)
    assert [r["worker_id"] for r in refused] == ["w-late"]
    loaded = [r for r in audit_log.read(settings, idle_timeout_s=1.0) if r["action"] == audit.MODEL_LOADED]
    assert [r["details"]["version"] for r in loaded] == ["1.1.0"]
