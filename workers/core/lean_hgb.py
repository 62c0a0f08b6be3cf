"""HistGradientBoosting scoring without scikit-learn's per-call overhead, verified bit-for-bit.

On a micro-batch of ~40 rows the reference model's ``predict_proba`` costs ~1.8 ms: ~0.8 ms
in the ColumnTransformer + OrdinalEncoder that re-encode the categorical columns, ~0.2 ms of
checks, ~0.75 ms in the 120 trees (~0.3 ms of it one call per tree). A worker pays that on
every batch, whatever its size. The lean path encodes categories with one ``searchsorted``
per categorical column and walks all trees in one compiled call (``tree_kernel``), adding
the same values in the same order into the same array: ~0.15 ms for the same call, and the
same bits. Where the kernel cannot compile, it calls the trees' own Cython predictor one
tree at a time (~0.55 ms), as it does for large batches when the model may use threads.

It reads scikit-learn internals (``_preprocessor``, ``_predictors``, ``_loss``), so it is
checked, not trusted: ``build`` compares it with the public method on a probe that crosses
every split threshold and holds every known category, unknown categories and NaN, and
returns nothing unless the two agree exactly. The scorer then keeps the public method.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from workers.core.named_features import quiet_about_names

Predict = Callable[[np.ndarray], np.ndarray]

PROBE_ROWS = 2048
PARALLEL_MIN_ROWS = 2000  # with model_threads > 1, batches this large use the predictor's threads


def build(model: Any, classification: bool) -> tuple[Predict | None, str]:
    """A verified drop-in for ``predict_proba`` (classification) or ``predict``, or why not."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        return None, f"scikit-learn unavailable: {exc}"
    expected = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
    if type(model) is not expected:  # subclasses may override prediction
        return None, f"not a {expected.__name__}"
    try:
        lean = _Lean(model, classification)
        probe = probe_matrix(model, PROBE_ROWS, seed=0)
        public = quiet_about_names(model.predict_proba if classification else model.predict)(probe)
        tree_by_tree = lean.tree_by_tree(probe)
    except Exception as exc:  # internals moved in this scikit-learn version: use the public path
        return None, f"lean path unavailable: {exc!r}"
    if not _same(tree_by_tree, public):
        return None, "lean path differs from the public method on the probe"
    forest = lean.use_forest(probe, public)
    return lean.predict, "verified on the probe" + ("" if forest is None else f" ({forest})")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


class _Lean:
    """The model's own transform and trees, without the estimator's per-call checks."""

    def __init__(self, model: Any, classification: bool) -> None:
        from sklearn.ensemble._hist_gradient_boosting._predictor import _predict_from_raw_data

        self._predict_tree = _predict_from_raw_data
        self._encode = _encoder(model)
        self._known_cat_bitsets, self._f_idx_map = model._bin_mapper.make_known_categories_bitsets()
        # (column of the raw predictions, tree) in the order _predict_iterations adds them
        self._trees = [(k, tree) for iteration in model._predictors for k, tree in enumerate(iteration)]
        self._predictors = model._predictors
        self._baseline = model._baseline_prediction
        self._loss = model._loss
        self._classification = classification
        self._forest: Any = None

    def use_forest(self, probe: np.ndarray, public: np.ndarray) -> str | None:
        """Score with one compiled call for all trees when it gives the same raw sums as the
        trees' own predictor and the public bits; else why not."""
        try:
            from workers.core.tree_kernel import Forest

            forest = Forest(self._predictors, self._known_cat_bitsets, self._f_idx_map)
            x = self._encode(probe)
            raw = self._forest_raw(forest, x)
        except Exception as exc:  # numba missing or unable to compile here: tree by tree is as exact
            return f"trees one call each: {type(exc).__name__}: {exc}"
        if not _same(raw, self._tree_by_tree_raw(x, 1)) or not _same(self._finish(raw), public):
            return "trees one call each: the compiled walk differs on the probe"
        self._forest = forest
        return None

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        n_threads = _openmp_effective_n_threads()  # honours the worker's threadpool limit
        if self._forest is not None and (n_threads == 1 or matrix.shape[0] < PARALLEL_MIN_ROWS):
            return self._finish(self._forest_raw(self._forest, self._encode(matrix)))
        return self.tree_by_tree(matrix, n_threads)

    def tree_by_tree(self, matrix: np.ndarray, n_threads: int = 1) -> np.ndarray:
        """scikit-learn's Cython predictor per tree (its threads split the rows)."""
        return self._finish(self._tree_by_tree_raw(self._encode(matrix), n_threads))

    def _forest_raw(self, forest: Any, x: np.ndarray) -> np.ndarray:
        raw = self._raw(x.shape[0])
        forest.add_to(x, raw)
        return raw

    def _tree_by_tree_raw(self, x: np.ndarray, n_threads: int) -> np.ndarray:
        raw = self._raw(x.shape[0])
        out = np.empty(x.shape[0], dtype=raw.dtype)
        for k, tree in self._trees:
            self._predict_tree(tree.nodes, x, tree.raw_left_cat_bitsets, self._known_cat_bitsets, self._f_idx_map,
                               n_threads, out)
            raw[:, k] += out
        return raw

    def _raw(self, rows: int) -> np.ndarray:
        # Fortran order as scikit-learn's _raw_predict: the softmax of 8+ classes sums each row
        # in an order that depends on the layout, and the bits must be the public method's
        raw = np.zeros((rows, self._baseline.shape[-1]), dtype=self._baseline.dtype, order="F")
        raw += self._baseline
        return raw

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        if self._classification:
            return self._loss.predict_proba(raw)
        return self._loss.link.inverse(raw.ravel())


def _encoder(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The model's own input transform: categorical columns first, as ordinal codes, then the rest."""
    n_features = model.n_features_in_
    preprocessor = model._preprocessor
    if preprocessor is None:  # no categorical features: sklearn only checks dtype and width
        def as_float(matrix: np.ndarray) -> np.ndarray:
            _check_width(matrix, n_features)
            return np.asarray(matrix, dtype=np.float64)
        return as_float

    encoder = preprocessor.named_transformers_["encoder"]
    if encoder.handle_unknown != "use_encoded_value" or not (
        np.isnan(encoder.unknown_value) and np.isnan(encoder.encoded_missing_value)
    ):
        raise ValueError("unexpected OrdinalEncoder settings")
    categorical = np.flatnonzero(model.is_categorical_)
    numeric = np.flatnonzero(~model.is_categorical_)
    if not np.array_equal(np.flatnonzero(model._is_categorical_remapped), np.arange(len(categorical))):
        raise ValueError("categorical columns are not first after the preprocessor")
    categories = [np.asarray(c, dtype=np.float64) for c in encoder.categories_]  # sorted, NaN last

    def encode(matrix: np.ndarray) -> np.ndarray:
        _check_width(matrix, n_features)
        matrix = np.asarray(matrix, dtype=np.float64)
        out = np.empty(matrix.shape, dtype=np.float64)
        for j, (column, known) in enumerate(zip(categorical, categories, strict=True)):
            values = matrix[:, column]
            position = np.minimum(np.searchsorted(known, values), len(known) - 1)
            # unknown and missing values both encode as NaN (the encoder's settings above)
            out[:, j] = np.where(known[position] == values, position, np.nan)
        out[:, len(categorical):] = matrix[:, numeric]
        return out

    return encode


def _check_width(matrix: np.ndarray, n_features: int) -> None:
    if matrix.ndim != 2 or matrix.shape[1] != n_features:
        raise ValueError(f"expected a 2-d matrix with {n_features} features, got shape {matrix.shape}")


def probe_matrix(model: Any, rows: int, seed: int) -> np.ndarray:
    """Rows whose values sit on and just above every split threshold, on every known category,
    on unknown categories and on NaN, mixed at random."""
    rng = np.random.default_rng(seed)
    n_features = model.n_features_in_
    categorical = np.zeros(n_features, dtype=bool) if model.is_categorical_ is None else model.is_categorical_
    # tree nodes index the preprocessed columns: categorical ones first
    original = np.concatenate([np.flatnonzero(categorical), np.flatnonzero(~categorical)])
    thresholds: list[list[float]] = [[] for _ in range(n_features)]
    for iteration in model._predictors:
        for tree in iteration:
            splits = tree.nodes[~tree.nodes["is_leaf"].astype(bool) & ~tree.nodes["is_categorical"].astype(bool)]
            for feature, threshold in zip(splits["feature_idx"], splits["num_threshold"], strict=True):
                thresholds[original[feature]].append(float(threshold))
    known = iter(model._preprocessor.named_transformers_["encoder"].categories_) if categorical.any() else iter(())
    columns = []
    for j in range(n_features):
        if categorical[j]:
            cats = np.asarray(next(known), dtype=np.float64)
            finite = cats[np.isfinite(cats)]
            top = finite.max() if len(finite) else 0.0
            candidates = np.concatenate([cats, [-1.0, 0.5, top + 1.0, np.nan]])
        else:
            t = np.unique(np.asarray(thresholds[j] or [0.0]))
            candidates = np.concatenate([t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), [np.nan]])
        columns.append(rng.choice(candidates, rows))
    return np.column_stack(columns)
