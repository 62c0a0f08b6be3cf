"""Shadow and canary on a real broker, two workers in one group (`workers rollout shadow|canary`).

Shadow: the primary's predictions are exactly those of a run without a shadow, every one has
its shadow record, and each worker's agreement figures equal a recomputation from the two
topics. Canary: a stable 20% of keys is scored by the candidate (flagged), no key by both;
`promote` then switches both workers, nothing lost or scored twice. A bad canary is rolled
back by the guards within the documented bound, every event accounted for, the audit record
naming the guard.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.bad_models import write_bad_version
from tests.factories import REPO, load_test_pipeline
from tests.integration.workers_harness import collect, get, metrics, pipeline_settings, start_observed_worker
from workers.core import audit
from workers.core.canary import CANARY_FLAG
from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.records import InputRecord
from workers.core.shadow import SCHEMA, SCHEMA_NAME, score_edges, summarize
from workers.dev import fraud_data as fraud
from workers.dev.processes import stop_worker
from workers.kafka import audit as audit_log
from workers.kafka import rollout_commands
from workers.kafka.consumer import consume
from workers.kafka.control import read_state
from workers.kafka.producer import EventProducer
from workers.pipelines import load_manifest
from workers.settings import Settings

pytestmark = pytest.mark.integration
WORKERS = ("w-a", "w-b")
BATCH = 200  # the workers' batch size here: the bound of a bad canary is min_events + one batch


@pytest.fixture
def models(tmp_path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(REPO / "models" / "fraud", root / "fraud")
    write_bad_version(root, "1.2.0-failing", fail_above=60.0)  # refuses amounts above 60: a third of rows
    return root


def _events(n: int, seed: int, accounts: int = 400) -> list[dict]:
    events, _ = fraud.generate(n, seed=seed, start_ms=int(time.time() * 1000) - 1000, span_ms=1000,
                               accounts=accounts)
    return events


def _send(settings: Settings, events: list[dict]) -> list[str]:
    manifest, store = load_manifest(settings)
    with EventProducer(settings, manifest, store, settings.topics.events) as producer:
        for event in events:
            producer.send_event(event)  # keyed by the account: one key, one model during a canary
    return [e["event_id"] for e in events]


def _started(settings: Settings, tmp_path: Path) -> list:
    workers = [start_observed_worker(settings, tmp_path / f"{w}.log", {"WORKERS_WORKER_ID": w,
                                                                       "WORKERS_BATCH_SIZE": str(BATCH)})
               for w in WORKERS]
    deadline = time.monotonic() + 90
    while not all(get(port, "/readyz")[0] == 200 for _, port in workers):
        assert time.monotonic() < deadline, "workers not ready"
        assert all(p.poll() is None for p, _ in workers), [_log(tmp_path, w) for w in WORKERS]
        time.sleep(0.5)
    return workers


def _log(tmp_path: Path, worker: str) -> str:
    return (tmp_path / f"{worker}.log").read_text()[-3000:]


def _audited(settings: Settings, action: str, count: int, timeout_s: float = 60, **details: str) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r for r in audit_log.read(settings, idle_timeout_s=1.0)
                 if r["action"] == action and all(r["details"].get(k) == v for k, v in details.items())]
        if len({r["worker_id"] for r in found}) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _stopped(workers: list, tmp_path: Path) -> None:
    codes = [stop_worker(p) for p, _ in workers]
    assert codes == [0, 0], [_log(tmp_path, w) for w in WORKERS]


def test_a_shadow_scores_everything_on_the_side_and_its_figures_can_be_recomputed(kafka_bootstrap, unique_name,
                                                                                  tmp_path, models):
    settings = pipeline_settings(kafka_bootstrap, unique_name("sh") + "-", models_dir=models,
                                 schemas_dir=REPO / "schemas")
    workers = _started(settings, tmp_path)
    try:
        rollout_commands.change(settings, "shadow", "1.1.0")
        started = _audited(settings, audit.TRIAL_STARTED, 2, candidate="1.1.0")
        assert {r["worker_id"] for r in started} == set(WORKERS)
        events = _events(10_000, seed=11, accounts=5000)
        sent = _send(settings, events)
        out = collect(settings, len(sent))
        statuses = {w: json.loads(get(port, "/status.json")[1]) for w, (_, port) in zip(WORKERS, workers, strict=True)}
        figures = {}
        for w, (_, port) in zip(WORKERS, workers, strict=True):
            deadline = time.monotonic() + 10  # gauges follow the status within a heartbeat (1 s)
            figures[w] = metrics(port)
            while figures[w].get("workers_trial_figure{figure=pairs,role=shadow}") != \
                    statuses[w]["trial"]["shadow"]["pairs"] and time.monotonic() < deadline:
                time.sleep(0.5)
                figures[w] = metrics(port)
    finally:
        _stopped(workers, tmp_path)

    # the primary's predictions: exactly what 1.0.0 alone gives for these events
    assert out.dead_letters == [] and sorted(p["event_id"] for p in out.predictions) == sorted(sent)
    alone = load_test_pipeline(models=models, model_version="1.0.0")
    offline = alone.process([InputRecord(alone.input_codec.encode(e), None, "in", 0, i) for i, e in enumerate(events)])
    expected = {o.prediction["event_id"]: (o.prediction["score"], o.prediction["label"]) for o in offline.outputs}
    assert {p["event_id"]: (p["score"], p["label"]) for p in out.predictions} == expected
    assert {p["model_version"] for p in out.predictions} == {"1.0.0"}

    store = SchemaStore(REPO / "schemas")
    codec = SingleObjectCodec(store, store.add_definition(SCHEMA, SCHEMA_NAME))
    shadow = [codec.decode(r.value)[0] for r in consume(settings, [settings.topics.shadow], idle_timeout_s=5)]
    assert len(shadow) == 10_000 and {r["event_id"] for r in shadow} == set(sent)
    assert {(r["primary_version"], r["candidate_version"]) for r in shadow} == {("1.0.0", "1.1.0")}

    # each worker's figures, recomputed from the predictions topic (primary) and the shadow topic (candidate)
    primary = {p["event_id"]: p for p in out.predictions}
    candidate_manifest = load_manifest(settings.model_copy(update={"model_version": "1.1.0"}))[0]
    profile = candidate_manifest.reference_profile
    edges = score_edges(profile.score.bin_edges if profile and profile.score else None, True)
    for worker in WORKERS:
        mine = [{**r, "primary_score": primary[r["event_id"]]["score"],
                 "primary_label": primary[r["event_id"]]["label"]} for r in shadow if r["worker_id"] == worker]
        shown = statuses[worker]["trial"]["shadow"]
        assert mine and shown["pairs"] == len(mine)
        assert {k: v for k, v in shown.items() if not k.startswith("extra_")} == summarize(mine, edges)
        assert shown["extra_us_per_event"] > 0
        assert figures[worker]["workers_trial_figure{figure=pairs,role=shadow}"] == len(mine)
        assert figures[worker]["workers_trial_candidate{candidate=1.1.0,mode=shadow}"] == 1
    assert sum(statuses[w]["trial"]["shadow"]["pairs"] for w in WORKERS) == 10_000


def test_a_canary_by_key_then_promote(kafka_bootstrap, unique_name, tmp_path, models):
    settings = pipeline_settings(kafka_bootstrap, unique_name("ca") + "-", models_dir=models,
                                 schemas_dir=REPO / "schemas")
    workers = _started(settings, tmp_path)
    try:
        # generous guards: this test is about the split (the guards have their own test)
        rollout_commands.change(settings, "canary", "1.1.0", 0.2, {"max_p99_ratio": 1000, "max_score_psi": 1000})
        assert {r["worker_id"] for r in _audited(settings, audit.TRIAL_STARTED, 2, candidate="1.1.0")} == set(WORKERS)
        during = _send(settings, _events(6000, seed=12))
        out = collect(settings, len(during))
        by_candidate = [p for p in out.predictions if p["model_version"] == "1.1.0"]
        assert 0.15 <= len(by_candidate) / len(during) <= 0.25, len(by_candidate)
        assert all(CANARY_FLAG in p["flags"] for p in by_candidate)
        assert not any(CANARY_FLAG in p["flags"] for p in out.predictions if p["model_version"] == "1.0.0")
        keys: dict[str, set[str]] = {}
        for p in out.predictions:
            keys.setdefault(p["key"], set()).add(p["model_version"])
        assert len(keys) > 300 and all(len(v) == 1 for v in keys.values())  # no key scored by both

        print("\n".join(rollout_commands.change(settings, "promote")))  # the candidate on trial
        switched = _audited(settings, audit.MODEL_SWITCHED, 2, version="1.1.0")
        assert {r["worker_id"] for r in switched} == set(WORKERS)
        after = _send(settings, _events(2000, seed=13))
        out = collect(settings, len(during) + len(after))
    finally:
        _stopped(workers, tmp_path)
    ids = [p["event_id"] for p in out.predictions]
    assert out.dead_letters == [] and len(ids) == len(set(ids)) == len(during) + len(after)
    assert {p["model_version"] for p in out.predictions if p["event_id"] in set(after)} == {"1.1.0"}
    assert not any(CANARY_FLAG in p["flags"] for p in out.predictions if p["event_id"] in set(after))
    state = read_state(settings)
    assert (state.primary, state.candidate, state.previous) == ("1.1.0", None, "1.0.0")


def test_a_bad_canary_is_rolled_back_by_its_guards(kafka_bootstrap, unique_name, tmp_path, models):
    settings = pipeline_settings(kafka_bootstrap, unique_name("bad") + "-", models_dir=models,
                                 schemas_dir=REPO / "schemas")
    workers = _started(settings, tmp_path)
    min_events = 100
    try:
        rollout_commands.change(settings, "canary", "1.2.0-failing", 0.3, {"min_events": min_events})
        assert len({r["worker_id"] for r in _audited(settings, audit.TRIAL_STARTED, 2)}) == 2
        sent = _send(settings, _events(6000, seed=14))
        out = collect(settings, len(sent))
        decided = _audited(settings, audit.TRIAL_DECIDED, 1)
        state = read_state(settings)
        later = _send(settings, _events(1000, seed=15))
        out = collect(settings, len(sent) + len(later))
        status = rollout_commands.status(settings)
        statuses = [json.loads(get(port, "/status.json")[1]) for _, port in workers]
    finally:
        _stopped(workers, tmp_path)

    # the guard that decided, with its values, in the audit trail; the state says so too
    assert decided and all(r["details"]["action"] == "rollback" and r["details"]["guard"] == "error_rate"
                           for r in decided)
    assert float(decided[0]["details"]["value.candidate"]) > float(decided[0]["details"]["value.limit"])
    assert state.candidate is None and state.primary == "1.0.0" and "automatic: error_rate" in state.command
    assert any("ROLLED BACK canary 1.2.0-failing automatically (error_rate" in line for line in status), status
    assert any(s["trial_decisions"] for s in statuses) and all(s["trial"] is None for s in statuses)

    # every event accounted for: a prediction or a dead letter, exactly once
    reasons = Counter(dict(r.headers)["dlq.reason"].decode() for r in out.dead_letters)
    ids = [p["event_id"] for p in out.predictions]
    assert len(ids) == len(set(ids)) and len(ids) + sum(reasons.values()) == len(sent) + len(later)
    assert set(reasons) <= {"inference_error"}
    # the bound: per worker, at most min_events + one batch of events went to the candidate
    by_candidate = sum(p["model_version"] == "1.2.0-failing" for p in out.predictions) + reasons["inference_error"]
    assert 0 < by_candidate <= len(WORKERS) * (min_events + BATCH), by_candidate
    assert {p["model_version"] for p in out.predictions if p["event_id"] in set(later)} == {"1.0.0"}
