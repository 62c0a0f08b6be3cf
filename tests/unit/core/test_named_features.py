"""A model fitted on a DataFrame (pandas, through ``as_frame=True``) is scored from plain arrays:
same scores, no warning per batch."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from workers.core.manifest import Manifest
from workers.core.named_features import quiet_about_names
from workers.core.scoring import Scorer


def _manifest(names, task: str) -> Manifest:
    return Manifest.from_dict({
        "name": "t", "version": "1", "task": task, "artifact": "m.joblib", "artifact_sha256": "0" * 64,
        "input_schema": "t.avsc", "prediction_schema": "prediction.v1.avsc", "key_field": "k",
        "features": [{"name": n} for n in names]})


def _scored_without_warnings(scorer: Scorer, rows: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores, failures = scorer.score(rows)
    assert [str(w.message) for w in caught] == []
    assert failures == {}
    return scores


def test_a_classifier_fitted_on_a_dataframe_scores_without_a_warning_and_the_same():
    data = load_breast_cancer(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(data.data, data.target)
    scorer = Scorer(_manifest(list(data.data.columns), "binary_classification"), model)
    assert scorer.path == "public"
    for _ in range(3):  # every batch, not only the first
        scores = _scored_without_warnings(scorer, data.data.to_numpy()[:50])
    np.testing.assert_array_equal(scores, model.predict_proba(data.data.iloc[:50])[:, 1])


def test_a_hist_gradient_boosting_model_fitted_on_a_dataframe_keeps_the_lean_path():
    data = load_diabetes(as_frame=True)
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(data.data, data.target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scorer = Scorer(_manifest(list(data.data.columns), "regression"), model)
    assert [str(w.message) for w in caught] == []
    assert scorer.path == "lean-hgb", scorer.path_reason
    scores = _scored_without_warnings(scorer, data.data.to_numpy())
    np.testing.assert_array_equal(scores, model.predict(data.data))


def test_only_the_unnamed_rows_warning_is_hidden():
    def predict(matrix):
        warnings.warn("X does not have valid feature names, but Model was fitted with feature names", UserWarning,
                      stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
        return matrix

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_about_names(predict)(np.ones((1, 1)))
    assert [str(w.message) for w in caught] == ["something else"]
