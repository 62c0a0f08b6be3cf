"""Reference feature statistics, written into the manifest at training (drift compares against them)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workers.core.manifest import FeatureSpec

BINS = 10
EPSILON = 1e-4  # keeps PSI finite when a bin is empty on one side


def feature_profile(x: np.ndarray, features: Sequence[FeatureSpec]) -> dict[str, dict[str, Any]]:
    profile: dict[str, dict[str, Any]] = {}
    for i, spec in enumerate(features):
        column = x[:, i]
        entry: dict[str, Any] = {
            "mean": round(float(column.mean()), 6),
            "std": round(float(column.std()), 6),
            "min": float(column.min()),
            "max": float(column.max()),
        }
        if spec.kind == "numeric":
            edges = quantile_edges(column)
            entry["bin_edges"] = [round(float(e), 6) for e in edges]
            entry["bin_fractions"] = _fractions(np.searchsorted(edges, column, side="right"), len(edges) + 1)
        else:
            size = len(spec.categories) if spec.kind == "categorical" else 2
            entry["bin_fractions"] = _fractions(column.astype(int), size)
        profile[spec.name] = entry
    return profile


def quantile_edges(values: np.ndarray) -> np.ndarray:
    """Inner edges of decile bins (fewer when values repeat)."""
    return np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))


def score_profile(scores: np.ndarray, probabilities: bool = True) -> dict[str, Any]:
    """Probabilities in ten equal bins of [0, 1]; other scores (regression) in deciles."""
    edges = np.linspace(0, 1, BINS + 1)[1:-1] if probabilities else quantile_edges(scores)
    return {
        "bin_edges": [round(float(e), 6) for e in edges],
        "bin_fractions": _fractions(np.searchsorted(edges, scores, side="right"), len(edges) + 1),
        "mean": round(float(scores.mean()), 6),
    }


def _fractions(bin_index: np.ndarray, size: int) -> list[float]:
    counts = np.bincount(bin_index, minlength=size)[:size]
    return [round(float(c), 6) for c in counts / max(1, counts.sum())]
