"""The deliberately bad versions pass verification and misbehave only when they score."""
from __future__ import annotations

import shutil
import time

import numpy as np

from tests.bad_models import write_bad_version
from tests.factories import REPO, load_test_pipeline
from workers.core.records import InputRecord
from workers.dev import fraud_data as fraud

NOW = int(time.time() * 1000)


def _batch(pipeline, events):
    return [InputRecord(pipeline.input_codec.encode(e), b"k", "in", 0, i, NOW, []) for i, e in enumerate(events)]


def test_a_shifted_and_a_slice_failing_version_load_verified_and_misbehave(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "fraud", models / "fraud")
    events, _ = fraud.generate(200, seed=7, start_ms=NOW - 1000)
    bound = float(np.percentile([e["amount"] for e in events], 97))  # a few rows (isolation is bounded)
    write_bad_version(models, "1.2.0-shifted", shift=0.3)
    write_bad_version(models, "1.2.0-failing", fail_above=bound)
    good = load_test_pipeline(models=models, model_version="1.1.0")
    shifted = load_test_pipeline(models=models, model_version="1.2.0-shifted")
    failing = load_test_pipeline(models=models, model_version="1.2.0-failing")
    expected = good.process(_batch(good, events))
    scores = {o.prediction["event_id"]: o.prediction["score"] for o in expected.outputs}

    moved = shifted.process(_batch(shifted, events))
    assert moved.predictions == 200
    np.testing.assert_allclose([o.prediction["score"] for o in moved.outputs],
                               [min(1.0, scores[o.prediction["event_id"]] + 0.3) for o in moved.outputs])

    partial = failing.process(_batch(failing, events))
    above = {e["event_id"] for e in events if e["amount"] > bound}
    assert 0 < len(above) < 200
    assert dict(partial.dead_letters) == {"inference_error": len(above)}
    scored = {o.prediction["event_id"] for o in partial.outputs if o.prediction}
    assert scored == {e["event_id"] for e in events} - above
