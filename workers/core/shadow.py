"""Shadow scoring: a candidate model scores the same events as the primary, on the side. Pure.

Each event the primary scored gets one record on ``<pipeline>.shadow`` (``SCHEMA``): both
versions, both scores and labels, or why the candidate could not score it. Nothing of the
candidate reaches the predictions topic. ``ShadowStats`` keeps what the status page and the
metrics show: how often the labels agree, quantiles of |candidate - primary| over the last
``DIFF_WINDOW`` pairs, the PSI between the two score distributions and the candidate's extra
cost per batch. Anyone can recompute them from the shadow topic (``summarize``).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from workers.core.drift import psi

SCHEMA_NAME = "shadow.v1 (built in)"
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ShadowScore",
    "namespace": "io.workers.shadow",
    "doc": "A candidate model's score of an event next to the primary's (<pipeline>.shadow); never a prediction.",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "key", "type": ["null", "string"], "default": None},
        {"name": "primary_version", "type": "string"},
        {"name": "primary_score", "type": "double"},
        {"name": "primary_label", "type": ["null", "string"], "default": None},
        {"name": "candidate_version", "type": "string"},
        {"name": "candidate_score", "type": ["null", "double"], "default": None,
         "doc": "null when the candidate could not score the event (candidate_error says why)"},
        {"name": "candidate_label", "type": ["null", "string"], "default": None},
        {"name": "candidate_error", "type": ["null", "string"], "default": None,
         "doc": "the dead-letter reason the candidate would have given (e.g. inference_error)"},
        {"name": "source_topic", "type": "string"},
        {"name": "source_partition", "type": "int"},
        {"name": "source_offset", "type": "long"},
        {"name": "scored_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "worker_id", "type": "string"},
    ],
}
DIFF_WINDOW = 100_000  # score differences kept for the quantiles
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "max": 1.0}


def score_edges(reference_edges: Iterable[float] | None, is_classifier: bool) -> np.ndarray | None:
    """Where scores are binned for the PSI between the two models: the primary's reference score
    bins (its manifest), else tenths of [0, 1] for a classifier; None: no PSI (a regressor without
    a reference profile has no natural bins)."""
    if reference_edges is not None:
        return np.asarray(list(reference_edges), dtype=float)
    return np.linspace(0.0, 1.0, 11)[1:-1] if is_classifier else None


def bin_counts(edges: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(edges) + 1)


def score_psi(edges: np.ndarray | None, primary: np.ndarray, candidate: np.ndarray) -> float | None:
    """PSI of the candidate's score counts against the primary's (same bins); None without bins or data."""
    if edges is None or not primary.sum() or not candidate.sum():
        return None
    return psi(primary / primary.sum(), candidate)


class ShadowStats:
    def __init__(self, edges: np.ndarray | None) -> None:
        self.edges = edges
        self.pairs = 0  # events both models scored
        self.label_agreements = 0
        self.candidate_failures = 0  # events the primary scored and the candidate could not
        self.batches = 0
        self.extra_s = 0.0  # the candidate's processing time, on top of the primary's
        self.events = 0  # events offered to the candidate
        self.diffs: deque[float] = deque(maxlen=DIFF_WINDOW)
        size = len(edges) + 1 if edges is not None else 0
        self.primary_counts = np.zeros(size, dtype=np.int64)
        self.candidate_counts = np.zeros(size, dtype=np.int64)

    def add(self, primary: np.ndarray, candidate: np.ndarray, agreements: int, failures: int, events: int,
            extra_s: float) -> None:
        """One batch: the scores of the pairs (same order), how many labels agreed, how many events
        the candidate failed, how many it was offered, and what it cost."""
        self.pairs += len(primary)
        self.label_agreements += agreements
        self.candidate_failures += failures
        self.batches += 1
        self.events += events
        self.extra_s += extra_s
        self.diffs.extend(np.abs(candidate - primary).tolist())
        if self.edges is not None and len(primary):
            self.primary_counts += bin_counts(self.edges, primary)
            self.candidate_counts += bin_counts(self.edges, candidate)

    def summary(self) -> dict[str, Any]:
        diffs = np.fromiter(self.diffs, dtype=float, count=len(self.diffs))
        return {
            "pairs": self.pairs,
            "label_agreements": self.label_agreements,
            "label_agreement": self.label_agreements / self.pairs if self.pairs else None,
            "candidate_failures": self.candidate_failures,
            "score_diff": {name: float(np.quantile(diffs, q)) for name, q in QUANTILES.items()} if len(diffs) else {},
            "score_psi": score_psi(self.edges, self.primary_counts, self.candidate_counts),
            "extra_ms_per_batch": 1000 * self.extra_s / self.batches if self.batches else None,
            "extra_us_per_event": 1e6 * self.extra_s / self.events if self.events else None,
        }


def summarize(records: Iterable[dict[str, Any]], edges: np.ndarray | None) -> dict[str, Any]:
    """The agreement figures recomputed from shadow records (as read from the topic): the same
    numbers ``ShadowStats.summary`` gives for them, cost aside."""
    stats = ShadowStats(edges)
    for r in records:
        if r["candidate_score"] is None:
            stats.add(np.empty(0), np.empty(0), 0, 1, 1, 0.0)
        else:
            stats.add(np.array([r["primary_score"]]), np.array([r["candidate_score"]]),
                      int(r["primary_label"] == r["candidate_label"]), 0, 1, 0.0)
    return {k: v for k, v in stats.summary().items() if not k.startswith("extra_")}
