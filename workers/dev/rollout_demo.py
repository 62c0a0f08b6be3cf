"""`workers demo --rollout`: a shadow, a bad canary rolled back by its guards, a good canary
promoted after its soak, on one live stream, with a summary. Dev tool.

The models are a copy of models/<pipeline>/ in a temporary directory plus one deliberately bad
version (``workers.dev.bad_models``: scores shifted up), so nothing under models/ changes.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from workers.core import audit
from workers.dev import fraud_data
from workers.dev.bad_models import write_bad_version
from workers.dev.processes import free_port, start_worker, stop_worker
from workers.kafka import audit as audit_log
from workers.kafka import rollout_commands
from workers.kafka.admin import create_topics
from workers.kafka.consumer import consume
from workers.kafka.control import read_state
from workers.kafka.producer import EventProducer
from workers.pipelines import load_manifest
from workers.settings import Settings
from workers.tail import prediction_codec

CANDIDATE, BAD = "1.1.0", "1.2.0-demo-shifted"
PHASE_EVENTS = 3000
WAIT_S = 60.0


def _status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as response:
        return dict(json.loads(response.read()))


def _until(what: str, check: Any, worker: Any, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited (code {worker.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {timeout_s:.0f}s")
        time.sleep(0.5)


def _audited(settings: Settings, action: str, **details: str) -> list[dict[str, Any]]:
    return [r for r in audit_log.read(settings, idle_timeout_s=0.5)
            if r["action"] == action and all(r["details"].get(k) == v for k, v in details.items())]


class _Stream:
    """Events keyed by account, sent in phases, and every output read back."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.manifest, self.store = load_manifest(settings)
        self.sent: list[str] = []
        self.seed = 100

    def send(self, n: int, rate: float | None = None) -> list[str]:
        self.seed += 1
        events, _ = fraud_data.generate(n, seed=self.seed, start_ms=int(time.time() * 1000) - 1000, span_ms=1000,
                                        accounts=2000)
        with EventProducer(self.settings, self.manifest, self.store, self.settings.topics.events) as producer:
            for i, event in enumerate(events):
                producer.send_event(event)
                if rate and i % 100 == 99:
                    producer.flush()
                    time.sleep(100 / rate)
        ids = [e["event_id"] for e in events]
        self.sent += ids
        return ids

    def outputs(self) -> tuple[dict[str, dict[str, Any]], Counter[str]]:
        """Predictions by event id, dead letters by reason: everything sent so far."""
        topics, codec = self.settings.topics, prediction_codec(self.settings)
        predictions: dict[str, dict[str, Any]] = {}
        dead: Counter[str] = Counter()
        for record in consume(self.settings, [topics.predictions, topics.dlq], idle_timeout_s=WAIT_S,
                              max_records=len(self.sent)):
            if record.topic == topics.dlq:
                dead[dict(record.headers).get("dlq.reason", b"?").decode()] += 1
            else:
                p = codec.decode(record.value)[0]
                predictions[p["event_id"]] = p
        return predictions, dead


def _by_version(predictions: dict[str, dict[str, Any]], ids: list[str]) -> str:
    counts = Counter((p["model_version"] + (" (canary)" if "canary" in p["flags"] else ""))
                     for i in ids if (p := predictions.get(i)) is not None)
    return ", ".join(f"{v}: {n}" for v, n in sorted(counts.items()))


def run_rollout_demo(settings: Settings) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="workers-rollout-demo-"))
    models = workdir / "models"
    shutil.copytree(settings.models_dir / settings.pipeline, models / settings.pipeline)
    write_bad_version(models, BAD, base=CANDIDATE, shift=0.35)
    settings = settings.model_copy(update={"models_dir": models})
    create_topics(settings, settings.topics.all(), configs=settings.topics.configs())
    primary = load_manifest(settings)[0].version
    print(f"topics: {settings.topic_prefix}{settings.pipeline}.* ; models: {models} "
          f"(primary {primary}, candidate {CANDIDATE}, and {BAD}: {CANDIDATE} with every score shifted up by 0.35)")
    port = free_port()
    log_path = Path(os.environ.get("WORKERS_DEMO_LOG", workdir / "worker.log")).resolve()
    worker = start_worker(settings, log_path, {"WORKERS_MODELS_DIR": str(models), "WORKERS_METRICS_PORT": str(port),
                                               "WORKERS_WORKER_ID": "demo-worker"})
    print(f"worker started (pid {worker.pid}, logs in {log_path}, status on http://127.0.0.1:{port}/status.json)")
    stream = _Stream(settings)
    lines: list[str] = []
    try:
        _until("a ready worker", lambda: _audited(settings, audit.WORKER_STARTED), worker)

        print(f"\n1. shadow: {CANDIDATE} scores every event on the side ({settings.topics.shadow})")
        print("   " + rollout_commands.change(settings, "shadow", CANDIDATE)[0])
        _until("the shadow", lambda: _audited(settings, audit.TRIAL_STARTED, candidate=CANDIDATE), worker)
        shadow_ids = stream.send(PHASE_EVENTS)
        predictions, _ = stream.outputs()
        shadow = _status(port)["trial"]["shadow"]
        lines.append(f"shadow {CANDIDATE}: {shadow['pairs']} pairs, label agreement "
                     f"{shadow['label_agreement']:.2%}, |score diff| p50 {shadow['score_diff']['p50']:.4f} "
                     f"p99 {shadow['score_diff']['p99']:.4f}, score PSI {shadow['score_psi']:.4f}, "
                     f"extra {shadow['extra_us_per_event']:.1f} us/event; predictions: "
                     f"{_by_version(predictions, shadow_ids)}")
        print("   " + lines[-1])

        print(f"\n2. canary of {BAD} over 30% of keys: its guards roll it back")
        print("   " + rollout_commands.change(settings, "canary", BAD, 0.3, {"min_events": 200})[0])
        _until("the bad canary", lambda: _audited(settings, audit.TRIAL_STARTED, candidate=BAD), worker)
        bad_ids = stream.send(PHASE_EVENTS)
        decided = _until("the guards' decision", lambda: _audited(settings, audit.TRIAL_DECIDED, candidate=BAD),
                         worker)[0]["details"]
        predictions, _ = stream.outputs()
        values = ", ".join(f"{k.removeprefix('value.')}={v}" for k, v in sorted(decided.items())
                           if k.startswith("value."))
        lines.append(f"canary {BAD}: {decided['action']} by guard {decided['guard']} ({values}); "
                     f"predictions: {_by_version(predictions, bad_ids)}")
        print("   " + lines[-1])
        print("   state: " + read_state(settings).describe())  # type: ignore[union-attr]

        print(f"\n3. canary of {CANDIDATE} over 30% of keys, promoted after a 5 s soak")
        print("   " + rollout_commands.change(settings, "canary", CANDIDATE, 0.3, {"min_events": 200,
                                                                                   "soak_s": 5})[0])
        _until("the good canary", lambda: _audited(settings, audit.TRIAL_STARTED, candidate=CANDIDATE,
                                                   mode="canary"), worker)
        good_ids = stream.send(PHASE_EVENTS, rate=400)  # ~7 s: longer than the soak
        _until("the promotion", lambda: (s := read_state(settings)) is not None and s.primary == CANDIDATE, worker)
        after_ids = stream.send(1000)
        predictions, dead = stream.outputs()
        state = read_state(settings)
        lines.append(f"canary {CANDIDATE}: promoted ({state.command if state else '?'}); predictions: "
                     f"{_by_version(predictions, good_ids)}")
        print("   " + lines[-1])
        lines.append(f"after the promotion: {_by_version(predictions, after_ids)}")
        print("   " + lines[-1])
    finally:
        code = stop_worker(worker)

    print("\nsummary")
    for line in lines:
        print(f"  {line}")
    accounted = len(predictions) + sum(dead.values())
    print(f"  events sent {len(stream.sent)}, predictions {len(predictions)}, dead letters {sum(dead.values())}"
          f"{' ' + str(dict(dead)) if dead else ''}: accounted for {accounted} / {len(stream.sent)}")
    print("  audit trail (rollouts):")
    for record in audit_log.read(settings, idle_timeout_s=1.0):
        if record["action"] in (audit.ROLLOUT_COMMAND, audit.TRIAL_STARTED, audit.TRIAL_DECIDED,
                                audit.MODEL_SWITCHED):
            print("    " + audit.describe(record)[:220])
    print(f"  worker exit code {code}")
    ok = accounted == len(stream.sent) and set(predictions) <= set(stream.sent) and code == 0 \
        and all(predictions[i]["model_version"] == CANDIDATE for i in after_ids if i in predictions)
    print("\nOK: shadow, rollback and promotion shown; every event accounted for" if ok
          else f"\nMISMATCH: see above and {log_path}")
    return 0 if ok else 1
