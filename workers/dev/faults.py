"""Models for fault drills: wrap a real model and make it fail or slow down on purpose.

Lives in the package (not in tests/) because a worker process must be able to unpickle it.
A dev tool: only the drills and the tests build models with it.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np


class FaultyModel:
    """Delegates to ``base``; raises on any batch holding a row whose column ``column`` is in
    ``poison_values``, and sleeps ``delay_s`` per call (a slow model)."""

    def __init__(self, base: Any, column: int, poison_values: set[float], delay_s: float = 0.0) -> None:
        self.base = base
        self.column = column
        self.poison_values = np.array(sorted(poison_values), dtype=np.float64)
        self.delay_s = delay_s
        self.classes_ = getattr(base, "classes_", None)
        self.n_features_in_ = getattr(base, "n_features_in_", None)

    def _check(self, x: np.ndarray) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if np.isin(x[:, self.column], self.poison_values).any():
            raise ValueError("poisoned row")

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        return self.base.predict_proba(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        return self.base.predict(x)
