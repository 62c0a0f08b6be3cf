"""What `workers quality --port` serves: live quality per model version as Prometheus metrics and
a status page, refreshed from the label join every second (``workers.kafka.quality.measure``)."""
from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

LIVENESS_TIMEOUT_S = 30.0
PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>live quality</title>
<style>body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; } td { padding: 2px 8px; text-align: right; }
th { text-align: left; padding: 2px 8px; } .sub { color: #666; }</style></head>
<body><h1>Live quality <span id="pipeline"></span></h1><div class="sub" id="counts"></div>
<table id="versions"></table>
<script>
async function refresh() {
  const s = await (await fetch("status.json", {cache: "no-store"})).json();
  document.getElementById("pipeline").textContent = s.pipeline || "";
  document.getElementById("counts").textContent = "label join: " + JSON.stringify(s.counts || {}) +
    " - waiting: " + JSON.stringify(s.pending || {});
  const table = document.getElementById("versions");
  table.innerHTML = "";
  const versions = s.by_model_version || {};
  const names = [...new Set(Object.values(versions).flatMap(v => Object.keys(v)))].filter(k => k !== "calibration");
  const head = table.insertRow();
  for (const n of ["model version", ...names]) {
    const th = document.createElement("th"); th.textContent = n; head.appendChild(th);
  }
  for (const [version, figures] of Object.entries(versions)) {
    const tr = table.insertRow();
    tr.insertCell().textContent = version;
    for (const n of names) {
      const v = figures[n];
      tr.insertCell().textContent = v === undefined || v === null ? "-" : Number.isInteger(v) ? v : v.toFixed(4);
    }
  }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


class QualityMonitor:
    """Read by the HTTP endpoints (``workers.ops.http``), like a worker's monitor."""

    page = PAGE

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.registry = r = CollectorRegistry()
        self.metrics = self  # the endpoints read ``monitor.metrics.registry``
        self.figures = Gauge("workers_quality_figure", "Live quality of a model version over its last joined pairs: "
                             "pairs, positives, roc_auc, precision, recall, brier (classifiers); mae, rmse "
                             "(regressors)", ["pipeline", "model_version", "figure"], registry=r)
        self.join = Gauge("workers_label_join_records", "The label join: joined, unknown_labels, "
                          "expired_predictions, duplicate_labels, ...; and pending_predictions, pending_labels",
                          ["pipeline", "outcome"], registry=r)
        self.report: dict[str, Any] = {"pipeline": pipeline, "counts": {}, "pending": {}, "by_model_version": {}}
        self.updated = time.monotonic()

    def update(self, report: dict[str, Any]) -> None:
        self.report, self.updated = report, time.monotonic()
        self.figures.clear()  # a figure that has no value now (one class in the window) shows none
        for version, figures in report["by_model_version"].items():
            for name, value in figures.items():
                if isinstance(value, (int, float)) and value is not None:
                    self.figures.labels(self.pipeline, version, name).set(value)
        for outcome, count in report["counts"].items():
            self.join.labels(self.pipeline, outcome).set(count)
        for side, count in report["pending"].items():
            self.join.labels(self.pipeline, f"pending_{side}").set(count)

    def is_alive(self) -> bool:
        return time.monotonic() - self.updated < LIVENESS_TIMEOUT_S

    def readiness(self) -> dict[str, Any]:
        return {"ready": self.is_alive(), "problems": [] if self.is_alive() else ["the label join stopped"]}

    def status(self) -> dict[str, Any]:
        return self.report
