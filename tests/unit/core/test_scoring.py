import numpy as np
import pytest

from tests.factories import REPO
from workers.core.manifest import Manifest
from workers.core.scoring import Scorer

MANIFEST = Manifest.load(REPO / "models" / "fraud" / "1.0.0" / "manifest.json")


class FlakyModel:
    """Raises on any batch that contains a row whose first value is negative."""

    classes_ = np.array([0, 1])

    def __init__(self):
        self.calls = 0

    def predict_proba(self, x):
        self.calls += 1
        if (x[:, 0] < 0).any():
            raise ValueError("negative input")
        p = 1 / (1 + np.exp(-x[:, 0]))
        return np.column_stack([1 - p, p])


def test_scores_equal_the_models_own_predict_proba(fraud_pipeline):
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(1, 500, 300), rng.integers(0, 8, 300), rng.integers(0, 3, 300),
                         rng.integers(0, 2, 300), rng.integers(0, 2, 300), rng.uniform(0, 3000, 300),
                         rng.integers(0, 5, 300), rng.uniform(1, 300, 300), rng.uniform(0, 100, 300),
                         rng.uniform(0, 1, 300)])
    scores, failures = fraud_pipeline.scorer.score(x)
    assert failures == {}
    np.testing.assert_array_equal(scores, fraud_pipeline.model.model.predict_proba(x)[:, 1])


@pytest.mark.parametrize("bad_rows", [[], [0], [7], [0, 63], [5, 6, 7, 40]])
def test_failing_rows_are_isolated_and_the_rest_scored(bad_rows):
    model = FlakyModel()
    x = np.ones((64, 2))
    x[bad_rows, 0] = -1
    scores, failures = Scorer(MANIFEST, model).score(x)
    assert sorted(failures) == bad_rows
    good = [i for i in range(64) if i not in bad_rows]
    np.testing.assert_allclose(scores[good], 1 / (1 + np.exp(-1)))
    if not bad_rows:
        assert model.calls == 1  # one vectorized call per batch
    else:
        assert model.calls <= 1 + 2 * len(bad_rows) * 7  # bisection, not row by row


def test_non_finite_scores_are_failures():
    class NanModel(FlakyModel):
        def predict_proba(self, x):
            out = super().predict_proba(np.abs(x))
            out[1] = np.nan
            return out

    scores, failures = Scorer(MANIFEST, NanModel()).score(np.ones((3, 2)))
    assert list(failures) == [1]
    assert np.isfinite(scores[[0, 2]]).all()


def test_a_model_failing_every_row_costs_at_most_the_call_budget():
    """Without a bound, isolating 500 failing rows takes 999 calls on the event loop."""
    model = FlakyModel()
    scorer = Scorer(MANIFEST, model, lean=False, max_calls=64)
    x = -np.ones((500, 10))
    scores, failures = scorer.score(x)
    assert model.calls == scorer.calls == 64
    assert sorted(failures) == list(range(500)) and np.isnan(scores).all()
    unresolved = [e for e in failures.values() if "not split further" in str(e)]
    assert unresolved and "negative input" in str(unresolved[0])


def test_the_budget_does_not_change_a_few_failing_rows():
    model = FlakyModel()
    x = np.ones((500, 10))
    x[[3, 250, 499], 0] = -1
    scores, failures = Scorer(MANIFEST, model, lean=False, max_calls=64).score(x)
    assert sorted(failures) == [3, 250, 499]
    assert all(isinstance(e, ValueError) for e in failures.values())  # each one isolated
    assert np.isfinite(np.delete(scores, [3, 250, 499])).all()
