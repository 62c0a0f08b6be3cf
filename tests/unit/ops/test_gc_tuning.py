"""The worker's collector settings, and the benchmark ceiling's borrowing of them."""
from __future__ import annotations

import gc

from workers.ops import gc_tuning


def test_tuned_applies_the_workers_settings_and_restores_the_previous_ones():
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with gc_tuning.tuned():
        assert gc.get_threshold() == gc_tuning.THRESHOLDS
        assert gc.get_freeze_count() > 0  # what was alive before is no longer traversed
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_heap_frozen_before_stays_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_tuning.tuned():
            assert gc.get_threshold() == gc_tuning.THRESHOLDS
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
