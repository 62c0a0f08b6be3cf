"""The benchmark's latency consumer reads a prediction's event time without decoding the rest."""
from hypothesis import given, settings

from tests.unit.core.test_prediction_encoder import CODEC, predictions
from workers.dev.bench import contract_event_time


@settings(max_examples=400, deadline=None)
@given(predictions)
def test_the_event_time_is_the_one_fastavro_reads(prediction):
    value = CODEC.encode(prediction)
    assert contract_event_time(value, len(CODEC.header)) == CODEC.decode(value)[0]["event_time"]
