import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from workers.ops.metrics import LATENCY_BUCKETS, BatchHistogram


def _samples(registry):
    return {(s.name, s.labels.get("le")): s.value for m in registry.collect() for s in m.samples
            if not s.name.endswith("_created")}


@pytest.mark.parametrize("values", [[], [0.0], [0.001, 0.0011, 0.05, 0.05, 7.0, 1e9], list(np.linspace(0, 400, 999))])
def test_batch_histogram_equals_observe_one_by_one(values):
    one, many = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h", "h", ["pipeline"], buckets=LATENCY_BUCKETS, registry=one).labels("p")
    batch = BatchHistogram("h", "h", LATENCY_BUCKETS, {"pipeline": "p"})
    many.register(batch)
    for v in values:
        reference.observe(v)
    half = len(values) // 2  # two batches, as two scored batches would
    batch.observe_many(np.asarray(values[:half], dtype=float))
    batch.observe_many(np.asarray(values[half:], dtype=float))
    assert _samples(one) == pytest.approx(_samples(many))
    # the exposition text has the same bucket lines (same "le" spelling)
    bucket_lines = [line for line in generate_latest(one).decode().splitlines() if "_bucket" in line]
    assert bucket_lines == [line for line in generate_latest(many).decode().splitlines() if "_bucket" in line]
