"""`workers quality --port`: the report becomes metrics and a status page."""
from prometheus_client import generate_latest

from workers.ops.quality_monitor import QualityMonitor


def test_a_report_becomes_gauges_per_version_and_join_outcome():
    monitor = QualityMonitor("fraud")
    report = {"pipeline": "fraud", "window_s": 60.0, "counts": {"joined": 7, "unknown_labels": 2},
              "pending": {"predictions": 3, "labels": 1},
              "by_model_version": {"1.0.0": {"pairs": 7, "roc_auc": 0.91, "precision": None,
                                             "calibration": [{"mean_score": 0.1}]}}}
    monitor.update(report)
    text = generate_latest(monitor.metrics.registry).decode()
    assert 'workers_quality_figure{figure="roc_auc",model_version="1.0.0",pipeline="fraud"} 0.91' in text
    assert 'figure="precision"' not in text and 'figure="calibration"' not in text  # no value, no sample
    assert 'workers_label_join_records{outcome="unknown_labels",pipeline="fraud"} 2.0' in text
    assert 'workers_label_join_records{outcome="pending_predictions",pipeline="fraud"} 3.0' in text
    assert monitor.status() == report and monitor.is_alive() and monitor.readiness()["ready"]
