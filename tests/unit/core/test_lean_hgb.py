"""The lean HistGradientBoosting path gives the public method's exact bits, or stands aside."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from workers.core import lean_hgb
from workers.core.scoring import Scorer


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.integers(0, 5, n), rng.uniform(0, 100, n), rng.integers(0, 3, n)])
    x[rng.random(n) < 0.05, 0] = np.nan  # missing values seen in fit
    y = (np.nan_to_num(x[:, 0]) + (x[:, 1] == 2) + 0.02 * x[:, 2] + rng.normal(0, 0.5, n) > 1.2).astype(int)
    return x, y


@pytest.fixture(scope="module")
def fitted() -> dict[str, object]:
    x, y = _data(3000, 1)
    return {
        "binary": HistGradientBoostingClassifier(max_iter=30, categorical_features=[1, 3], random_state=0).fit(x, y),
        "multiclass": HistGradientBoostingClassifier(max_iter=20, categorical_features=[1], random_state=0)
        .fit(x, (y + (x[:, 3] == 1)).astype(int)),
        "regression": HistGradientBoostingRegressor(max_iter=25, random_state=0).fit(x, x[:, 2] * y),
    }


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_lean_path_is_bit_identical_to_the_public_method(fitted, kind):
    model = fitted[kind]
    classification = kind != "regression"
    predict, reason = lean_hgb.build(model, classification)
    assert predict is not None, reason
    x, _ = _data(1000, 2)
    x[::7, 1] = 9.0  # a category never seen in fit
    x[::11, 3] = np.nan
    public = model.predict_proba(x) if classification else model.predict(x)
    np.testing.assert_array_equal(predict(x), public)


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=False, width=32),
                               st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.0, -1.0, 7.0, 0.5, np.nan]),
                               st.floats(-10, 200), st.sampled_from([0.0, 1.0, 2.0, 5.0, np.nan])),
                     min_size=1, max_size=40))
def test_any_batch_scores_the_same(fitted, rows):
    model = fitted["binary"]
    predict, _ = lean_hgb.build(model, True)
    x = np.array(rows, dtype=np.float64)
    np.testing.assert_array_equal(predict(x), model.predict_proba(x))


def test_the_reference_model_is_scored_by_the_lean_path(fraud_pipeline):
    assert fraud_pipeline.scorer.path == "lean-hgb", fraud_pipeline.scorer.path_reason
    public = Scorer(fraud_pipeline.manifest, fraud_pipeline.model.model, lean=False)
    assert public.path == "public"
    probe = lean_hgb.probe_matrix(fraud_pipeline.model.model, 500, seed=3)
    lean_scores, lean_failures = fraud_pipeline.scorer.score(probe)
    public_scores, public_failures = public.score(probe)
    assert lean_failures == public_failures == {}
    np.testing.assert_array_equal(lean_scores, public_scores)


def test_a_wrong_width_raises_like_the_public_method(fitted):
    predict, _ = lean_hgb.build(fitted["binary"], True)
    with pytest.raises(ValueError, match="4 features"):
        predict(np.ones((3, 5)))


def test_a_lean_path_that_differs_is_refused(fitted, monkeypatch):
    real = lean_hgb._encoder

    def shifted(model):
        encode = real(model)
        return lambda matrix: encode(matrix)[:, ::-1].copy()  # columns in the wrong order

    monkeypatch.setattr(lean_hgb, "_encoder", shifted)
    predict, reason = lean_hgb.build(fitted["binary"], True)
    assert predict is None
    assert "differs" in reason


def test_missing_internals_fall_back_to_the_public_method(fitted):
    import copy

    model = copy.deepcopy(fitted["binary"])
    del model._predictors  # as if a scikit-learn release renamed it
    predict, reason = lean_hgb.build(model, True)
    assert predict is None
    assert "unavailable" in reason


def test_other_models_keep_the_public_method(fitted):
    class Tweaked(HistGradientBoostingClassifier):
        pass

    assert lean_hgb.build(Tweaked(), True)[0] is None
    assert lean_hgb.build(fitted["regression"], True)[0] is None  # a regressor is not a classifier
    from sklearn.linear_model import LogisticRegression

    assert lean_hgb.build(LogisticRegression(), True)[0] is None


def test_the_probe_crosses_every_numeric_threshold(fitted):
    model = fitted["binary"]
    probe = lean_hgb.probe_matrix(model, 4000, seed=0)
    tree = model._predictors[0][0]
    splits = tree.nodes[~tree.nodes["is_leaf"].astype(bool) & ~tree.nodes["is_categorical"].astype(bool)]
    original = np.concatenate([np.flatnonzero(model.is_categorical_), np.flatnonzero(~model.is_categorical_)])
    for feature, threshold in zip(splits["feature_idx"], splits["num_threshold"], strict=True):
        column = probe[:, original[feature]]
        assert (column == threshold).any() and (column > threshold).any() and (column < threshold).any()


def test_all_trees_are_walked_in_one_compiled_call(fitted):
    predict, reason = lean_hgb.build(fitted["multiclass"], True)
    assert predict is not None and reason == "verified on the probe", reason
    assert predict.__self__._forest is not None


def test_without_the_compiled_walk_the_trees_are_called_one_by_one(fitted, monkeypatch):
    from workers.core import tree_kernel

    def unavailable():
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(tree_kernel, "compile_kernel", unavailable)
    model = fitted["binary"]
    predict, reason = lean_hgb.build(model, True)
    assert predict is not None and "trees one call each: ImportError" in reason
    x, _ = _data(300, 4)
    np.testing.assert_array_equal(predict(x), model.predict_proba(x))


def test_large_batches_with_model_threads_use_the_threaded_predictor(fitted, monkeypatch):
    from sklearn.utils import _openmp_helpers

    model = fitted["regression"]
    predict, _ = lean_hgb.build(model, False)
    lean, calls = predict.__self__, []
    per_tree = lean.tree_by_tree
    lean.tree_by_tree = lambda matrix, n_threads=1: calls.append(n_threads) or per_tree(matrix, n_threads)
    monkeypatch.setattr(_openmp_helpers, "_openmp_effective_n_threads", lambda: 2)  # model_threads 2
    x, _ = _data(lean_hgb.PARALLEL_MIN_ROWS + 100, 5)
    np.testing.assert_array_equal(predict(x), model.predict(x))
    predict(x[:50])  # a small batch: the compiled walk
    assert calls == [2]


def test_many_classes_keep_the_lean_path_and_the_public_bits():
    # a softmax over 8+ classes sums rows in an order that depends on the array's layout
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(size=3000), rng.integers(0, 6, 3000), rng.uniform(0, 10, 3000)])
    y = (np.floor(x[:, 2]) + x[:, 1]).astype(int) % 11
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[1], random_state=0).fit(x, y)
    assert len(model.classes_) == 11
    predict, reason = lean_hgb.build(model, True)
    assert predict is not None and reason == "verified on the probe", reason
    np.testing.assert_array_equal(predict(x[:500]), model.predict_proba(x[:500]))


def test_without_a_writable_cache_the_walk_is_compiled_at_start(fitted, monkeypatch):
    import numba

    from workers.core import tree_kernel

    real = numba.njit

    def no_locator(**options):
        if options.get("cache"):  # what numba raises when no cache directory is writable
            raise RuntimeError("cannot cache function '_walk_all_trees': no locator available")
        return real(**options)

    monkeypatch.setattr(numba, "njit", no_locator)
    monkeypatch.setattr(tree_kernel, "_compiled", [])  # not the dispatcher compiled by earlier tests
    predict, reason = lean_hgb.build(fitted["binary"], True)
    assert predict is not None and reason == "verified on the probe", reason
