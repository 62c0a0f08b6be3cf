"""Labels joined to predictions with bounded state, and live quality per model version."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, precision_score, recall_score, roc_auc_score

from workers.core.quality import LabelJoin, Quality


def _p(event_id, at, score=0.5, version="1.0.0", label="legit"):
    return {"event_id": event_id, "scored_at": at, "score": score, "model_version": version, "label": label}


def test_a_label_joins_its_prediction_whichever_comes_first():
    join = LabelJoin(window_s=60)
    assert join.prediction(_p("a", 1000)) is None
    joined = join.label("a", "fraud", 2000)
    assert (joined.event_id, joined.truth, joined.model_version) == ("a", "fraud", "1.0.0")
    assert join.label("b", "legit", 2500) is None  # its prediction is read later
    assert join.prediction(_p("b", 2600)).truth == "legit"
    assert join.counts["joined"] == 2 and join.pending() == {"predictions": 0, "labels": 0}


def test_unknown_expired_and_duplicate_labels_are_counted_never_fatal():
    join = LabelJoin(window_s=10)
    join.prediction(_p("old", 0))
    join.label("never-predicted", "fraud", 1000)
    join.prediction(_p("a", 1000))
    join.label("a", "fraud", 1500)
    assert join.label("a", "legit", 1600) is None  # the first label wins
    join.prediction(_p("late", 20_000))  # stream time moves past both windows
    assert join.label("old", "fraud", 20_001) is None  # its prediction expired: held, then unknown
    assert join.counts == {"joined": 1, "duplicate_labels": 1, "expired_predictions": 1, "unknown_labels": 1}
    assert join.pending() == {"predictions": 1, "labels": 1}


def test_the_state_is_bounded_oldest_first():
    join = LabelJoin(window_s=1e9, max_pending=100)
    for i in range(250):
        join.prediction(_p(f"e{i}", i))
    assert join.pending()["predictions"] == 100 and join.counts["expired_predictions"] == 150
    assert join.label("e0", "fraud", 300) is None and join.label("e249", "fraud", 300) is not None


def test_live_quality_equals_the_offline_metrics_on_the_same_pairs():
    rng = np.random.default_rng(4)
    truth = rng.random(3000) < 0.1
    scores = np.clip(truth * 0.35 + rng.random(3000) * 0.6, 0, 1)
    predicted = np.where(scores >= 0.5, "fraud", "legit")
    join, quality = LabelJoin(), Quality(True, "fraud")
    for i in range(3000):
        join.prediction(_p(f"e{i}", i, float(scores[i]), "1.1.0" if i % 2 else "1.0.0", str(predicted[i])))
    for i in range(3000):
        quality.add(join.label(f"e{i}", "fraud" if truth[i] else "legit", 5000 + i))
    report = quality.report()
    for version, rows in (("1.0.0", slice(0, None, 2)), ("1.1.0", slice(1, None, 2))):
        y, s, flagged = truth[rows], scores[rows], predicted[rows] == "fraud"
        figures = report[version]
        assert figures["pairs"] == 1500
        assert figures["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert figures["precision"] == pytest.approx(precision_score(y, flagged))
        assert figures["recall"] == pytest.approx(recall_score(y, flagged))
        assert figures["brier"] == pytest.approx(brier_score_loss(y, s))
        assert len(figures["calibration"]) == 10 and sum(c["pairs"] for c in figures["calibration"]) == 1500


def test_a_regressor_gets_mae_and_rmse():
    join, quality = LabelJoin(), Quality(False)
    for i, (score, value) in enumerate([(1.0, 2.0), (3.0, 3.0), (5.0, 2.0)]):
        join.prediction(_p(f"e{i}", i, score, label=None))
        quality.add(join.label(f"e{i}", value, 10 + i))
    assert quality.report()["1.0.0"] == {"pairs": 3, "mae": pytest.approx(4 / 3),
                                         "rmse": pytest.approx(np.sqrt(10 / 3))}


def test_a_label_time_far_ahead_is_not_trusted_to_move_stream_time():
    join = LabelJoin(window_s=10)
    join.prediction(_p("a", 1000))
    join.prediction(_p("b", 1000))
    assert join.label("a", "fraud", 1000 * 1_000_000) is not None  # microseconds by mistake
    assert join.counts["future_label_times"] == 1 and join.stream_ms == 1000
    assert join.label("b", "legit", 2000) is not None  # b did not expire
