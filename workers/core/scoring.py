"""Micro-batch scoring: one vectorized call per batch, failing rows isolated by bisection.

A ``predict_proba`` call costs a fixed ~0.35-1.1 ms whatever the rows (docs/design.md), so a
batch is scored in one call. If the call raises, the batch is split in halves until the
failing rows are found: k bad rows in n cost O(k log n) calls, and the good rows are
still scored. The search is bounded (``max_calls`` per batch): a model that fails on every
row would otherwise take 2n-1 calls and hold the event loop (and the consumer's
heartbeats) for as long; rows still unresolved when the budget runs out are failures too.

HistGradientBoosting models are scored by a lean path (``lean_hgb``) that gives the same
bits at a third of the fixed cost per call; ``lean=False`` or any other model keeps the
model's public method. A model fitted on a DataFrame is given plain arrays in the columns
it was fitted on, without scikit-learn's warning about their missing names
(``named_features``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sklearn

from workers.core import lean_hgb
from workers.core.manifest import Manifest
from workers.core.named_features import fitted_with_names, quiet_about_names
from workers.errors import ModelMismatchError


class UnisolatedFailure(Exception):
    """The model failed on a sub-batch that the bounded search did not split any further."""


class Scorer:
    def __init__(self, manifest: Manifest, model: Any, *, lean: bool = True, max_calls: int = 160) -> None:
        self.max_calls = max_calls
        self.calls = 0  # model calls of the last score(), for tests and benchmarks
        self._classification = manifest.is_classifier
        self._predict = model.predict_proba if self._classification else model.predict
        self.path = "public"  # which method scores: "public" or "lean-hgb"
        self.path_reason = "lean scoring off" if not lean else ""
        if lean:
            fast, self.path_reason = lean_hgb.build(model, self._classification)
            if fast is not None:
                self._predict, self.path = fast, "lean-hgb"
        if self.path == "public" and fitted_with_names(model):
            self._predict = quiet_about_names(self._predict)  # the registry checked the column order
        self._positive_column = positive_column(manifest, model) if self._classification else 0

    def _score(self, matrix: np.ndarray) -> np.ndarray:
        # assume_finite: the feature builder already rejected NaN/inf, skip sklearn's re-check.
        with sklearn.config_context(assume_finite=True):
            scores = self._predict(matrix)
        if self._classification:
            scores = scores[:, self._positive_column]
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape[0] != matrix.shape[0]:
            raise ValueError(f"model returned {scores.shape[0]} scores for {matrix.shape[0]} rows")
        return scores

    def score(self, matrix: np.ndarray) -> tuple[np.ndarray, dict[int, BaseException]]:
        """Scores for every row, and the rows (by index) that could not be scored."""
        failures: dict[int, BaseException] = {}
        scores = np.full(matrix.shape[0], np.nan)
        if matrix.shape[0]:
            self._score_ranges(matrix, scores, failures)
        bad = ~np.isfinite(scores)
        for i in np.flatnonzero(bad):
            failures.setdefault(int(i), ValueError("model returned a non-finite score"))
        return scores, failures

    def _score_ranges(self, matrix: np.ndarray, scores: np.ndarray, failures: dict[int, BaseException]) -> None:
        """Score the whole batch; on failure, bisect (left to right) within the call budget."""
        pending: list[tuple[int, int, BaseException | None]] = [(0, matrix.shape[0], None)]
        self.calls = 0
        while pending:
            start, stop, parent_error = pending.pop()
            if self.calls >= self.max_calls:
                error = UnisolatedFailure(
                    f"the model failed on a sub-batch of {stop - start} rows, not split further "
                    f"(at most {self.max_calls} calls per batch): {parent_error!r}")
                for i in range(start, stop):
                    failures[i] = error
                continue
            self.calls += 1
            try:
                scores[start:stop] = self._score(matrix[start:stop])
            except Exception as exc:  # the model's errors are data, not crashes
                if stop - start == 1:
                    failures[start] = exc
                    continue
                middle = (start + stop) // 2
                pending.append((middle, stop, exc))  # popped second: the left half goes first
                pending.append((start, middle, exc))


def positive_column(manifest: Manifest, model: Any) -> int:
    """The ``predict_proba`` column of the manifest's ``positive_class`` (default: the second class)."""
    classes = getattr(model, "classes_", None)
    if manifest.positive_class is None or classes is None:
        return 1
    for i, value in enumerate(classes):
        if str(value) == str(manifest.positive_class):  # numpy scalars and JSON values compare as text
            return i
    raise ModelMismatchError(
        f"positive_class {manifest.positive_class!r} is not one of the model's classes "
        f"{[c.item() if hasattr(c, 'item') else c for c in classes]}; name the class value, not a label")
