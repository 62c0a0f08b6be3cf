"""A candidate model on trial next to the primary: shadow or canary. Pure; the engines call
``Trial.process`` instead of ``Pipeline.process`` while a trial runs.

- **shadow**: the primary scores the batch as always (its outputs are exactly those of a run
  without a shadow); the candidate then scores the same records, and each primary prediction
  gets a shadow record (``workers.core.shadow``).
- **canary**: records whose key is in the canary (``workers.core.canary.in_canary``) are scored
  by the candidate, flagged ``canary``; the others by the primary. After every batch the
  guards judge the two (``decision``).

Whatever the candidate does (raise included), the batch is scored: a candidate that raises
ends the trial, and in a canary the primary scores its records instead.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from workers.core.canary import CANARY_FLAG, Decision, Guards, ModelSide, in_canary, judge
from workers.core.codec import SingleObjectCodec
from workers.core.deadletter import ORIGINAL_OFFSET, ORIGINAL_PARTITION
from workers.core.pipeline import EVENT_ID_HEADER, BatchResult, Pipeline
from workers.core.records import InputRecord, OutputRecord
from workers.core.shadow import ShadowStats, score_edges

SHADOW, CANARY = "shadow", "canary"
QUALITY_EVERY_S = 1.0


class Trial:
    def __init__(self, candidate: Pipeline, mode: str, *, fraction: float = 0.0, guards: Guards | None = None,
                 shadow_topic: str = "", shadow_codec: SingleObjectCodec | None = None, worker_id: str = "local",
                 primary_version: str = "") -> None:
        if mode not in (SHADOW, CANARY):
            raise ValueError(f"trial mode {mode!r}")
        if mode == SHADOW and (not shadow_topic or shadow_codec is None):
            raise ValueError("a shadow needs its topic and codec")
        self.candidate, self.mode, self.fraction = candidate, mode, fraction
        self.guards = guards or Guards()
        self.shadow_topic, self.shadow_codec, self.worker_id = shadow_topic, shadow_codec, worker_id
        self.version = candidate.manifest.version
        profile = candidate.manifest.reference_profile
        edges = score_edges(profile.score.bin_edges if profile and profile.score else None,
                            candidate.manifest.is_classifier)
        self.shadow = ShadowStats(edges)
        self.primary_side = ModelSide(primary_version, edges)
        self.candidate_side = ModelSide(self.version, edges)
        self.started = time.monotonic()
        self.crashed: str | None = None  # the candidate raised: the trial ends
        self.decided: Decision | None = None
        # live quality per model version (labels joined to predictions), for the quality guard
        self.quality: Callable[[], dict[str, dict[str, Any]]] | None = None
        self._quality_at = float("-inf")
        self._quality_seen: dict[str, dict[str, Any]] | None = None

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions that moved away: a shadow's own copy of stream time forgets them too."""
        if self.mode == SHADOW:
            self.candidate.forget_partitions(partitions)

    def key(self) -> tuple[str, str, float]:
        return (self.version, self.mode, self.fraction)

    def attach(self, primary: Pipeline) -> None:
        """Before the first batch. A canary's candidate shares the primary's stream time (a key's
        lateness does not depend on the model that scores it); a shadow's keeps its own copy, so
        that it sees each batch exactly as the primary did."""
        if self.mode == CANARY:
            self.candidate._stream_time = primary._stream_time
        else:
            self.candidate._stream_time = dict(primary._stream_time)
        if self.candidate.registered is not None and primary.registered is not None:
            self.candidate.registered = self.candidate.input_decoder.registered = primary.registered
        self.primary_side.version = primary.manifest.version

    def process(self, primary: Pipeline, records: list[InputRecord], now_ms: int | None = None) -> BatchResult:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if self.mode == SHADOW:
            return self._shadow(primary, records, now)
        return self._canary(primary, records, now)

    # ------------------------------------------------------------------ shadow

    def _shadow(self, primary: Pipeline, records: list[InputRecord], now: int) -> BatchResult:
        result = primary.process(records, now)
        if self.crashed is not None or not result.predictions:
            return result
        started = time.perf_counter()
        try:
            theirs = self.candidate.process(records, now)
        except Exception as exc:  # a shadow never hurts the primary
            self.crashed = f"{type(exc).__name__}: {exc}"
            self.decided = Decision("rollback", "candidate_raised", {"error": self.crashed})
            return result
        extra = time.perf_counter() - started
        by_source = {_source(o): o for o in theirs.outputs}
        mine = [o for o in result.outputs if o.prediction is not None]
        scored: list[tuple[float, float]] = []
        agreements = failures = 0
        for output in mine:
            p = output.prediction
            assert p is not None
            other = by_source.get((p["source_partition"], p["source_offset"]))
            q = other.prediction if other is not None else None
            if q is None:
                failures += 1
            else:
                scored.append((p["score"], q["score"]))
                agreements += p["label"] == q["label"]
            result.outputs.append(self._shadow_record(output, p, q, other, now))
        pairs = np.array(scored, dtype=float).reshape(len(scored), 2)
        self.shadow.add(pairs[:, 0], pairs[:, 1], agreements, failures, len(records), extra)
        return result

    def _shadow_record(self, output: OutputRecord, p: dict[str, Any], q: dict[str, Any] | None,
                       other: OutputRecord | None, now: int) -> OutputRecord:
        assert self.shadow_codec is not None
        value = {
            "event_id": p["event_id"], "key": p["key"],
            "primary_version": p["model_version"], "primary_score": p["score"], "primary_label": p["label"],
            "candidate_version": self.version,
            "candidate_score": q["score"] if q else None, "candidate_label": q["label"] if q else None,
            "candidate_error": None if q else (other.reason if other is not None else "not_scored"),
            "source_topic": p["source_topic"], "source_partition": p["source_partition"],
            "source_offset": p["source_offset"], "scored_at": now, "worker_id": self.worker_id,
        }
        return OutputRecord(self.shadow_topic, output.key, self.shadow_codec.encode(value),
                            [(EVENT_ID_HEADER, p["event_id"].encode())])

    # ------------------------------------------------------------------ canary

    def _canary(self, primary: Pipeline, records: list[InputRecord], now: int) -> BatchResult:
        salt = self.version
        chosen = [self.crashed is None and in_canary(r.key, self.fraction, salt) for r in records]
        theirs_in = [r for r, c in zip(records, chosen, strict=True) if c]
        if not theirs_in:
            result = self._timed(primary, records, now, self.primary_side)
            return result
        mine_in = [r for r, c in zip(records, chosen, strict=True) if not c]
        mine = self._timed(primary, mine_in, now, self.primary_side) if mine_in else BatchResult(outputs=[])
        try:
            theirs = self._timed(self.candidate, theirs_in, now, self.candidate_side, (CANARY_FLAG,))
            theirs.other_versions[self.version] += theirs.predictions
        except Exception as exc:  # the primary scores them instead; the canary ends
            self.crashed = f"{type(exc).__name__}: {exc}"
            self.decided = Decision("rollback", "candidate_raised", {"error": self.crashed})
            theirs = self._timed(primary, theirs_in, now, self.primary_side)
        return _merged(mine, theirs)

    @staticmethod
    def _timed(pipeline: Pipeline, records: list[InputRecord], now: int, side: ModelSide,
               flags: tuple[str, ...] = ()) -> BatchResult:
        started = time.perf_counter()
        result = pipeline.process(records, now, flags)
        side.add(len(records), result, time.perf_counter() - started)
        return result

    def decision(self) -> Decision | None:
        """After a batch: what the guards decided (once), or None to go on."""
        if self.decided is None and self.mode == CANARY:
            self.decided = judge(self.guards, self.primary_side, self.candidate_side,
                                 time.monotonic() - self.started, self._live_quality())
        return self.decided

    def _live_quality(self) -> dict[str, dict[str, Any]] | None:
        """At most once a second: ROC-AUC over thousands of pairs is not a per-batch cost."""
        if self.quality is None:
            return None
        now = time.monotonic()
        if now - self._quality_at >= QUALITY_EVERY_S:
            self._quality_at, self._quality_seen = now, self.quality()
        return self._quality_seen

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "candidate": self.version,
                               "running_s": round(time.monotonic() - self.started, 1)}
        if self.mode == SHADOW:
            out["shadow"] = self.shadow.summary()
        else:
            out["fraction"] = self.fraction
            out["primary"] = self.primary_side.summary()
            out["candidate_side"] = self.candidate_side.summary()
        if self.decided is not None:
            out["decision"] = self.decided.describe()
        return out


def _source(output: OutputRecord) -> tuple[int, int]:
    if output.prediction is not None:
        return output.prediction["source_partition"], output.prediction["source_offset"]
    headers = dict(output.headers)
    return int(headers.get(ORIGINAL_PARTITION, b"-1")), int(headers.get(ORIGINAL_OFFSET, b"-1"))


def _merged(primary: BatchResult, candidate: BatchResult) -> BatchResult:
    """Both models' outputs; the primary's rows and scores only for drift (the candidate's features
    may differ in number, and its scores are the trial's business, not the served model's)."""
    return BatchResult(outputs=primary.outputs + candidate.outputs,
                       predictions=primary.predictions + candidate.predictions,
                       other_versions=primary.other_versions + candidate.other_versions,
                       dead_letters=primary.dead_letters + candidate.dead_letters,
                       matrix=primary.matrix, scores=primary.scores,
                       event_times_ms=primary.event_times_ms + candidate.event_times_ms)
