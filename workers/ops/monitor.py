"""What a worker knows about itself: the engines report to it, metrics and the status page read it.

The engines call ``batch_delivered`` once a batch's outputs were acknowledged, and report
assignment and lag. The monitor keeps the aggregates the status page shows (counts, a
recent rate, latency percentiles, lag, drift), updates the Prometheus metrics (an
observer: nothing is read back from them), raises drift alerts, and writes at most one
log line per batch plus a progress line every ``PROGRESS_EVERY_S``.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

from workers.core.canary import Decision
from workers.core.drift import DriftMonitor
from workers.core.pipeline import BatchResult, Pipeline
from workers.core.quality import LabelJoin, Quality
from workers.core.records import InputRecord
from workers.core.trial import Trial
from workers.ops.logs import get_logger
from workers.ops.metrics import WorkerMetrics
from workers.ops.stage_cpu import ACCOUNT, StageCpu
from workers.settings import Settings

log = get_logger("workers.monitor")

PROGRESS_EVERY_S = 10.0
RATE_WINDOW_S = 10.0
DRIFT_CHECK_INTERVAL_S = 0.25  # binning and PSI at most this often (and on the heartbeat)
LATENCY_SAMPLES = 5000  # the status page's percentiles are over the last this many predictions


def offset_ranges(records: list[InputRecord]) -> dict[int, list[int]]:
    """{partition: [first offset, last offset]} of a batch, for logs."""
    ranges: dict[int, list[int]] = {}
    for r in records:
        span = ranges.setdefault(r.partition, [r.offset, r.offset])
        span[0] = min(span[0], r.offset)
        span[1] = max(span[1], r.offset)
    return ranges


class WorkerMonitor:
    def __init__(self, pipeline: Pipeline, worker_id: str, drift_window: int = 5000,
                 drift_threshold: float = 0.2, *, delivery_timeout_s: float = 120.0, stall_timeout_s: float = 60.0,
                 liveness_timeout_s: float = 30.0) -> None:
        manifest = pipeline.manifest
        self.pipeline = pipeline
        self.metrics = WorkerMetrics(pipeline.name, manifest.version, manifest.artifact_sha256, worker_id,
                                     pipeline.scorer.path)
        self.drift = DriftMonitor(manifest, drift_window, drift_threshold)
        self.cpu = StageCpu({"pipeline": pipeline.name})  # the engines time their stages on it
        self.metrics.registry.register(self.cpu)
        self.rollout_refused: dict[str, str] = {}  # version -> why this worker refused to serve it
        self.trial: Trial | None = None  # a candidate next to the primary (shadow or canary)
        self.trial_decisions: list[dict[str, Any]] = []  # what the guards of this worker's canaries decided
        self.live_quality: tuple[LabelJoin, Quality] | None = None  # with WORKERS_LIVE_QUALITY (``follow_labels``)
        self._quality_lock = threading.Lock()  # labels arrive on their own thread
        self.consumed = 0
        self.predictions = 0
        self.dead_letters: dict[str, int] = {}
        self.assigned_partitions: set[int] = set()
        self.lag: dict[int, int] = {}
        self.model_verified = True  # a Pipeline exists only once its model was verified
        self.failed: str | None = None  # set when the worker is stopping on an unrecoverable error
        self.delivery_timeout_s = delivery_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.liveness_timeout_s = liveness_timeout_s
        self.oldest_undelivered_s = 0.0
        self.registry_unavailable: str | None = None
        self._drift_pending: list[tuple[np.ndarray, np.ndarray]] = []  # scored since the last drift check
        self._drift_pending_rows = 0
        self._last_drift_check = 0.0  # why writer schemas cannot be fetched right now
        self.started = time.time()
        self._last_heartbeat = time.monotonic()  # the event loop ran (the engines call heartbeat())
        self._last_progress = time.monotonic()  # a batch was delivered or offsets committed
        self._recent: deque[tuple[float, int]] = deque(maxlen=600)  # (time, consumed) for the rate
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._psi: dict[str, float] = {}
        self._last_progress_log = time.monotonic()

    @classmethod
    def from_settings(cls, pipeline: Pipeline, settings: Settings) -> WorkerMonitor:
        monitor = cls(pipeline, settings.worker_id, settings.drift_window, settings.drift_threshold,
                      delivery_timeout_s=settings.delivery_timeout_s, stall_timeout_s=settings.stall_timeout_s,
                      liveness_timeout_s=settings.liveness_timeout_s)
        if settings.live_quality:
            monitor.follow_labels(settings.labels_window_s)
        return monitor

    # -- ground truth (WORKERS_LIVE_QUALITY)
    def follow_labels(self, window_s: float) -> None:
        """From now on, this worker's predictions wait for their labels (``label_arrived``)."""
        manifest = self.pipeline.manifest
        self.live_quality = (LabelJoin(window_s), Quality(manifest.is_classifier,
                                                          manifest.labels[1] if manifest.is_classifier else None))

    def label_arrived(self, event_id: str, truth: str | float, label_time_ms: int) -> None:
        if self.live_quality is None:
            return
        join, quality = self.live_quality
        with self._quality_lock:
            joined = join.label(event_id, truth, label_time_ms)
            if joined is not None:
                try:
                    quality.add(joined)
                except (TypeError, ValueError):  # e.g. a class name for a regressor: counted, not fatal
                    join.counts["unusable_labels"] += 1

    def quality_report(self) -> dict[str, dict[str, Any]]:
        """Live quality per model version (empty without WORKERS_LIVE_QUALITY)."""
        if self.live_quality is None:
            return {}
        with self._quality_lock:
            return self.live_quality[1].report()

    # -- what the engines report
    def batch_delivered(self, records: list[InputRecord], result: BatchResult) -> None:
        """A batch's outputs were acknowledged by the broker: count it."""
        cpu_started = time.thread_time()
        now = time.time()
        self.consumed += len(records)
        self.predictions += result.predictions
        for reason, count in result.dead_letters.items():
            self.dead_letters[reason] = self.dead_letters.get(reason, 0) + count
        latencies = None
        if result.event_times_ms:
            latencies = np.maximum(0.0, now - np.asarray(result.event_times_ms, dtype=np.float64) / 1000)
            self._latencies_ms.extend((latencies * 1000).tolist())
        scores = None
        if result.scores is not None:
            scores = result.scores[np.isfinite(result.scores)]
            if result.matrix is not None:
                self._drift_pending.append((result.matrix, result.scores))
                self._drift_pending_rows += len(result.matrix)
                if (time.monotonic() - self._last_drift_check >= DRIFT_CHECK_INTERVAL_S
                        or self._drift_pending_rows >= self.drift.window):
                    self._check_drift()
        self.metrics.batch(len(records), result.predictions, dict(result.dead_letters), result.processing_s,
                           latencies, scores, result.other_versions)
        if self.live_quality is not None and result.predictions:
            join, quality = self.live_quality
            with self._quality_lock:
                for output in result.outputs:
                    if output.prediction is not None:
                        joined = join.prediction(output.prediction)
                        if joined is not None:
                            quality.add(joined)
        self._last_progress = time.monotonic()
        self._recent.append((now, self.consumed))
        if result.dead_letters:
            log.info("dead-lettered", topic=records[0].topic, offsets=offset_ranges(records),
                     reasons=dict(result.dead_letters), pipeline=self.pipeline.name,
                     model_version=self.pipeline.manifest.version)
        self._maybe_log_progress()
        self.cpu.add(ACCOUNT, cpu_started)

    def partitions_assigned(self, partitions: set[int]) -> None:
        for gone in self.assigned_partitions - partitions:
            if self.lag.pop(gone, None) is not None:
                self.metrics.forget_lag(gone)
        self.assigned_partitions = set(partitions)
        self.metrics.ready.set(1 if self.is_ready() else 0)

    def lag_observed(self, lags: dict[int, int]) -> None:
        for partition, lag in lags.items():
            self.lag[partition] = lag
            self.metrics.set_lag(partition, lag)

    def offsets_committed(self) -> None:
        self._last_progress = time.monotonic()

    def heartbeat(self, oldest_undelivered_s: float) -> None:
        self._last_heartbeat = time.monotonic()
        if self._drift_pending and self._last_heartbeat - self._last_drift_check >= DRIFT_CHECK_INTERVAL_S:
            self._check_drift()  # the last batches of a burst are checked too
        self.oldest_undelivered_s = oldest_undelivered_s
        self.metrics.oldest_undelivered.set(oldest_undelivered_s)
        self.metrics.ready.set(1 if self.is_ready() else 0)
        if self.trial is not None:
            self.metrics.set_trial(self.trial.summary())
        if self.live_quality is not None:
            self.metrics.set_quality(self.quality_report())

    def registry_problem(self, problem: str | None) -> None:
        self.registry_unavailable = problem
        self.metrics.ready.set(1 if self.is_ready() else 0)

    # -- what a rollout reports
    def model_switched(self, pipeline: Pipeline) -> None:
        """A rollout switched the model (between batches): figures from now on are the new model's."""
        manifest = pipeline.manifest
        self.pipeline = pipeline
        self.drift = DriftMonitor(manifest, self.drift.window, self.drift.threshold)
        self._drift_pending, self._drift_pending_rows, self._psi = [], 0, {}
        self.metrics.set_model(manifest.version, manifest.artifact_sha256, pipeline.scorer.path)
        self.metrics.model_switches.inc()

    def trial_changed(self, trial: Trial | None) -> None:
        """A trial started or ended (between batches)."""
        self.trial = trial
        self.metrics.set_trial(trial.summary() if trial is not None else None)

    def trial_decided(self, trial: Trial, decision: Decision) -> None:
        self.trial_decisions.append({"candidate": trial.version, "mode": trial.mode, "at": time.time(),
                                     "decision": decision.describe(), **trial.summary()})
        del self.trial_decisions[:-10]
        self.metrics.trial_decisions.labels(self.pipeline.name, decision.action, decision.guard).inc()

    def model_refused(self, version: str, reason: str) -> None:
        self.rollout_refused[version] = reason
        self.metrics.rollout_refusals.inc()

    # -- what the endpoints read
    def is_alive(self) -> bool:
        """False once the event loop has not run for ``liveness_timeout_s``: restart the process."""
        return time.monotonic() - self._last_heartbeat < self.liveness_timeout_s

    def readiness(self) -> dict[str, Any]:
        """Ready to serve: model verified, partitions assigned, and the stream moving."""
        problems = []
        if self.failed:
            problems.append(f"stopping: {self.failed}")
        if not self.assigned_partitions:
            problems.append("no partitions assigned")
        if self.registry_unavailable:
            problems.append(self.registry_unavailable)
        if self.oldest_undelivered_s > self.delivery_timeout_s:
            problems.append(f"outputs undelivered for {self.oldest_undelivered_s:.0f}s")
        stalled = time.monotonic() - self._last_progress
        if stalled > self.stall_timeout_s and any(lag > 0 for lag in self.lag.values()):
            problems.append(f"no progress for {stalled:.0f}s with lag {sum(self.lag.values())}")
        return {"ready": self.model_verified and not problems, "model_verified": self.model_verified,
                "partitions": sorted(self.assigned_partitions), "problems": problems}

    def is_ready(self) -> bool:
        return bool(self.readiness()["ready"])

    def status(self) -> dict[str, Any]:
        """What the status page shows: the same figures as /metrics, summarised."""
        now = time.time()
        baseline = (self.started, 0)  # the last sample before the rate window (or the start)
        for sample in self._recent:
            if now - sample[0] > RATE_WINDOW_S:
                baseline = sample
        rate = (self.consumed - baseline[1]) / max(1.0, now - baseline[0])
        latencies = np.array(self._latencies_ms)
        manifest = self.pipeline.manifest
        return {
            "pipeline": self.pipeline.name,
            "model": {"version": manifest.version, "sha256": manifest.artifact_sha256,
                      "scoring": self.pipeline.scorer.path},
            "ready": self.is_ready(),
            "uptime_s": round(now - self.started, 1),
            "consumed": self.consumed,
            "predictions": self.predictions,
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "events_per_s": round(rate, 1),
            "latency_ms": {f"p{q}": round(float(np.percentile(latencies, q)), 2) for q in (50, 95, 99)}
            if len(latencies) else {},
            "lag": {str(p): self.lag.get(p, 0) for p in sorted(self.assigned_partitions)},
            "oldest_undelivered_s": round(self.oldest_undelivered_s, 1),
            "drift_psi": {k: round(v, 4) for k, v in self._psi.items()},
            "drift_threshold": self.drift.threshold,
            "drift_window_events": self.drift.window_events,
            "drifted": sorted(self.drift.drifted),
            "rollout_refused": dict(self.rollout_refused),
            "trial": self.trial.summary() if self.trial is not None else None,
            "live_quality": self._live_quality_status(),
            "trial_decisions": list(self.trial_decisions),
        }

    # -- internals
    def _live_quality_status(self) -> dict[str, Any] | None:
        if self.live_quality is None:
            return None
        join, quality = self.live_quality
        with self._quality_lock:
            return {"counts": dict(sorted(join.counts.items())), "pending": join.pending(),
                    "by_model_version": quality.report()}

    def _check_drift(self) -> None:
        """Bin what was scored since the last check and compare the window with the reference.

        At most every ``DRIFT_CHECK_INTERVAL_S`` (and from the heartbeat): at moderate rates a
        worker scores hundreds of small batches a second, and binning and PSI per batch cost
        more than scoring them."""
        self._last_drift_check = time.monotonic()
        if not self._drift_pending:
            return
        pending, self._drift_pending, self._drift_pending_rows = self._drift_pending, [], 0
        matrix = pending[0][0] if len(pending) == 1 else np.concatenate([m for m, _ in pending])
        scores = pending[0][1] if len(pending) == 1 else np.concatenate([s for _, s in pending])
        self.drift.update(matrix, scores)
        self._psi = psi = self.drift.psi()  # gauges, alerts and the status page share it
        self.metrics.set_drift(psi)
        started, ended = self.drift.changes(psi)
        if started:
            log.warning("drift detected", pipeline=self.pipeline.name, features=sorted(started),
                        psi={f: round(psi[f], 3) for f in sorted(started)}, threshold=self.drift.threshold,
                        window_events=self.drift.window_events)
        if ended:
            log.info("drift cleared", pipeline=self.pipeline.name, features=sorted(ended))

    def _maybe_log_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress_log < PROGRESS_EVERY_S:
            return
        self._last_progress_log = now
        log.info("progress", consumed=self.consumed, predictions=self.predictions,
                 dead_letters=sum(self.dead_letters.values()), events_per_s=self.status()["events_per_s"])
