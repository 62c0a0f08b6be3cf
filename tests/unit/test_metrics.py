import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from workers.metrics import LATENCY_BUCKETS, observe_many


def _samples(registry):
    return {(s.name, s.labels.get("le")): s.value for m in registry.collect() for s in m.samples
            if not s.name.endswith("_created")}


@pytest.mark.parametrize("values", [[], [0.0], [0.001, 0.0011, 0.05, 0.05, 7.0, 1e9], list(np.linspace(0, 400, 999))])
def test_vectorized_observe_equals_observe_one_by_one(values):
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=one)
    h2 = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=many)
    for v in values:
        h1.observe(v)
    observe_many(h2, np.asarray(values, dtype=float))
    assert _samples(one) == pytest.approx(_samples(many))
