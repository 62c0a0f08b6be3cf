"""A candidate next to the primary, without Kafka: shadow records, canary by key, and the guards."""
from __future__ import annotations

import shutil
import time
from collections import Counter

import numpy as np
import pytest

from tests.bad_models import write_bad_version
from tests.factories import REPO, load_test_pipeline
from workers.core.canary import CANARY_FLAG, Guards, in_canary
from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.records import InputRecord
from workers.core.shadow import SCHEMA, SCHEMA_NAME, summarize
from workers.core.trial import CANARY, SHADOW, Trial
from workers.dev import fraud_data as fraud
from workers.errors import ConfigError

NOW = int(time.time() * 1000)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(REPO / "models" / "fraud", root / "fraud")
    write_bad_version(root, "1.2.0-shifted", shift=0.4)
    write_bad_version(root, "1.2.0-failing", fail_above=0.0)  # fails every row it is given
    return root


def _pipeline(models, version):
    return load_test_pipeline(models=models, model_version=version)


def _codec():
    store = SchemaStore(REPO / "schemas")
    return SingleObjectCodec(store, store.add_definition(SCHEMA, SCHEMA_NAME))


def _records(pipeline, n, seed=3):
    events, _ = fraud.generate(n, seed=seed, start_ms=NOW - 2000, accounts=300)
    return [InputRecord(pipeline.input_codec.encode(e), e["account_id"].encode(), "in", i % 3, i, NOW, [])
            for i, e in enumerate(events)]


def test_a_shadow_leaves_the_primary_untouched_and_pairs_every_prediction(models):
    primary, alone = _pipeline(models, "1.0.0"), _pipeline(models, "1.0.0")
    trial = Trial(_pipeline(models, "1.1.0"), SHADOW, shadow_topic="p.shadow", shadow_codec=_codec(),
                  worker_id="w1", primary_version="1.0.0")
    trial.attach(primary)
    records = _records(primary, 300)
    expected = alone.process(records, NOW)
    result = trial.process(primary, records, NOW)

    mine = [o for o in result.outputs if o.topic != "p.shadow"]
    assert [(o.topic, o.key, o.value) for o in mine] == [(o.topic, o.key, o.value) for o in expected.outputs]
    shadow = [_codec().decode(o.value)[0] for o in result.outputs if o.topic == "p.shadow"]
    assert len(shadow) == expected.predictions == result.predictions
    candidate = _pipeline(models, "1.1.0").process(records, NOW)
    theirs = {o.prediction["event_id"]: o.prediction["score"] for o in candidate.outputs if o.prediction}
    for record in shadow:
        assert record["primary_version"] == "1.0.0" and record["candidate_version"] == "1.1.0"
        assert record["candidate_score"] == theirs[record["event_id"]]
    assert summarize(shadow, trial.shadow.edges) == {
        k: v for k, v in trial.shadow.summary().items() if not k.startswith("extra_")}
    summary = trial.shadow.summary()
    assert summary["pairs"] == 300 and 0.5 < summary["label_agreement"] <= 1.0
    assert summary["extra_ms_per_batch"] > 0


def test_a_shadow_records_what_the_candidate_could_not_score(models):
    primary = _pipeline(models, "1.0.0")
    trial = Trial(_pipeline(models, "1.2.0-failing"), SHADOW, shadow_topic="p.shadow", shadow_codec=_codec())
    trial.attach(primary)
    result = trial.process(primary, _records(primary, 50), NOW)
    shadow = [_codec().decode(o.value)[0] for o in result.outputs if o.topic == "p.shadow"]
    assert len(shadow) == 50 and {r["candidate_error"] for r in shadow} == {"inference_error"}
    assert trial.shadow.summary()["candidate_failures"] == 50 and result.predictions == 50


def test_canary_keys_are_stable_and_about_the_fraction():
    keys = [f"acct-{i}".encode() for i in range(20_000)]
    chosen = [in_canary(k, 0.2, "1.1.0") for k in keys]
    assert 0.18 < sum(chosen) / len(keys) < 0.22
    assert chosen == [in_canary(k, 0.2, "1.1.0") for k in keys]  # the same key, the same side
    assert not in_canary(None, 1.0, "1.1.0") and not any(in_canary(k, 0.0, "1.1.0") for k in keys[:100])
    assert chosen != [in_canary(k, 0.2, "1.2.0") for k in keys]  # another candidate, other keys


def test_a_canary_splits_by_key_and_flags_the_candidates_predictions(models):
    primary = _pipeline(models, "1.0.0")
    trial = Trial(_pipeline(models, "1.1.0"), CANARY, fraction=0.2)
    trial.attach(primary)
    records = _records(primary, 600)
    result = trial.process(primary, records, NOW)
    assert result.predictions == 600 and len(result.outputs) == 600
    by_version: dict[str, set[str]] = {}
    for o in result.outputs:
        p = primary.prediction_codec.decode(o.value)[0]
        assert (CANARY_FLAG in p["flags"]) == (p["model_version"] == "1.1.0")
        by_version.setdefault(p["model_version"], set()).add(p["key"])
    assert not by_version["1.0.0"] & by_version["1.1.0"]  # no key scored by both
    candidates = sum(1 for o in result.outputs if CANARY_FLAG in primary.prediction_codec.decode(o.value)[0]["flags"])
    assert result.other_versions == Counter({"1.1.0": candidates})  # counted under the candidate's version
    assert 0.1 < len(by_version["1.1.0"]) / (len(by_version["1.0.0"]) + len(by_version["1.1.0"])) < 0.3
    assert trial.decision() is None  # 1.1.0 is healthy (and min_events not reached for p99 either)


@pytest.mark.parametrize(("version", "guard"), [("1.2.0-failing", "error_rate"), ("1.2.0-shifted", "score_psi")])
def test_the_guards_roll_a_bad_canary_back_within_the_bound(models, version, guard):
    primary = _pipeline(models, "1.0.0")
    guards = Guards(min_events=100)
    trial = Trial(_pipeline(models, version), CANARY, fraction=0.3, guards=guards)
    trial.attach(primary)
    seen = Counter()
    for batch in range(20):
        result = trial.process(primary, _records(primary, 100, seed=batch), NOW)
        seen["outputs"] += len(result.outputs)
        if trial.decision() is not None:
            break
    decision = trial.decision()
    assert decision is not None and decision.action == "rollback" and decision.guard == guard
    assert trial.candidate_side.events <= guards.min_events + 100  # min_events + one batch
    assert seen["outputs"] == (batch + 1) * 100  # every event accounted for


def test_a_healthy_canary_is_promoted_after_its_soak(models):
    primary = _pipeline(models, "1.0.0")
    trial = Trial(_pipeline(models, "1.1.0"), CANARY, fraction=0.5, guards=Guards(min_events=50, soak_s=0.01))
    trial.attach(primary)
    trial.process(primary, _records(primary, 200), NOW)
    time.sleep(0.02)
    decision = trial.decision()
    assert decision is not None and (decision.action, decision.guard) == ("promote", "soak")


def test_a_candidate_that_raises_ends_the_canary_and_the_primary_scores_its_records(models, monkeypatch):
    primary, candidate = _pipeline(models, "1.0.0"), _pipeline(models, "1.1.0")
    trial = Trial(candidate, CANARY, fraction=0.5)
    trial.attach(primary)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the candidate's code path")

    monkeypatch.setattr(candidate, "process", broken)
    result = trial.process(primary, _records(primary, 100), NOW)
    assert result.predictions == 100
    assert {primary.prediction_codec.decode(o.value)[0]["model_version"] for o in result.outputs} == {"1.0.0"}
    assert not +result.other_versions  # all the primary's
    assert trial.decision().guard == "candidate_raised"


def test_unknown_guards_are_refused():
    with pytest.raises(ConfigError, match="unknown canary guard max_psi"):
        Guards.from_state({"max_psi": 0.1})
    assert Guards.from_state({"min_events": 50.0, "soak_s": 30}) == Guards(min_events=50, soak_s=30.0)


def test_score_bins_fall_back_to_tenths_for_a_classifier():
    from workers.core.shadow import score_edges

    assert np.allclose(score_edges(None, True), np.linspace(0.1, 0.9, 9))
    assert score_edges(None, False) is None


def _side(version, batches, seconds, predictions=10):
    from workers.core.canary import ModelSide
    from workers.core.pipeline import BatchResult

    side = ModelSide(version, None)
    for s in seconds[:batches]:
        side.add(10, BatchResult(outputs=[], predictions=predictions), s)
    return side


def test_the_p99_guard_ignores_first_batches_and_trips_on_a_slow_candidate():
    from workers.core.canary import WARMUP_BATCHES, judge

    guards = Guards(min_events=10, min_batches=5)
    primary = _side("1.0.0", 30, [0.01] * 30)
    cold_then_fast = _side("1.1.0", 10, [5.0] * WARMUP_BATCHES + [0.005] * 8)
    assert judge(guards, primary, cold_then_fast, 1.0) is None
    slow = _side("1.1.0", 10, [0.05] * 10)
    decision = judge(guards, primary, slow, 1.0)
    assert decision is not None and decision.guard == "p99_batch_time" and decision.values["candidate_ms"] > 40


def test_the_quality_guard_compares_live_roc_auc_once_both_models_have_enough_labels():
    from workers.core.canary import judge

    guards = Guards(min_events=10, min_labels=100)
    primary, candidate = _side("1.0.0", 5, [0.01] * 5), _side("1.1.0", 5, [0.01] * 5)
    good = {"1.0.0": {"pairs": 150, "roc_auc": 0.90}, "1.1.0": {"pairs": 120, "roc_auc": 0.88}}
    assert judge(guards, primary, candidate, 1.0, good) is None
    worse = {"1.0.0": {"pairs": 150, "roc_auc": 0.90}, "1.1.0": {"pairs": 120, "roc_auc": 0.80}}
    decision = judge(guards, primary, candidate, 1.0, worse)
    assert (decision.guard, decision.values["candidate"], decision.values["labels"]) == ("roc_auc", 0.80, 120)
    too_few = {"1.0.0": {"pairs": 150, "roc_auc": 0.90}, "1.1.0": {"pairs": 99, "roc_auc": 0.50}}
    assert judge(guards, primary, candidate, 1.0, too_few) is None
    regressor = {"1.0.0": {"pairs": 150, "rmse": 2.0}, "1.1.0": {"pairs": 150, "rmse": 2.6}}
    assert judge(guards, primary, candidate, 1.0, regressor).guard == "rmse"


def test_the_p99_guard_compares_batches_of_the_same_size():
    from workers.core.canary import ModelSide, judge
    from workers.core.pipeline import BatchResult

    def side(version, sizes, cost):
        s = ModelSide(version, None)
        for n in sizes:
            s.add(n, BatchResult(outputs=[], predictions=n), cost(n))
        return s

    rng = np.random.default_rng(1)
    primary = side("1.0.0", rng.integers(100, 200, 60).tolist(), lambda n: 0.001 + 20e-6 * n)
    guards = Guards(min_events=10, min_batches=20)
    small = rng.integers(2, 12, 60).tolist()  # a 5% canary: tiny batches, same model cost
    assert judge(guards, primary, side("1.1.0", small, lambda n: 0.001 + 20e-6 * n), 1.0) is None
    slow = judge(guards, primary, side("1.1.0", small, lambda n: 5 * (0.001 + 20e-6 * n)), 1.0)
    assert slow is not None and slow.guard == "p99_batch_time" and 4.5 < slow.values["p99_ratio"] < 5.5
