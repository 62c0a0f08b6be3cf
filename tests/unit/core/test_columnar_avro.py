"""The batch decoder gives exactly what fastavro gives, or leaves the record to fastavro."""
import io
import math
import struct
import time

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import load_test_pipeline, payload_of_kind
from workers.core.codec import HEADER_SIZE, read_body
from workers.core.columnar_avro import ColumnarDecoder
from workers.core.records import InputRecord
from workers.dev import fraud_data as fraud
from workers.dev.bad_inputs import BAD_KINDS

NOW = int(time.time() * 1000)

EVERY_KIND = fastavro.parse_schema({
    "type": "record", "name": "Every", "namespace": "t", "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "amount", "type": "double"},
        {"name": "text", "type": "string"},
        {"name": "blob", "type": "bytes"},
        {"name": "nothing", "type": "null"},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "maybe_text", "type": ["null", "string"]},
        {"name": "maybe_amount", "type": ["double", "null"]},
        {"name": "maybe_colour", "type": ["null", {"type": "enum", "name": "Shade", "symbols": ["LIGHT", "DARK"]}]},
    ]})

_record_strategy = st.fixed_dictionaries({
    "flag": st.booleans(),
    "small": st.integers(-(2**31), 2**31 - 1),
    "big": st.integers(-(2**63), 2**63 - 1),
    "ratio": st.floats(width=32, allow_nan=False),
    "amount": st.floats(allow_nan=True, allow_infinity=True),
    "text": st.text(),
    "blob": st.binary(max_size=40),
    "nothing": st.none(),
    "colour": st.sampled_from(["RED", "GREEN", "BLUE"]),
    "maybe_text": st.none() | st.text(max_size=20),
    "maybe_amount": st.none() | st.floats(allow_nan=False),
    "maybe_colour": st.none() | st.sampled_from(["LIGHT", "DARK"]),
})


def _encode(schema, record, prefix=b"HEADER-10b"):
    out = io.BytesIO()
    out.write(prefix)
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def _fastavro(schema, payload, start):
    """fastavro's reading of one body, exactly as the codec does it (None: it refuses the body)."""
    body = io.BytesIO(payload)
    body.seek(start)
    try:
        record = fastavro.schemaless_reader(body, schema, None)
    except Exception:
        return None
    return record if body.tell() == len(payload) else None


def _same(a, b):
    """Equal values of equal types; NaN equal to NaN."""
    if a is None or b is None:
        return a is b
    assert a.keys() == b.keys()
    for k in a:
        assert type(a[k]) is type(b[k]), k
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert math.isnan(b[k]), k
        else:
            assert a[k] == b[k], k
    return True


@pytest.fixture(scope="module")
def every_kind():
    decoder = ColumnarDecoder.plan(EVERY_KIND)
    assert decoder is not None
    return decoder


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_record_strategy, min_size=1, max_size=30))
def test_every_supported_type_decodes_as_fastavro_does(every_kind, records):
    payloads = [_encode(EVERY_KIND, r) for r in records]
    decoded = every_kind.decode(payloads, [10] * len(payloads))
    assert len(decoded) == len(payloads)
    for payload, mine in zip(payloads, decoded, strict=True):
        assert mine is not None
        assert _same(mine, _fastavro(EVERY_KIND, payload, 10))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_record_strategy, st.integers(0, 200), st.binary(min_size=1, max_size=4),
       st.sampled_from(["cut", "flip", "add"]))
def test_a_spoiled_body_is_read_as_fastavro_reads_it_or_left_to_it(every_kind, record, where, noise, how):
    """Whatever the bytes, the decoder never gives a value fastavro would not give."""
    good = _encode(EVERY_KIND, record)
    at = 10 + where % max(1, len(good) - 10)
    if how == "cut":
        payload = good[:at]
    elif how == "flip":
        payload = good[:at] + bytes(b ^ 0xFF for b in noise) + good[at + len(noise):]
    else:
        payload = good + noise
    neighbour = _encode(EVERY_KIND, record)
    decoded = every_kind.decode([neighbour, payload, neighbour], [10] * 3)
    assert _same(decoded[0], _fastavro(EVERY_KIND, neighbour, 10))  # a bad body does not spill over
    assert _same(decoded[2], _fastavro(EVERY_KIND, neighbour, 10))
    if decoded[1] is not None:
        assert _same(decoded[1], _fastavro(EVERY_KIND, payload, 10))


@pytest.mark.parametrize(("field_type", "body"), [
    ("boolean", b"\x02"),  # a boolean byte other than 0 or 1
    (["null", "long"], b"\x04\x00"),  # union branch 2 of 2
    ("long", b"\xff" * 9 + b"\x02"),  # a varint over 64 bits
    ("string", b"\x06ab"),  # a string longer than the body
    ("long", b"\x02\x00"),  # a trailing byte
    ("string", b"\xfe" + b"\xff" * 8 + b"\x01"),  # a length of 2**63 - 1 (pos + length would wrap)
    ("bytes", b"\x80" + b"\x80" * 8 + b"\x01"),  # a length of 2**62
])
def test_what_only_fastavro_may_judge_is_left_to_it(field_type, body):
    schema = fastavro.parse_schema({"type": "record", "name": "One", "fields": [{"name": "f", "type": field_type}]})
    decoder = ColumnarDecoder.plan(schema)
    assert decoder is not None
    fine = _encode(schema, {"f": {"boolean": True, "string": "x", "bytes": b"x"}.get(str(field_type), 7)})
    expected = {"f": _fastavro(schema, fine, 10)["f"]}
    assert decoder.decode([fine, b"HEADER-10b" + body, fine], [10] * 3) == [expected, None, expected]


def test_a_string_that_is_not_utf8_is_left_to_fastavro_alone(every_kind):
    records = [dict(flag=True, small=1, big=2, ratio=0.5, amount=1.0, text=t, blob=b"", nothing=None,
                    colour="RED", maybe_text=None, maybe_amount=None, maybe_colour=None) for t in ("ab", "cd", "ef")]
    payloads = [_encode(EVERY_KIND, r) for r in records]
    spoiled = payloads[1].replace(b"\x04cd", b"\x04\xff\xfe")
    decoded = every_kind.decode([payloads[0], spoiled, payloads[2]], [10] * 3)
    assert decoded[1] is None
    assert decoded[0]["text"] == "ab" and decoded[2]["text"] == "ef"


@pytest.mark.parametrize("field_type", [
    {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]},
    {"type": "array", "items": "int"},
    {"type": "map", "values": "int"},
    {"type": "fixed", "name": "F", "size": 4},
    ["null", "int", "string"],
    ["int", "string"],
    {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
    {"type": "string", "logicalType": "uuid"},
])
def test_schemas_it_does_not_cover_get_no_plan(field_type):
    schema = fastavro.parse_schema({"type": "record", "name": "Outer", "fields": [
        {"name": "a", "type": "long"}, {"name": "b", "type": field_type}]})
    assert ColumnarDecoder.plan(schema) is None


def test_the_reference_schema_decodes_as_the_codec_does(fraud_pipeline):
    reader = fraud_pipeline.input_codec.reader
    decoder = ColumnarDecoder.plan(reader.plain)
    assert decoder is not None
    events, _ = fraud.generate(300, seed=11, start_ms=NOW)
    for i, event in enumerate(events[::7]):
        event["distance_from_home_km"] = None if i % 2 else event["distance_from_home_km"]
    payloads = [fraud_pipeline.input_codec.encode(e) for e in events]
    for payload, mine in zip(payloads, decoder.decode(payloads, [HEADER_SIZE] * len(payloads)), strict=True):
        assert _same(mine, read_body(payload, HEADER_SIZE, reader, reader))


def test_the_pipeline_gives_the_same_outputs_with_and_without_it(fraud_pipeline):
    """Every kind of bad input, old-schema events and JSON rows in one batch: byte-identical outputs."""
    plain = load_test_pipeline(columnar_codecs=False)
    assert fraud_pipeline._columnar is not None and plain._columnar is None
    events, _ = fraud.generate(120, seed=3, start_ms=NOW - 1000)
    codec = fraud_pipeline.input_codec
    kinds = ["good", "good", "old_schema", *BAD_KINDS]
    records = []
    for i, event in enumerate(events):
        value = payload_of_kind(kinds[i % len(kinds)], event, fraud_pipeline, NOW)
        records.append(InputRecord(value=value, key=event["account_id"].encode(), topic="in", partition=i % 3,
                                   offset=i, timestamp_ms=NOW, headers=[]))
    records.append(InputRecord(value=codec.header + struct.pack("<d", 1.0), key=None, topic="in", partition=0,
                               offset=999, timestamp_ms=NOW, headers=[]))

    mine, theirs = fraud_pipeline.process(records, NOW), plain.process(records, NOW)

    assert mine.predictions == theirs.predictions > 0
    assert mine.dead_letters == theirs.dead_letters
    assert set(mine.dead_letters) >= set(BAD_KINDS.values())
    assert [(o.topic, o.key, o.value, o.headers) for o in mine.outputs] == \
        [(o.topic, o.key, o.value, o.headers) for o in theirs.outputs]


def test_registry_framed_events_of_the_input_schema_take_it_too():
    """Both framings on one topic: the input schema's own id and single-object events go columnar,
    an older writer schema's id, an unknown id and spoiled bodies are read as before."""
    def pipeline(columnar):
        p = load_test_pipeline(input_framing="both", schema_registry_url="http://registry.invalid",
                               columnar_codecs=columnar)
        store = p.input_codec._store
        p.registered.add(7, store.get("fraud/transaction.v2.avsc").definition)
        p.registered.add(4242, store.get("fraud/transaction.v1.avsc").definition)
        p.registered.add(99, None)
        return p

    mine, theirs = pipeline(True), pipeline(False)
    v1 = mine.input_codec._store.get("fraud/transaction.v1.avsc")
    events, _ = fraud.generate(60, seed=9, start_ms=NOW - 1000)
    values = []
    for i, event in enumerate(events):
        old = {k: v for k, v in event.items() if k != "device_trust_score"}
        values.append([
            mine.input_codec.encode(event),
            _encode(mine.input_codec.reader.plain, event, b"\x00" + (7).to_bytes(4, "big")),
            _encode(v1.plain, old, b"\x00" + (4242).to_bytes(4, "big")),
            _encode(mine.input_codec.reader.plain, event, b"\x00" + (99).to_bytes(4, "big")),
            _encode(mine.input_codec.reader.plain, event, b"\x00" + (7).to_bytes(4, "big"))[:-2],
        ][i % 5])
    records = [InputRecord(v, b"k", "in", 0, i, NOW, []) for i, v in enumerate(values)]
    columnar = mine._columnar_batch(records)
    assert columnar is not None
    positions, columns = columnar
    assert len(positions) == 36  # 12 single-object, 12 of id 7 and the 12 cut ones of id 7
    assert columns.good.count(True) == 24  # the cut ones are left to fastavro

    a, b = mine.process(records, NOW), theirs.process(records, NOW)

    assert a.predictions == b.predictions == 36
    assert a.dead_letters == b.dead_letters
    assert [(o.topic, o.key, o.value, o.headers) for o in a.outputs] == \
        [(o.topic, o.key, o.value, o.headers) for o in b.outputs]


@pytest.mark.parametrize("length", [b"\xfe" + b"\xff" * 8 + b"\x01", b"\x80" * 9 + b"\x01", b"\xfe\xff\xff\xff\x0f"])
def test_a_huge_length_followed_by_more_fields_is_left_to_fastavro(length):
    """The walk must not run past the body when a length is near 2**63 and fields follow it."""
    schema = fastavro.parse_schema({"type": "record", "name": "Two", "fields": [
        {"name": "s", "type": "string"}, {"name": "n", "type": "long"}, {"name": "b", "type": "boolean"}]})
    decoder = ColumnarDecoder.plan(schema)
    fine = _encode(schema, {"s": "abc", "n": 5, "b": True})
    assert decoder.decode([fine, b"HEADER-10b" + length + b"\x00\x01", fine], [10] * 3) == [
        {"s": "abc", "n": 5, "b": True}, None, {"s": "abc", "n": 5, "b": True}]
