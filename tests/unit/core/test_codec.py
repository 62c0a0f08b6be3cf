import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import REPO
from workers.core import reasons
from workers.core.codec import MAGIC, SchemaStore, SingleObjectCodec, schema_fingerprint
from workers.errors import RecordError, SchemaError

STORE = SchemaStore(REPO / "schemas")
V1 = STORE.get("fraud/transaction.v1.avsc")
V2 = STORE.get("fraud/transaction.v2.avsc")
CODEC = SingleObjectCodec(STORE, V2)


def crc64_avro(data: bytes) -> bytes:
    """The Avro spec's reference fingerprint algorithm, written out independently."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def test_fingerprint_matches_the_spec_algorithm_on_canonical_form():
    from fastavro.schema import to_parsing_canonical_form

    for stored in STORE:
        canonical = to_parsing_canonical_form(stored.parsed).encode()
        assert stored.fingerprint == crc64_avro(canonical)


def test_canonical_form_writes_logical_types_as_their_base_type():
    # Java's SchemaNormalization drops logicalType: a timestamp-millis field is plain "long".
    from fastavro.schema import to_parsing_canonical_form

    canonical = json.loads(to_parsing_canonical_form(V2.parsed))
    event_time = next(f for f in canonical["fields"] if f["name"] == "event_time")
    assert event_time["type"] == "long"


transactions = st.fixed_dictionaries(
    {
        "event_id": st.text(max_size=40),
        "account_id": st.text(max_size=20),
        "event_time": st.integers(min_value=0, max_value=2**50),
        "amount": st.floats(allow_nan=False),
        "merchant_category": st.text(max_size=12),
        "channel": st.sampled_from(["pos", "online", "atm"]),
        "card_present": st.booleans(),
        "foreign_country": st.booleans(),
        "account_age_days": st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "txn_count_1h": st.integers(min_value=0, max_value=2**31 - 1),
        "avg_amount_30d": st.floats(allow_nan=True),
        "distance_from_home_km": st.none() | st.floats(allow_nan=False),
        "device_trust_score": st.none() | st.floats(min_value=0, max_value=1),
    }
)


def _same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@given(transactions)
def test_round_trip_any_record(record):
    payload = CODEC.encode(record)
    assert payload[:2] == MAGIC and payload[2:10] == V2.fingerprint
    decoded, writer = CODEC.decode(payload)
    assert writer is V2
    assert isinstance(decoded["event_time"], int)  # epoch millis, not a datetime, on the hot path
    assert all(_same(decoded[k], record[k]) for k in record)


@given(transactions)
def test_old_schema_events_read_with_the_current_schema(record):
    old = {k: v for k, v in record.items() if k != "device_trust_score"}
    payload = CODEC.encode(old, writer=V1)
    assert payload[2:10] == V1.fingerprint
    decoded, writer = CODEC.decode(payload)
    assert writer is V1
    assert decoded["device_trust_score"] is None  # the v2 default fills the new field
    assert decoded["amount"] == old["amount"] or math.isnan(old["amount"])


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_get_a_reason(payload):
    try:
        record, _ = CODEC.decode(payload)
    except RecordError as exc:
        assert exc.reason in (reasons.CORRUPT, reasons.UNKNOWN_SCHEMA)
    else:
        assert isinstance(record, dict)


@settings(max_examples=300)
@given(transactions, st.data())
def test_spoiled_valid_payloads_never_escape_unclassified(record, data):
    payload = bytearray(CODEC.encode(record))
    position = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    payload[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(min_value=0, max_value=len(payload)))
    for candidate in (bytes(payload), bytes(payload[:cut]), bytes(payload) + b"\x01"):
        try:
            CODEC.decode(candidate)
        except RecordError as exc:
            assert exc.reason in (reasons.CORRUPT, reasons.UNKNOWN_SCHEMA)


GOOD = CODEC.encode(
    {"event_id": "e", "account_id": "a", "event_time": 1, "amount": 1.0, "merchant_category": "grocery",
     "channel": "pos", "card_present": True, "foreign_country": False, "account_age_days": 1, "txn_count_1h": 0,
     "avg_amount_30d": 2.0, "distance_from_home_km": None, "device_trust_score": 0.4}
)


@pytest.mark.parametrize(
    ("payload", "reason", "message"),
    [
        (b"", reasons.CORRUPT, "empty"),
        (b"\x00\x00\x00\x00\x01hello", reasons.CORRUPT, "magic"),
        (MAGIC + b"\x01\x02", reasons.CORRUPT, "short header"),
        (MAGIC + b"\xff" * 8 + GOOD[10:], reasons.UNKNOWN_SCHEMA, "fingerprint"),
        (GOOD[:-3], reasons.CORRUPT, "undecodable"),
        (GOOD + b"\x00", reasons.CORRUPT, "trailing"),
        (GOOD[:10], reasons.CORRUPT, "undecodable"),
    ],
)
def test_bad_payloads_are_classified(payload, reason, message):
    with pytest.raises(RecordError, match=message) as caught:
        CODEC.decode(payload)
    assert caught.value.reason == reason


def test_a_truncated_body_is_named_without_a_memory_address():
    with pytest.raises(RecordError) as caught:
        CODEC.decode(GOOD[:-3])
    assert "cannot read" in str(caught.value) and "0x" not in str(caught.value)


def test_unparseable_schema_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.avsc").write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}')
    with pytest.raises(SchemaError, match=r"bad\.avsc"):
        SchemaStore(tmp_path)


def test_fingerprint_depends_on_the_schema_only():
    assert schema_fingerprint(V1.parsed) != schema_fingerprint(V2.parsed)
    assert schema_fingerprint(V2.parsed) == V2.fingerprint
