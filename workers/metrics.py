"""Prometheus metrics of one worker, updated once per batch (never per log line).

Names follow Prometheus conventions: ``_total`` counters, base units (``_seconds``),
bounded label values (pipeline, reason from the closed set, partition numbers, feature
names from the manifest).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from workers.core.drift import DriftMonitor
from workers.core.pipeline import BatchResult, Pipeline
from workers.logs import get_logger

log = get_logger("workers.metrics")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
SCORE_BUCKETS = tuple(round(x, 2) for x in np.linspace(0.1, 1.0, 10))


def observe_many(histogram: Any, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for every value, in one vectorized pass per batch.

    Falls back to per-value observe if prometheus-client's internals ever change.
    """
    if not len(values):
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(float(value))
        return
    # observe() counts a value in the first bucket whose upper bound is >= the value.
    counts = np.bincount(np.searchsorted(np.asarray(bounds), values, side="left"), minlength=len(bounds))
    for index in np.flatnonzero(counts[: len(bounds)]):
        buckets[index].inc(int(counts[index]))
    total.inc(float(values.sum()))


class WorkerMetrics:
    def __init__(self, pipeline: Pipeline, worker_id: str, drift_window: int = 5000,
                 drift_threshold: float = 0.2) -> None:
        self.registry = CollectorRegistry()
        self.pipeline = pipeline
        name = pipeline.name
        r = self.registry
        self.consumed = Counter("workers_events_consumed_total", "Input records consumed", ["pipeline"],
                                registry=r).labels(name)
        self.predictions = Counter("workers_predictions_total", "Predictions published and acknowledged",
                                   ["pipeline", "model_version"], registry=r).labels(name, pipeline.manifest.version)
        self._dead_letters = Counter("workers_dead_letters_total", "Dead letters published and acknowledged",
                                     ["pipeline", "reason"], registry=r)
        self.batch_size = Histogram("workers_batch_size_events", "Records per scored batch", ["pipeline"],
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=r).labels(name)
        self.scoring = Histogram("workers_batch_processing_seconds",
                                 "Decode + validate + score + encode time per batch", ["pipeline"],
                                 buckets=LATENCY_BUCKETS, registry=r).labels(name)
        self.latency = Histogram("workers_end_to_end_latency_seconds",
                                 "Event time to prediction acknowledged by the broker", ["pipeline"],
                                 buckets=LATENCY_BUCKETS, registry=r).labels(name)
        self.score = Histogram("workers_prediction_score", "Prediction scores", ["pipeline"],
                               buckets=SCORE_BUCKETS, registry=r).labels(name)
        self.lag = Gauge("workers_consumer_lag_records", "High watermark minus position", ["pipeline", "partition"],
                         registry=r)
        self.drift = Gauge("workers_feature_drift_psi", "PSI of a feature (or the score) against the reference",
                           ["pipeline", "feature"], registry=r)
        self.ready = Gauge("workers_ready", "1 when the model is verified and partitions are assigned",
                           ["pipeline"], registry=r).labels(name)
        info = Info("workers_model", "The model this worker serves", registry=r)
        info.info({"pipeline": name, "version": pipeline.manifest.version, "sha256": pipeline.manifest.artifact_sha256,
                   "worker_id": worker_id, "scoring": pipeline.scorer.path})
        self.drift_monitor = DriftMonitor(pipeline.manifest, drift_window, drift_threshold)
        self.dead_letter_counts: dict[str, int] = {}
        self.assigned_partitions: set[int] = set()
        self.model_verified = True  # a Pipeline exists only once its model was verified
        self._recent: deque[tuple[float, int]] = deque(maxlen=600)  # (time, consumed) for the status page
        self._latencies: deque[float] = deque(maxlen=5000)
        self.started = time.time()

    def record_batch(self, result: BatchResult, consumed: int, processing_s: float, acked_at: float) -> None:
        self.consumed.inc(consumed)
        self.batch_size.observe(consumed)
        self.scoring.observe(processing_s)
        if result.predictions:
            self.predictions.inc(result.predictions)
        for reason, count in result.dead_letters.items():
            self._dead_letters.labels(self.pipeline.name, reason).inc(count)
            self.dead_letter_counts[reason] = self.dead_letter_counts.get(reason, 0) + count
        if result.event_times_ms:
            seconds = np.maximum(0.0, acked_at - np.asarray(result.event_times_ms, dtype=np.float64) / 1000)
            observe_many(self.latency, seconds)
            self._latencies.extend(seconds.tolist())
        if result.scores is not None:
            observe_many(self.score, result.scores[np.isfinite(result.scores)])
            if result.matrix is not None:
                self.drift_monitor.update(result.matrix, result.scores)
                self._update_drift()
        self._recent.append((time.time(), int(self.consumed._value.get())))

    def _update_drift(self) -> None:
        psi = self.drift_monitor.psi()  # once per batch: gauges and alerts share it
        for feature, value in psi.items():
            self.drift.labels(self.pipeline.name, feature).set(value)
        started, ended = self.drift_monitor.changes(psi)
        if started:
            log.warning("drift detected", pipeline=self.pipeline.name, features=sorted(started),
                        psi={f: round(psi[f], 3) for f in sorted(started)}, threshold=self.drift_monitor.threshold,
                        window_events=self.drift_monitor.window_events)
        if ended:
            log.info("drift cleared", pipeline=self.pipeline.name, features=sorted(ended))

    def set_lag(self, lags: dict[int, int]) -> None:
        for partition, lag in lags.items():
            self.lag.labels(self.pipeline.name, str(partition)).set(lag)

    def set_assignment(self, partitions: set[int]) -> None:
        for gone in self.assigned_partitions - partitions:
            if self._has_lag(gone):
                self.lag.remove(self.pipeline.name, str(gone))
        self.assigned_partitions = set(partitions)
        self.ready.set(1 if self.is_ready() else 0)

    def _has_lag(self, partition: int) -> bool:
        return (self.pipeline.name, str(partition)) in self.lag._metrics

    def is_ready(self) -> bool:
        return self.model_verified and bool(self.assigned_partitions)

    def status(self) -> dict[str, Any]:
        """What the status page shows: the same figures as /metrics, summarised."""
        now = time.time()
        # Events over the last 10 s, from the last sample before that window (or the start) to now.
        baseline = (self.started, 0)
        for sample in self._recent:
            if now - sample[0] > 10:
                baseline = sample
        consumed = int(self.consumed._value.get())
        rate = (consumed - baseline[1]) / max(1.0, now - baseline[0])
        latencies = np.array(self._latencies) * 1000
        manifest = self.pipeline.manifest
        return {
            "pipeline": self.pipeline.name,
            "model": {"version": manifest.version, "sha256": manifest.artifact_sha256,
                      "scoring": self.pipeline.scorer.path},
            "ready": self.is_ready(),
            "uptime_s": round(now - self.started, 1),
            "consumed": consumed,
            "predictions": int(self.predictions._value.get()),
            "dead_letters": dict(sorted(self.dead_letter_counts.items())),
            "events_per_s": round(rate, 1),
            "latency_ms": {f"p{q}": round(float(np.percentile(latencies, q)), 2) for q in (50, 95, 99)}
            if len(latencies) else {},
            "lag": {str(p): int(self.lag.labels(self.pipeline.name, str(p))._value.get())
                    for p in sorted(self.assigned_partitions)},
            "drift_psi": {k: round(v, 4) for k, v in self.drift_monitor.psi().items()},
            "drift_threshold": self.drift_monitor.threshold,
            "drifted": sorted(self.drift_monitor.drifted),
        }
