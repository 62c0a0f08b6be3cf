"""Prometheus metrics of one worker: an observer, updated once per batch by the monitor.

Names follow Prometheus conventions: ``_total`` counters, base units (``_seconds``),
bounded label values (pipeline, reason from the closed set, partition numbers, feature
names from the manifest). Histograms of per-event values (latency, score) are kept as
numpy bucket counts and exposed through a collector (``prometheus_client``'s public
``HistogramMetricFamily``): one vectorized update per batch instead of one ``observe``
per event.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
SCORE_BUCKETS = tuple(round(x, 2) for x in np.linspace(0.1, 1.0, 10))
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)


class BatchHistogram(Collector):
    """A histogram fed whole arrays: ``observe_many(values)`` equals ``observe(v)`` for each value."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], labels: dict[str, str]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.labels = labels
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()  # the HTTP thread collects while the event loop observes

    def observe_many(self, values: np.ndarray) -> None:
        if not len(values):
            return
        # a value goes to the first bucket whose upper bound is >= the value (Prometheus' "le")
        counts = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labels))
        bounds = [*(floatToGoString(b) for b in self.bounds), "+Inf"]
        family.add_metric(list(self.labels.values()), list(zip(bounds, cumulative.tolist(), strict=True)), total)
        yield family


class WorkerMetrics:
    def __init__(self, pipeline: str, model_version: str, model_sha256: str, worker_id: str, scoring: str) -> None:
        self.registry = r = CollectorRegistry()
        self.pipeline = pipeline
        self.consumed = Counter("workers_events_consumed_total", "Input records consumed", ["pipeline"],
                                registry=r).labels(pipeline)
        self._predictions = Counter("workers_predictions_total", "Predictions published and acknowledged",
                                    ["pipeline", "model_version"], registry=r)
        self.predictions = self._predictions.labels(pipeline, model_version)
        self.model_switches = Counter("workers_model_switches_total", "Rollouts applied: the model served changed",
                                      ["pipeline"], registry=r).labels(pipeline)
        self.rollout_refusals = Counter("workers_rollout_refusals_total",
                                        "Model versions a rollout asked for and this worker refused (verification "
                                        "failed)", ["pipeline"], registry=r).labels(pipeline)
        self.dead_letters = Counter("workers_dead_letters_total", "Dead letters published and acknowledged",
                                    ["pipeline", "reason"], registry=r)
        self.batch_size = Histogram("workers_batch_size_events", "Records per scored batch", ["pipeline"],
                                    buckets=BATCH_SIZE_BUCKETS, registry=r).labels(pipeline)
        self.processing = Histogram("workers_batch_processing_seconds",
                                    "Decode + validate + score + encode time per batch", ["pipeline"],
                                    buckets=LATENCY_BUCKETS, registry=r).labels(pipeline)
        self.latency = BatchHistogram("workers_end_to_end_latency_seconds",
                                      "Event time to prediction acknowledged by the broker", LATENCY_BUCKETS,
                                      {"pipeline": pipeline})
        self.score = BatchHistogram("workers_prediction_score", "Prediction scores", SCORE_BUCKETS,
                                    {"pipeline": pipeline})
        r.register(self.latency)
        r.register(self.score)
        self.lag = Gauge("workers_consumer_lag_records", "High watermark minus position", ["pipeline", "partition"],
                         registry=r)
        self.drift = Gauge("workers_feature_drift_psi", "PSI of a feature (or the score) against the reference",
                           ["pipeline", "feature"], registry=r)
        self.ready = Gauge("workers_ready", "1 when /readyz answers 200", ["pipeline"], registry=r).labels(pipeline)
        self.oldest_undelivered = Gauge(
            "workers_oldest_undelivered_batch_age_seconds",
            "How long the oldest batch of outputs has waited for the broker's acknowledgement (0: none waiting)",
            ["pipeline"], registry=r).labels(pipeline)
        self.trial = Gauge("workers_trial_candidate", "1 while a candidate runs next to the primary",
                           ["pipeline", "mode", "candidate"], registry=r)
        self.trial_figures = Gauge(
            "workers_trial_figure", "A running trial's figures: shadow label_agreement, score_psi, "
            "score_diff_p50/p90/p99/max, pairs, candidate_failures, extra_ms_per_batch; canary events, "
            "dead_letters, error_rate and p99_batch_ms per model (role)", ["pipeline", "role", "figure"], registry=r)
        self.trial_decisions = Counter("workers_trial_decisions_total",
                                       "Automatic canary decisions (rollback or promote) and the guard that decided",
                                       ["pipeline", "action", "guard"], registry=r)
        self.quality = Gauge("workers_quality_figure", "Live quality of a model version over its last joined pairs "
                             "(WORKERS_LIVE_QUALITY): pairs, positives, roc_auc, precision, recall, brier; mae, rmse",
                             ["pipeline", "model_version", "figure"], registry=r)
        self.worker_id = worker_id
        self.model = Info("workers_model", "The model this worker serves", registry=r)
        self.set_model(model_version, model_sha256, scoring)

    def set_model(self, version: str, sha256: str, scoring: str) -> None:
        """The model served (at start, and after a rollout switched it)."""
        self.predictions = self._predictions.labels(self.pipeline, version)
        self.model.info({"pipeline": self.pipeline, "version": version, "sha256": sha256,
                         "worker_id": self.worker_id, "scoring": scoring})

    def batch(self, consumed: int, predictions: int, dead_letters: dict[str, int], processing_s: float,
              latencies_s: np.ndarray | None, scores: np.ndarray | None,
              other_versions: dict[str, int] | None = None) -> None:
        """``other_versions``: the share of ``predictions`` another model version made (a canary's
        candidate), counted under that version."""
        self.consumed.inc(consumed)
        self.batch_size.observe(consumed)
        self.processing.observe(processing_s)
        for version, count in (other_versions or {}).items():
            if count:
                self._predictions.labels(self.pipeline, version).inc(count)
                predictions -= count
        if predictions:
            self.predictions.inc(predictions)
        for reason, count in dead_letters.items():
            self.dead_letters.labels(self.pipeline, reason).inc(count)
        if latencies_s is not None:
            self.latency.observe_many(latencies_s)
        if scores is not None:
            self.score.observe_many(scores)

    def set_trial(self, summary: dict[str, Any] | None) -> None:
        """A running trial's figures (``Trial.summary``), or None: no trial."""
        self.trial.clear()
        self.trial_figures.clear()
        if summary is None:
            return
        self.trial.labels(self.pipeline, summary["mode"], summary["candidate"]).set(1)
        figures: dict[tuple[str, str], Any] = {}
        shadow = summary.get("shadow")
        if shadow is not None:
            figures.update({("shadow", k): v for k, v in shadow.items() if k != "score_diff"})
            figures.update({("shadow", f"score_diff_{k}"): v for k, v in shadow["score_diff"].items()})
        for role in ("primary", "candidate_side"):
            side = summary.get(role)
            if side is not None:
                figures.update({(role.removesuffix("_side"), k): v for k, v in side.items() if k != "version"})
        for (role, figure), value in figures.items():
            if isinstance(value, (int, float)):
                self.trial_figures.labels(self.pipeline, role, figure).set(value)

    def set_quality(self, report: dict[str, dict[str, Any]]) -> None:
        self.quality.clear()  # a figure that has no value now (one class in the window) shows none
        for version, figures in report.items():
            for name, value in figures.items():
                if isinstance(value, (int, float)):
                    self.quality.labels(self.pipeline, version, name).set(value)

    def set_drift(self, psi: dict[str, float]) -> None:
        for feature, value in psi.items():
            self.drift.labels(self.pipeline, feature).set(value)

    def set_lag(self, partition: int, lag: int) -> None:
        self.lag.labels(self.pipeline, str(partition)).set(lag)

    def forget_lag(self, partition: int) -> None:
        self.lag.remove(self.pipeline, str(partition))
