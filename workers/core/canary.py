"""Canary by key: a stable share of entity keys is scored by the candidate, and guards watch it. Pure.

A record goes to the candidate when the hash of (candidate version, record key) falls below
the fraction, so one key (one account) gets one model for the whole canary, on every worker,
and a record without a key stays with the primary. Producers key events by the entity key
(``workers produce`` does), which is what makes the split per entity.

Guards compare the two models on the same stream, in each worker, after every canary batch
once the candidate has seen ``min_events`` events there; one that trips ends the canary in
that batch. So a bad candidate scores at most ``min_events`` + one batch of events per worker
(the documented bound; defaults below). A canary healthy for ``soak_s`` seconds (0: never)
is promoted.
"""
from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.core.shadow import bin_counts, score_psi
from workers.errors import ConfigError

if TYPE_CHECKING:  # the pipeline brings scikit-learn: seconds for a command that only writes a rollout
    from workers.core.pipeline import BatchResult

CANARY_FLAG = "canary"  # in a prediction's flags: scored by the candidate during a canary
BATCH_TIMES = 1000  # scoring times kept per model for the p99
WARMUP_BATCHES = 2  # a model's first batches are not timed: first calls pay for caches and lazy set-up


def in_canary(key: bytes | None, fraction: float, salt: str) -> bool:
    if key is None or fraction <= 0.0:
        return False
    digest = hashlib.blake2b(key, digest_size=8, person=salt.encode()[:16]).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


@dataclass(frozen=True)
class Guards:
    min_events: int = 200  # candidate events in this worker before any guard is judged
    max_error_rate_increase: float = 0.02  # dead letters per event, candidate minus primary
    max_score_psi: float = 0.25  # PSI of the candidate's scores against the primary's
    max_p99_ratio: float = 3.0  # p99 time to process a batch, candidate over primary
    min_batches: int = 20  # batches per model before the p99 guard is judged
    soak_s: float = 0.0  # healthy this long (with min_events seen): promoted; 0: only by command
    min_labels: int = 200  # labelled predictions per model (live quality) before the quality guard is judged
    max_auc_drop: float = 0.05  # ROC-AUC, primary minus candidate (classifiers)
    max_rmse_ratio: float = 1.25  # RMSE, candidate over primary (regressors)

    @classmethod
    def from_state(cls, values: dict[str, float]) -> Guards:
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown canary guard {', '.join(unknown)}; known: {', '.join(known)}")
        typed: dict[str, Any] = {name: int(v) if known[name] == "int" else float(v) for name, v in values.items()}
        return cls(**typed)


@dataclass(frozen=True)
class Decision:
    """What a canary's guards decided: ``rollback`` (``guard`` tripped) or ``promote`` (soaked)."""

    action: str
    guard: str
    values: dict[str, Any]

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.values.items())
        return f"{self.action} ({self.guard}: {shown})"


class ModelSide:
    """One model's share of the canary, in this worker."""

    def __init__(self, version: str, edges: np.ndarray | None) -> None:
        self.version = version
        self.edges = edges
        self.events = 0
        self.predictions = 0
        self.dead_letters = 0
        self.batches = 0
        self.batch_s: deque[float] = deque(maxlen=BATCH_TIMES)
        self.batch_n: deque[int] = deque(maxlen=BATCH_TIMES)  # the records of each timed batch
        self.score_counts = np.zeros(len(edges) + 1 if edges is not None else 0, dtype=np.int64)

    def add(self, events: int, result: BatchResult, seconds: float) -> None:
        self.events += events
        self.predictions += result.predictions
        self.dead_letters += sum(result.dead_letters.values())
        self.batches += 1
        if self.batches > WARMUP_BATCHES:
            self.batch_s.append(seconds)
            self.batch_n.append(events)
        if self.edges is not None and result.scores is not None:
            scored = result.scores[~np.isnan(result.scores)]
            self.score_counts += bin_counts(self.edges, scored)

    @property
    def error_rate(self) -> float:
        return self.dead_letters / self.events if self.events else 0.0

    @property
    def p99_s(self) -> float:
        return float(np.quantile(np.fromiter(self.batch_s, float), 0.99)) if self.batch_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "events": self.events, "predictions": self.predictions,
                "dead_letters": self.dead_letters, "error_rate": self.error_rate,
                "p99_batch_ms": 1000 * self.p99_s}


def judge(guards: Guards, primary: ModelSide, candidate: ModelSide, healthy_s: float,
          quality: dict[str, dict[str, Any]] | None = None) -> Decision | None:
    """A guard that trips (rollback), a soak completed (promote), or None: go on. ``quality``: live
    quality per model version (labels joined to this worker's predictions), when there is any."""
    if candidate.events < guards.min_events:
        return None
    tripped = _quality_guard(guards, primary.version, candidate.version, quality or {})
    if tripped is not None:
        return tripped
    increase = candidate.error_rate - primary.error_rate
    if increase > guards.max_error_rate_increase:
        return Decision("rollback", "error_rate", {
            "candidate": candidate.error_rate, "primary": primary.error_rate,
            "limit": guards.max_error_rate_increase, "candidate_events": candidate.events})
    if primary.predictions >= guards.min_events and candidate.predictions >= guards.min_events:
        value = score_psi(candidate.edges, primary.score_counts, candidate.score_counts)
        if value is not None and value > guards.max_score_psi:
            return Decision("rollback", "score_psi", {"psi": value, "limit": guards.max_score_psi,
                                                      "candidate_events": candidate.events})
    if len(candidate.batch_s) >= guards.min_batches and len(primary.batch_s) >= guards.min_batches:
        ratio = slowdown_p99(primary, candidate)
        if ratio is not None and ratio > guards.max_p99_ratio:
            return Decision("rollback", "p99_batch_time", {
                "p99_ratio": ratio, "candidate_ms": 1000 * candidate.p99_s, "primary_ms": 1000 * primary.p99_s,
                "limit_ratio": guards.max_p99_ratio})
    if guards.soak_s > 0 and healthy_s >= guards.soak_s:
        return Decision("promote", "soak", {"healthy_s": healthy_s, "candidate_events": candidate.events})
    return None


def _quality_guard(guards: Guards, primary: str, candidate: str,
                   quality: dict[str, dict[str, Any]]) -> Decision | None:
    mine, theirs = quality.get(primary), quality.get(candidate)
    if not mine or not theirs or min(mine["pairs"], theirs["pairs"]) < guards.min_labels:
        return None
    if mine.get("roc_auc") is not None and theirs.get("roc_auc") is not None:
        drop = mine["roc_auc"] - theirs["roc_auc"]
        if drop > guards.max_auc_drop:
            return Decision("rollback", "roc_auc", {"candidate": theirs["roc_auc"], "primary": mine["roc_auc"],
                                                    "limit_drop": guards.max_auc_drop, "labels": theirs["pairs"]})
    if mine.get("rmse") and theirs.get("rmse") is not None and theirs["rmse"] / mine["rmse"] > guards.max_rmse_ratio:
        return Decision("rollback", "rmse", {"candidate": theirs["rmse"], "primary": mine["rmse"],
                                             "limit_ratio": guards.max_rmse_ratio, "labels": theirs["pairs"]})
    return None


def slowdown_p99(primary: ModelSide, candidate: ModelSide) -> float | None:
    """p99 over the candidate's batches of its time against what the primary takes for a batch of
    the same size (a line fitted to the primary's batches: fixed cost + cost per record). A canary's
    batches are a fraction of the primary's, so raw batch times would favour a small canary and
    per-record times a large one."""
    sizes = np.fromiter(primary.batch_n, float)
    times = np.fromiter(primary.batch_s, float)
    per_record, fixed = np.polyfit(sizes, times, 1) if len(set(sizes.tolist())) > 1 else (0.0, np.median(times))
    if per_record < 0 or fixed < 0:  # a noisy fit: fall back to a cost proportional to the records
        per_record, fixed = float(np.median(times / np.maximum(sizes, 1))), 0.0
    expected = np.maximum(fixed + per_record * np.fromiter(candidate.batch_n, float), 1e-6)
    if not expected.size:
        return None
    return float(np.quantile(np.fromiter(candidate.batch_s, float) / expected, 0.99))
