"""The direct prediction encoder writes exactly the bytes fastavro writes for the contract."""
import json
import types

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import REPO, load_test_pipeline
from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.columnar_predictions import ColumnarPredictionEncoder
from workers.core.framing import RegistryEncoder
from workers.core.prediction_encoder import PredictionEncoder

STORE = SchemaStore(REPO / "schemas")
CONTRACT = STORE.get("prediction.v1.avsc")
CODEC = SingleObjectCodec(STORE, CONTRACT)
text = st.text(max_size=40)
longs = st.integers(-(2**63), 2**63 - 1)
predictions = st.fixed_dictionaries({
    "event_id": text, "key": st.none() | text, "score": st.floats(allow_nan=True, allow_infinity=True),
    "label": st.none() | st.sampled_from(["fraud", "legit", "ünïcode"]), "model_name": text, "model_version": text,
    "model_sha256": text, "input_schema_fingerprint": text, "source_topic": text,
    "source_partition": st.integers(-(2**31), 2**31 - 1), "source_offset": longs, "event_time": longs,
    "scored_at": longs, "flags": st.lists(st.sampled_from(["late", "imputed", "replayed", "x" * 70]), max_size=3),
})


SHARED = PredictionEncoder(CODEC.header)  # its memos live across examples, as across a stream


@settings(max_examples=1500, deadline=None)
@given(predictions)
def test_same_bytes_as_fastavro_in_both_framings(prediction):
    single = PredictionEncoder(CODEC.header)
    assert single.encode(prediction) == CODEC.encode(prediction)
    assert SHARED.encode(prediction) == CODEC.encode(prediction)
    registry = RegistryEncoder(CONTRACT, 123456)
    assert PredictionEncoder(registry.header).encode(prediction) == registry.encode(prediction)


@settings(max_examples=200, deadline=None)
@given(st.lists(predictions, min_size=2, max_size=20), st.sampled_from(["m1", "m2"]), longs)
def test_one_encoder_for_a_stream_of_predictions(stream, model_name, scored_at):
    """Predictions of one batch share a model, a topic and a scored_at; the memos must not mix them up."""
    encoder = PredictionEncoder(CODEC.header)
    for i, p in enumerate(stream):
        p = {**p, "model_name": model_name if i % 3 else p["model_name"], "scored_at": scored_at}
        assert encoder.encode(p) == CODEC.encode(p)


def test_only_the_exact_contract_is_encoded_directly():
    contract = CONTRACT.definition
    assert PredictionEncoder.fits(contract)
    extra = {**contract, "fields": [*contract["fields"], {"name": "extra", "type": "string", "default": ""}]}
    reordered = {**contract, "fields": list(reversed(contract["fields"]))}
    wider = json.loads(json.dumps(contract).replace('"name": "source_partition", "type": "int"',
                                                    '"name": "source_partition", "type": "long"'))
    assert wider != contract
    for other in (extra, reordered, wider, {"type": "string"}, None):
        assert not PredictionEncoder.fits(other)


def test_the_reference_pipeline_encodes_its_predictions_directly():
    pipeline = load_test_pipeline()
    assert isinstance(pipeline._encode_predictions.__self__, ColumnarPredictionEncoder)
    assert isinstance(load_test_pipeline(columnar_codecs=False)._encode_predictions, types.LambdaType)
