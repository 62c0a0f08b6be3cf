"""The Schema Registry wire format beside single-object encoding, decoded by the pure core."""
import io
import re
import time

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import load_test_pipeline
from workers.core import deadletter, reasons
from workers.core.framing import (
    Framing,
    InputDecoder,
    RegisteredSchemas,
    RegistryEncoder,
    UnresolvedSchemaId,
    registry_id,
)
from workers.core.records import InputRecord
from workers.dev import fraud_data as fraud
from workers.errors import RecordError

NOW = int(time.time() * 1000)
V1, V2 = "fraud/transaction.v1.avsc", "fraud/transaction.v2.avsc"


def _registry_framed(schema_id: int, schema, record: dict) -> bytes:
    out = io.BytesIO()
    out.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, schema.plain, record)
    return out.getvalue()


@pytest.fixture(scope="module")
def both():
    """The reference pipeline accepting both framings (the registry itself is not asked here)."""
    return load_test_pipeline(input_framing="both", schema_registry_url="http://registry.invalid")


def _records(values: list[bytes]) -> list[InputRecord]:
    return [InputRecord(v, b"k", "in", 0, i, NOW, []) for i, v in enumerate(values)]


def test_one_topic_with_both_framings_scores_the_same(both, fraud_pipeline):
    events, _ = fraud.generate(30, seed=3, start_ms=NOW - 1000)
    store = both.input_codec._store
    v1, v2 = store.get(V1), store.get(V2)
    registered = both.registered
    # what a registry answers: ids are arbitrary (Apicurio's are not contiguous)
    registered.add(7, v2.definition)
    registered.add(4242, v1.definition)
    values, single_values = [], []  # the same events, in mixed framings and all single-object
    for i, event in enumerate(events):
        if i % 3 == 2:  # a producer still on v1
            old = {k: v for k, v in event.items() if k != "device_trust_score"}
            values.append(_registry_framed(4242, v1, old))
            single_values.append(both.input_codec.encode(old, writer=v1))
        else:
            values.append(both.input_codec.encode(event) if i % 3 == 0 else _registry_framed(7, v2, event))
            single_values.append(both.input_codec.encode(event))
    assert registered.missing(values) == set()

    mixed = both.process(_records(values), NOW)
    single = fraud_pipeline.process(_records(single_values), NOW)
    assert mixed.predictions == single.predictions == len(events)
    assert list(mixed.scores) == list(single.scores)
    decoded = [both.prediction_codec.decode(o.value)[0] for o in mixed.outputs]
    # the writer schema's fingerprint is the same whichever framing named it
    assert decoded[1]["input_schema_fingerprint"] == v2.fingerprint_hex
    assert decoded[2]["input_schema_fingerprint"] == v1.fingerprint_hex


def test_an_id_the_registry_does_not_know_is_unknown_schema_with_the_original_bytes(both):
    event = fraud.generate(1, seed=4, start_ms=NOW)[0][0]
    value = _registry_framed(99, both.input_codec.reader, event)
    both.registered.add(99, None)
    result = both.process(_records([value]), NOW)
    (output,) = result.outputs
    headers = deadletter.headers_dict(output.headers)
    assert headers[deadletter.REASON] == reasons.UNKNOWN_SCHEMA
    assert "schema id 99 is not in the schema registry" in headers[deadletter.ERROR_MESSAGE]
    assert output.value == value


def test_missing_lists_only_ids_not_yet_fetched_and_decoding_an_unfetched_one_is_a_bug(both):
    registered = RegisteredSchemas(both.input_codec._store)
    reader = both.input_codec.reader
    event = fraud.generate(1, seed=5, start_ms=NOW)[0][0]
    values = [_registry_framed(1, reader, event), _registry_framed(2, reader, event),
              both.input_codec.encode(event), b"\x00\x01", None, b""]
    assert registered.missing(values) == {1, 2}
    registered.add(1, reader.definition)
    assert registered.missing(values) == {2}
    decoder = InputDecoder(both.input_codec, Framing.BOTH, registered)
    assert decoder.decode(values[0])[0]["event_id"] == event["event_id"]
    with pytest.raises(UnresolvedSchemaId):
        decoder.decode(values[1])
    unknown = RegisteredSchemas(both.input_codec._store, unknown_retry_s=0.05)
    unknown.add(3, None)
    framed = _registry_framed(3, reader, event)
    assert unknown.missing([framed]) == set()  # the registry's "unknown" is believed for a while
    time.sleep(0.06)
    assert unknown.missing([framed]) == {3}  # then asked again: a schema registered since is found


@pytest.mark.parametrize(("framing", "value", "message"), [
    (Framing.REGISTRY, "single", "expected the schema registry wire format (magic byte 0), got Avro single-object"),
    (Framing.REGISTRY, b"\x00\x00\x01", "short header"),
    (Framing.REGISTRY, b"", "got empty payload"),
    (Framing.SINGLE_OBJECT, "registry", "not Avro single-object encoding"),
])
def test_a_framing_the_pipeline_does_not_accept_is_corrupt(both, framing, value, message):
    registered = RegisteredSchemas(both.input_codec._store)
    registered.add(1, both.input_codec.reader.definition)
    event = fraud.generate(1, seed=6, start_ms=NOW)[0][0]
    if value == "single":
        value = both.input_codec.encode(event)
    elif value == "registry":
        value = _registry_framed(1, both.input_codec.reader, event)
    decoder = InputDecoder(both.input_codec, framing, registered)
    with pytest.raises(RecordError, match=re.escape(message)) as caught:
        decoder.decode(value)
    assert caught.value.reason == reasons.CORRUPT


def test_registry_framing_needs_the_registrys_schemas(both):
    with pytest.raises(ValueError, match="needs the registry"):
        InputDecoder(both.input_codec, Framing.BOTH, None)


def test_predictions_in_the_registry_wire_format_carry_the_assigned_id(both):
    schema = both.prediction_codec.reader
    encoder = RegistryEncoder(schema, 123456)
    record = both.prediction_codec.decode(both.process(_records([
        both.input_codec.encode(fraud.generate(1, seed=7, start_ms=NOW)[0][0])]), NOW).outputs[0].value)[0]
    framed = encoder.encode(record)
    assert registry_id(framed) == 123456
    assert fastavro.schemaless_reader(io.BytesIO(framed[5:]), schema.plain, None) == record


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=120))
def test_any_bytes_after_a_known_id_are_decoded_or_dead_lettered_never_raised(both, body):
    registered = RegisteredSchemas(both.input_codec._store)
    registered.add(5, both.input_codec.reader.definition)
    decoder = InputDecoder(both.input_codec, Framing.REGISTRY, registered)
    try:
        decoder.decode(b"\x00\x00\x00\x00\x05" + body)
    except RecordError as exc:
        assert exc.reason in (reasons.CORRUPT, reasons.UNKNOWN_SCHEMA)


def test_a_pipeline_switched_in_between_batches_keeps_the_fetched_writer_schemas(both):
    """The engine fetches a batch's ids, then a rollout may switch the pipeline before it is scored."""
    successor = load_test_pipeline(input_framing="both", schema_registry_url="http://registry.invalid")
    both.registered.add(31, both.input_codec.reader.definition)
    successor.carry_over(both)
    event = fraud.generate(1, seed=8, start_ms=NOW)[0][0]
    value = _registry_framed(31, both.input_codec.reader, event)
    assert successor.registered.missing([value]) == set()
    assert successor.process(_records([value]), NOW).predictions == 1
