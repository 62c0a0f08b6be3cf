import numpy as np

from workers.core.drift import DriftMonitor
from workers.dev import fraud_data as fraud


def _matrix(fraud_pipeline, n, seed, amount_factor=1.0):
    events, _ = fraud.generate(n, seed)
    for e in events:
        e["amount"] *= amount_factor
    return np.array([fraud_pipeline.features.row(e, []) for e in events])


def test_reference_like_data_does_not_drift(fraud_pipeline):
    monitor = DriftMonitor(fraud_pipeline.manifest, window=2000)
    monitor.update(_matrix(fraud_pipeline, 2000, 3), None)
    psi = monitor.psi()
    assert set(psi) >= set(fraud_pipeline.manifest.feature_names)
    assert max(psi.values()) < 0.05
    assert monitor.changes(psi) == (set(), set())


def test_shift_is_reported_once_then_cleared_as_the_window_slides(fraud_pipeline):
    monitor = DriftMonitor(fraud_pipeline.manifest, window=1000)
    for _ in range(2):
        monitor.update(_matrix(fraud_pipeline, 500, 4, amount_factor=8.0), None)
    psi = monitor.psi()
    assert psi["amount"] > 0.2 and psi["merchant_category"] < 0.05
    assert monitor.changes(psi) == ({"amount"}, set())
    assert monitor.changes(monitor.psi()) == (set(), set())  # reported once, not per batch
    for seed in (5, 6, 7):  # unshifted batches push the shifted ones out of the window
        monitor.update(_matrix(fraud_pipeline, 500, seed), None)
    assert monitor.window_events == 1000
    assert monitor.changes(monitor.psi()) == (set(), {"amount"})


def test_too_few_events_are_not_judged(fraud_pipeline):
    monitor = DriftMonitor(fraud_pipeline.manifest, window=5000)
    monitor.update(_matrix(fraud_pipeline, 100, 8, amount_factor=8.0), None)
    assert monitor.changes(monitor.psi()) == (set(), set())


def test_no_alert_before_the_window_is_full(fraud_pipeline):
    """The README's window is what is judged: a shift is not reported from a partial window."""
    monitor = DriftMonitor(fraud_pipeline.manifest, window=5000)
    for _ in range(9):  # 4,500 shifted events: drifted by far, but the window is not full yet
        monitor.update(_matrix(fraud_pipeline, 500, 9, amount_factor=8.0), None)
        assert monitor.changes(monitor.psi()) == (set(), set())
    monitor.update(_matrix(fraud_pipeline, 500, 9, amount_factor=8.0), None)
    assert monitor.window_events == 5000
    assert monitor.changes(monitor.psi()) == ({"amount"}, set())
