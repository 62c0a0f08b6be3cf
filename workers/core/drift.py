"""Input drift: live feature (and score) distributions against the manifest's reference.

A sliding window of the last ``window`` events is kept as per-bin counts (a ring of
per-batch count arrays), so an update costs one ``searchsorted``/``bincount`` per
feature per batch, not per event. PSI > threshold (0.2 is the usual "shifted") raises.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from workers.core.manifest import Manifest, ReferenceProfile
from workers.core.profile import EPSILON


@dataclass
class _Binning:
    name: str
    edges: np.ndarray | None  # None: the value is already a bin index (categorical/boolean code)
    reference: np.ndarray

    def counts(self, column: np.ndarray) -> np.ndarray:
        size = len(self.reference)
        index = np.searchsorted(self.edges, column, side="right") if self.edges is not None else column.astype(int)
        return np.bincount(np.clip(index, 0, size - 1), minlength=size)[:size]


def psi(reference: np.ndarray, counts: np.ndarray) -> float:
    """Population stability index of ``counts`` against the ``reference`` fractions of the same bins."""
    total = counts.sum()
    if not total:
        return 0.0
    actual = np.clip(counts / total, EPSILON, None)
    ref = np.clip(reference, EPSILON, None)
    return float(np.sum((actual - ref) * np.log(actual / ref)))


class DriftMonitor:
    def __init__(self, manifest: Manifest, window: int = 5000, threshold: float = 0.2) -> None:
        profile = manifest.reference_profile or ReferenceProfile()
        self.threshold = threshold
        self.window = window
        self.features: list[tuple[int, _Binning]] = []
        for i, spec in enumerate(manifest.features):
            ref = profile.features.get(spec.name)
            if ref is None:
                continue
            edges = np.asarray(ref.bin_edges, dtype=float) if ref.bin_edges is not None else None
            self.features.append((i, _Binning(spec.name, edges, np.asarray(ref.bin_fractions, dtype=float))))
        score = profile.score
        self.score = (_Binning("score", np.asarray(score.bin_edges, dtype=float),
                               np.asarray(score.bin_fractions, dtype=float)) if score else None)
        self._batches: deque[tuple[int, list[np.ndarray], np.ndarray | None]] = deque()
        self._events = 0
        self._totals = [np.zeros(len(b.reference), dtype=np.int64) for _, b in self.features]
        self._score_total = np.zeros(len(self.score.reference), dtype=np.int64) if self.score else None
        self.drifted: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.features)

    def update(self, matrix: np.ndarray, scores: np.ndarray | None) -> None:
        if not len(matrix) or not self.enabled:
            return
        counts = [b.counts(matrix[:, i]) for i, b in self.features]
        score_counts = self.score.counts(scores) if self.score is not None and scores is not None else None
        self._batches.append((len(matrix), counts, score_counts))
        self._events += len(matrix)
        for total, c in zip(self._totals, counts, strict=True):
            total += c
        if score_counts is not None and self._score_total is not None:
            self._score_total += score_counts
        while self._events - self._batches[0][0] >= self.window and len(self._batches) > 1:
            n, old, old_score = self._batches.popleft()
            self._events -= n
            for total, c in zip(self._totals, old, strict=True):
                total -= c
            if old_score is not None and self._score_total is not None:
                self._score_total -= old_score

    def psi(self) -> dict[str, float]:
        """PSI per feature (and ``score``) over the current window."""
        values = {b.name: psi(b.reference, total) for (_, b), total in zip(self.features, self._totals, strict=True)}
        if self.score is not None and self._score_total is not None:
            values["score"] = psi(self.score.reference, self._score_total)
        return values

    def changes(self, psi: dict[str, float]) -> tuple[set[str], set[str]]:
        """(newly drifted, newly recovered) given this window's ``psi()``; nothing until the window is full."""
        if self._events < self.window:
            return set(), set()
        now = {name for name, value in psi.items() if value > self.threshold}
        started, ended = now - self.drifted, self.drifted - now
        self.drifted = now
        return started, ended

    @property
    def window_events(self) -> int:
        return self._events
