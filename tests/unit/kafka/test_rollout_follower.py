"""A worker following the rollout state: a verified model switches between batches, a refused one never serves."""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from tests.factories import load_test_pipeline
from workers.core import audit
from workers.core.records import InputRecord
from workers.core.rollout import RolloutState
from workers.dev import fraud_data as fraud
from workers.errors import ModelIntegrityError
from workers.kafka import rollout as rollout_module
from workers.kafka.connection import Connection
from workers.kafka.engine import EngineConfig, EngineContext, PipelineSwitch, process
from workers.kafka.rollout import RolloutFollower, load_at_start
from workers.ops.monitor import WorkerMonitor
from workers.settings import Settings

NOW = int(time.time() * 1000)


@pytest.fixture(scope="module")
def pipelines():
    return {v: load_test_pipeline(model_version=v) for v in ("1.0.0", "1.1.0")}


@pytest.fixture
def audited(monkeypatch):
    records: list[tuple[str, dict]] = []
    monkeypatch.setattr(rollout_module.audit_log, "write",
                        lambda settings, action, details, worker_id=None: records.append((action, details)))
    return records


def _records(pipeline, n: int) -> list[InputRecord]:
    events, _ = fraud.generate(n, seed=3, start_ms=NOW - 1000)
    return [InputRecord(pipeline.input_codec.encode(e), b"k", "in", 0, i, NOW, []) for i, e in enumerate(events)]


def _context(pipeline) -> EngineContext:
    def fail(exc: BaseException):
        raise exc

    return EngineContext(pipeline, EngineConfig("g", "c", 500, 0.0, 4), Connection(["x:1"], "PLAINTEXT"),
                         None, fail)  # type: ignore[arg-type]


@contextlib.contextmanager
def _engine_applying(switch: PipelineSwitch, context: EngineContext) -> Iterator[None]:
    """The engine's event loop between batches: applies whatever the follower offers, every 20 ms.
    (A single timer raced a follower slow to load its model on a busy machine: the offer came
    after the one apply, and the follower waited for good.)"""
    done = threading.Event()

    def apply_between_batches() -> None:
        while not done.wait(0.02):
            switch.apply(context)

    applier = threading.Thread(target=apply_between_batches, daemon=True)
    applier.start()
    try:
        yield
    finally:
        done.set()
        applier.join(5)


def test_an_offered_pipeline_serves_from_the_next_batch_on(pipelines):
    old, new = pipelines["1.0.0"], pipelines["1.1.0"]
    context = _context(old)
    monitor = WorkerMonitor(old, "w1")
    context.switch.listeners.append(monitor.model_switched)
    records = _records(old, 20)
    first = process(context, records)
    old._stream_time[("in", 7)] = NOW  # what it knows of the stream (event-time lateness)
    applied = context.switch.offer(new)
    assert not applied.is_set()
    second = process(context, records)
    assert applied.is_set() and context.pipeline is new
    assert {o.prediction["model_version"] for o in first.outputs} == {"1.0.0"}
    assert {o.prediction["model_version"] for o in second.outputs} == {"1.1.0"}
    assert new._stream_time[("in", 7)] == NOW  # what the old one knew of the stream is kept
    assert monitor.status()["model"]["version"] == "1.1.0"
    assert monitor.metrics.model_switches._value.get() == 1


def _follower(settings, serving, switch, load, refusals):
    return RolloutFollower(settings, reader=None, state=None, serving=serving, switch=switch, load=load,  # type: ignore[arg-type]
                           refused=lambda version, why: refusals.append((version, why)))


def test_a_new_primary_is_verified_then_switched_to_and_audited(pipelines, audited):
    switch = PipelineSwitch()
    context = _context(pipelines["1.0.0"])
    loaded: list[str | None] = []

    def load(version):
        loaded.append(version)
        return pipelines[version]

    follower = _follower(Settings(worker_id="w1"), pipelines["1.0.0"], switch, load, [])
    with _engine_applying(switch, context):
        follower.step(RolloutState("fraud", primary="1.1.0", previous="1.0.0", command="promote 1.1.0"))
    assert loaded == ["1.1.0"] and context.pipeline is pipelines["1.1.0"] and follower.serving == "1.1.0"
    assert audited == [(audit.MODEL_SWITCHED, {
        "previous": "1.0.0", "version": "1.1.0", "sha256": pipelines["1.1.0"].manifest.artifact_sha256,
        "command": "promote 1.1.0", "signer": "none (no trusted keys)"})]
    follower.step(None)  # nothing new: nothing loaded again
    assert loaded == ["1.1.0"]


def test_a_version_that_fails_verification_is_refused_once_and_never_serves(pipelines, audited):
    switch = PipelineSwitch()
    refusals: list[tuple[str, str]] = []
    calls = []

    def load(version):
        calls.append(version)
        raise ModelIntegrityError("refusing to load model.joblib: its sha256 is x but the manifest declares y")

    follower = _follower(Settings(worker_id="w1"), pipelines["1.0.0"], switch, load, refusals)
    follower.step(RolloutState("fraud", primary="9.9.9", previous="1.0.0", command="promote 9.9.9"))
    follower.step(None)
    assert calls == ["9.9.9"] and follower.serving == "1.0.0"
    assert refusals == [("9.9.9", "refusing to load model.joblib: its sha256 is x but the manifest declares y")]
    assert [(a, d["version"], d["command"]) for a, d in audited] == [(audit.ROLLOUT_REFUSED, "9.9.9", "promote 9.9.9")]
    follower.step(RolloutState("fraud", primary="9.9.9", previous="1.0.0", command="promote 9.9.9", at_ms=2))
    assert calls == ["9.9.9", "9.9.9"]  # the same version named again by a new command: tried again
    at_start = RolloutFollower(Settings(worker_id="w2"), None, None, pipelines["1.0.0"], switch, load,  # type: ignore[arg-type]
                               lambda version, why: None, refused_at_start=["9.9.9"])
    at_start.step(None)
    at_start.state = RolloutState("fraud", primary="9.9.9", previous="1.0.0")
    at_start.step(None)
    assert calls == ["9.9.9", "9.9.9"]  # refused before serving: not tried again for the same state


def test_a_starting_worker_falls_back_from_a_refused_primary(pipelines, audited):
    state = RolloutState("fraud", primary="9.9.9", previous="1.1.0", command="promote 9.9.9")
    refusals: list[tuple[str, str]] = []

    def load(version):
        if version == "9.9.9":
            raise ModelIntegrityError("bad sha256")
        return pipelines[version or "1.0.0"]

    pipeline = load_at_start(Settings(worker_id="w1"), state, load, lambda v, why: refusals.append((v, why)))
    assert pipeline.manifest.version == "1.1.0"
    assert refusals == [("9.9.9", "bad sha256")] and audited[0][0] == audit.ROLLOUT_REFUSED
    with pytest.raises(ModelIntegrityError):  # the configured version failing is a start-up error, as before
        load_at_start(Settings(worker_id="w1"), None, lambda version: load("9.9.9"))


def test_status_shows_each_workers_latest_report():
    from workers.kafka.rollout_commands import describe_report

    state = RolloutState("fraud", primary="1.2.0", previous="1.0.0")
    switched = {"action": audit.MODEL_SWITCHED, "details": {"version": "1.2.0"}}
    behind = {"action": audit.MODEL_LOADED, "details": {"version": "1.0.0"}}
    refused = {"action": audit.ROLLOUT_REFUSED, "details": {"version": "1.2.0", "error": "bad sha256"}}
    assert describe_report(switched, state) == "serves 1.2.0 since model switched"
    assert describe_report(behind, state) == "serves 1.0.0 (not the primary 1.2.0) since model loaded"
    assert describe_report(refused, state) == "REFUSED 1.2.0 (keeps its model): bad sha256"


def test_a_canary_starts_its_guards_end_it_in_the_engine_and_the_follower_writes_the_rollback(
        tmp_path, audited, monkeypatch):
    import shutil

    from tests.bad_models import write_bad_version
    from tests.factories import REPO

    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "fraud", models / "fraud")
    write_bad_version(models, "1.2.0-failing", fail_above=0.0)
    primary, bad = (load_test_pipeline(models=models, model_version=v) for v in ("1.0.0", "1.2.0-failing"))
    written: list[RolloutState] = []
    monkeypatch.setattr(rollout_module, "write_state", lambda settings, state: written.append(state))
    switch, context = PipelineSwitch(), _context(primary)
    context.switch = switch
    monitor = WorkerMonitor(primary, "w1")
    switch.trial_listeners.append(monitor.trial_changed)
    switch.decision_listeners.append(monitor.trial_decided)
    follower = _follower(Settings(worker_id="w1"), primary, switch, lambda version: bad, [])
    state = RolloutState("fraud", primary="1.0.0", candidate="1.2.0-failing", mode="canary", fraction=1.0,
                         guards={"min_events": 50}, command="canary 1.2.0-failing --fraction 1")
    with _engine_applying(switch, context):
        follower.step(state)
    assert context.trial is not None and monitor.status()["trial"]["candidate"] == "1.2.0-failing"

    result = process(context, [InputRecord(r.value, b"acct-%d" % i, "in", 0, i, NOW, [])
                               for i, r in enumerate(_records(primary, 60))])
    assert result.dead_letters["inference_error"] == 60  # scored by the candidate (every key), none lost
    assert context.trial is None and context.pipeline is primary  # ended right after the batch
    follower.step(None)
    assert [s.describe().split(";")[0] for s in written] == ["fraud: primary 1.0.0 (previous -), no candidate"]
    assert "automatic: error_rate by w1" in written[0].command
    decided = [d for a, d in audited if a == audit.TRIAL_DECIDED]
    assert decided and decided[0]["guard"] == "error_rate" and decided[0]["action"] == "rollback"
    assert monitor.status()["trial"] is None and "error_rate" in monitor.status()["trial_decisions"][0]["decision"]
    follower.step(None)  # the old state is still the latest: the canary is not started again
    assert context.trial is None and switch._trial is None


def test_a_worker_starting_during_a_canary_runs_it_from_its_first_batch(pipelines, audited):
    switch, context = PipelineSwitch(), _context(pipelines["1.0.0"])
    context.switch = switch
    state = RolloutState("fraud", primary="1.0.0", candidate="1.1.0", mode="canary", fraction=0.5,
                         command="canary 1.1.0 --fraction 0.5")
    follower = RolloutFollower(Settings(worker_id="w-late"), None, state, pipelines["1.0.0"], switch,  # type: ignore[arg-type]
                               lambda version: pipelines[version], lambda version, why: None)
    follower.begin(context)  # no event loop yet: applied at once
    assert context.trial is not None and context.trial.key() == ("1.1.0", "canary", 0.5)
    assert [a for a, _ in audited] == [audit.TRIAL_STARTED]
    follower.step(None)  # the same state: nothing started twice
    assert [a for a, _ in audited] == [audit.TRIAL_STARTED]


def test_a_decision_overtaken_by_a_command_is_not_written_and_the_worker_follows_the_command(
        pipelines, audited, monkeypatch):
    from workers.core.canary import Decision

    written: list[RolloutState] = []
    monkeypatch.setattr(rollout_module, "write_state", lambda settings, state: written.append(state))
    switch, context = PipelineSwitch(), _context(pipelines["1.0.0"])
    context.switch = switch
    canary = RolloutState("fraud", primary="1.0.0", candidate="1.1.0", mode="canary", fraction=0.5,
                          guards={"soak_s": 1}, command="canary 1.1.0", at_ms=1)
    follower = RolloutFollower(Settings(worker_id="w1"), None, canary, pipelines["1.0.0"], switch,  # type: ignore[arg-type]
                               lambda version: load_test_pipeline(model_version=version), lambda version, why: None)
    follower.begin(context)
    trial = context.trial
    # the engine promotes the candidate after a batch ...
    switch._run_trial(context, None)
    switch._serve(context, trial.candidate)
    follower.decisions.put((trial, Decision("promote", "soak", {"healthy_s": 1.0})))
    # ... while an operator's rollback was already on its way
    rollback_command = RolloutState("fraud", primary="1.0.0", command="rollback canary 1.1.0", at_ms=2)
    with _engine_applying(switch, context):
        follower.step(rollback_command)
    assert written == []  # nothing written against a state that moved on
    assert follower.serving == "1.0.0" and context.pipeline.manifest.version == "1.0.0" and context.trial is None
