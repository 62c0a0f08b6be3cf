"""Ground truth: labels joined to predictions by event id, and live quality per model version. Pure.

Labels arrive late (a chargeback comes days after the transaction), on ``<pipeline>.labels``
(``LABEL_SCHEMA``). ``LabelJoin`` holds each side until the other arrives, within
``window_s`` of stream time (the newest prediction or label time seen, so a replay of old
data joins as it did live) and at most ``max_pending`` entries per side, the oldest evicted
first. A label whose prediction never came, or left the window, is counted (``unknown``,
``expired``), never fatal; so is a second label for one event (``duplicate``: the first wins).

``Quality`` keeps the last ``window`` joined pairs per model version and computes, for a
classifier, ROC-AUC, precision and recall at the manifest's threshold (the prediction's
label), the Brier score and calibration by score decile; for a regressor, MAE and RMSE.
"""
from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

LABEL_SCHEMA_NAME = "label.v1 (built in)"
LABEL_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "GroundTruth",
    "namespace": "io.workers.labels",
    "doc": "What really happened to an event (<pipeline>.labels): its class, or its value for a regressor.",
    "fields": [
        {"name": "event_id", "type": "string", "doc": "the event's id, as in its prediction"},
        {"name": "label", "type": ["null", "string"], "default": None, "doc": "a classifier's true class"},
        {"name": "value", "type": ["null", "double"], "default": None, "doc": "a regressor's true value"},
        {"name": "label_time", "type": {"type": "long", "logicalType": "timestamp-millis"},
         "doc": "when the truth became known"},
    ],
}
DEFAULT_WINDOW_S = 7 * 24 * 3600.0  # a prediction waits a week for its label
DEFAULT_MAX_PENDING = 1_000_000  # per side: ~200 MB of held predictions at most; size it to rate x window
DEFAULT_QUALITY_WINDOW = 10_000  # joined pairs per model version


@dataclass(frozen=True)
class Joined:
    event_id: str
    model_version: str
    score: float
    predicted: str | None  # the prediction's label (classifiers)
    truth: str | float  # the true class, or value


class LabelJoin:
    def __init__(self, window_s: float = DEFAULT_WINDOW_S, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.window_ms = int(window_s * 1000)
        self.max_pending = max_pending
        # only what the join needs (~200 bytes an entry, not the whole prediction)
        self._predictions: OrderedDict[str, tuple[int, tuple[str, float, str | None]]] = OrderedDict()
        self._labels: OrderedDict[str, tuple[int, str | float]] = OrderedDict()
        self._joined_ids: OrderedDict[str, int] = OrderedDict()  # recent joins: a repeated label is a duplicate
        self.stream_ms = 0
        self.counts: Counter[str] = Counter()

    def prediction(self, p: dict[str, Any]) -> Joined | None:
        event_id, at = p["event_id"], int(p["scored_at"])
        self._advance(at)
        held = (p["model_version"], float(p["score"]), p.get("label"))
        waiting = self._labels.pop(event_id, None)
        if waiting is not None:
            return self._join(event_id, held, waiting[1])
        if event_id in self._predictions or event_id in self._joined_ids:
            self.counts["duplicate_predictions"] += 1
            return None
        self._hold(self._predictions, event_id, (at, held), "expired_predictions")
        return None

    def label(self, event_id: str, truth: str | float, label_time_ms: int) -> Joined | None:
        if self.stream_ms and label_time_ms > self.stream_ms + self.window_ms:
            # a clock (or unit) far ahead would expire everything held and stop expiry: not trusted
            self.counts["future_label_times"] += 1
            label_time_ms = self.stream_ms
        self._advance(label_time_ms)
        if event_id in self._joined_ids:
            self.counts["duplicate_labels"] += 1
            return None
        waiting = self._predictions.pop(event_id, None)
        if waiting is not None:
            return self._join(event_id, waiting[1], truth)
        if event_id in self._labels:
            self.counts["duplicate_labels"] += 1
            return None
        self._hold(self._labels, event_id, (label_time_ms, truth), "unknown_labels")
        return None

    def pending(self) -> dict[str, int]:
        return {"predictions": len(self._predictions), "labels": len(self._labels)}

    def _join(self, event_id: str, held: tuple[str, float, str | None], truth: str | float) -> Joined:
        self.counts["joined"] += 1
        self._joined_ids[event_id] = self.stream_ms
        while len(self._joined_ids) > self.max_pending:
            self._joined_ids.popitem(last=False)
        version, score, predicted = held
        return Joined(event_id, version, score, predicted, truth)

    def _hold(self, side: OrderedDict, event_id: str, entry: tuple, evicted_as: str) -> None:
        side[event_id] = entry
        if len(side) > self.max_pending:
            side.popitem(last=False)
            self.counts[evicted_as] += 1

    def _advance(self, at_ms: int) -> None:
        if at_ms <= self.stream_ms:
            return
        self.stream_ms = at_ms
        horizon = at_ms - self.window_ms
        for side, name in ((self._predictions, "expired_predictions"), (self._labels, "unknown_labels")):
            while side:
                event_id, (held_at, _) = next(iter(side.items()))
                if held_at >= horizon:
                    break
                del side[event_id]
                self.counts[name] += 1
        while self._joined_ids and next(iter(self._joined_ids.values())) < horizon:
            self._joined_ids.popitem(last=False)


class Quality:
    """Live quality per model version over its last ``window`` joined pairs."""

    def __init__(self, is_classifier: bool, positive_label: str | None = None,
                 window: int = DEFAULT_QUALITY_WINDOW) -> None:
        self.is_classifier, self.positive, self.window = is_classifier, positive_label, window
        self._pairs: dict[str, deque[tuple[float, str | None, float]]] = {}  # version -> (score, predicted, truth)

    def add(self, joined: Joined) -> None:
        truth = float(joined.truth == self.positive) if self.is_classifier else float(joined.truth)
        self._pairs.setdefault(joined.model_version, deque(maxlen=self.window)).append(
            (joined.score, joined.predicted, truth))

    def report(self) -> dict[str, dict[str, Any]]:
        return {version: self._measure(pairs) for version, pairs in sorted(self._pairs.items())}

    def _measure(self, pairs: deque[tuple[float, str | None, float]]) -> dict[str, Any]:
        scores = np.array([p[0] for p in pairs])
        truth = np.array([p[2] for p in pairs])
        out: dict[str, Any] = {"pairs": len(pairs)}
        if not self.is_classifier:
            errors = scores - truth
            out.update(mae=float(np.mean(np.abs(errors))), rmse=float(np.sqrt(np.mean(errors ** 2))))
            return out
        from sklearn.metrics import roc_auc_score

        flagged = np.array([p[1] == self.positive for p in pairs])
        positives = truth == 1.0
        out["positives"] = int(positives.sum())
        out["roc_auc"] = float(roc_auc_score(truth, scores)) if 0 < positives.sum() < len(truth) else None
        out["precision"] = float(positives[flagged].mean()) if flagged.any() else None
        out["recall"] = float(flagged[positives].mean()) if positives.any() else None
        out["brier"] = float(np.mean((scores - truth) ** 2))
        out["calibration"] = _calibration(scores, truth)
        return out


def _calibration(scores: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """Mean score against the observed positive rate, per decile of score (equal counts)."""
    order = np.argsort(scores, kind="stable")
    return [{"mean_score": float(scores[chunk].mean()), "positive_rate": float(truth[chunk].mean()),
             "pairs": len(chunk)} for chunk in np.array_split(order, 10) if len(chunk)]
