"""A batch's predictions encoded in one compiled pass: the same bytes as one by one."""
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import load_test_pipeline, payload_of_kind
from tests.unit.core.test_prediction_encoder import CODEC, CONTRACT, predictions
from workers.core.columnar_predictions import COLUMNAR_FROM, ColumnarPredictionEncoder
from workers.core.framing import RegistryEncoder
from workers.core.prediction_encoder import PredictionEncoder
from workers.core.records import InputRecord
from workers.dev import fraud_data as fraud
from workers.dev.bad_inputs import BAD_KINDS

NOW = int(time.time() * 1000)

SINGLE = ColumnarPredictionEncoder(PredictionEncoder(CODEC.header))
REGISTRY = ColumnarPredictionEncoder(PredictionEncoder(RegistryEncoder(CONTRACT, 123456).header))


@settings(max_examples=120, deadline=None)
@given(st.lists(predictions, min_size=COLUMNAR_FROM, max_size=80))
def test_any_batch_gives_the_bytes_of_the_direct_encoder(batch):
    """Every field varies here: unicode, nulls, flags, extreme longs, many distinct blocks."""
    assert SINGLE.encode_many(batch) == [CODEC.encode(p) for p in batch]
    assert REGISTRY.encode_many(batch) == [REGISTRY._encoder.encode(p) for p in batch]


@settings(max_examples=100, deadline=None)
@given(predictions, st.lists(st.sampled_from(["legit", "fraud", None]), min_size=COLUMNAR_FROM, max_size=120),
       st.integers(0, 2**40))
def test_a_stream_like_batch_where_only_the_label_and_offsets_vary(base, labels, first_offset):
    batch = [{**base, "label": label, "source_offset": first_offset + i, "event_id": f"e{i}"}
             for i, label in enumerate(labels)]
    assert SINGLE.encode_many(batch) == [CODEC.encode(p) for p in batch]


PREDICTION = {
    "event_id": "é-1", "key": "acct-1", "score": 0.25, "label": "legit", "model_name": "fraud",
    "model_version": "1.0.0", "model_sha256": "ab" * 32, "input_schema_fingerprint": "0123456789abcdef",
    "source_topic": "in", "source_partition": 3, "source_offset": 10**12, "event_time": -5, "scored_at": 2**62,
    "flags": ["late"],
}


def test_small_batches_and_the_empty_one():
    assert SINGLE.encode_many([]) == []
    assert SINGLE.encode_many([PREDICTION] * (COLUMNAR_FROM - 1)) == [CODEC.encode(PREDICTION)] * (COLUMNAR_FROM - 1)


def test_a_long_out_of_range_is_encoded_one_by_one():
    p = {**PREDICTION, "source_offset": 2**64}
    batch = [PREDICTION, p] * COLUMNAR_FROM
    assert SINGLE.encode_many(batch) == [SINGLE._encoder.encode(q) for q in batch]


def test_the_pipeline_writes_the_same_outputs_with_and_without_it():
    """Predictions and dead letters interleaved, keys and partitions mixed: byte-identical outputs."""
    columnar, plain = load_test_pipeline(), load_test_pipeline(columnar_codecs=False)
    events, _ = fraud.generate(150, seed=5, start_ms=NOW - 1000)
    kinds = ["good"] * 6 + ["old_schema", *BAD_KINDS]
    batch = [InputRecord(payload_of_kind(kinds[i % len(kinds)], event, columnar, NOW), event["account_id"].encode(),
                         "in", i % 3, 1000 + i, NOW, []) for i, event in enumerate(events)]

    mine, theirs = columnar.process(batch, NOW), plain.process(batch, NOW)

    assert mine.predictions == theirs.predictions >= 2 * COLUMNAR_FROM
    assert [(o.topic, o.key, o.value, o.headers, o.prediction) for o in mine.outputs] == \
        [(o.topic, o.key, o.value, o.headers, o.prediction) for o in theirs.outputs]
