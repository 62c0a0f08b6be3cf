"""Rows read by a file or HTTP adapter: checked against the input schema, then the same path as Avro."""
import json
import math
import time
from datetime import UTC, datetime

import pytest

from tests.factories import REPO, load_test_pipeline, make_sensor_pipeline, sensor_rows
from workers.core import reasons
from workers.core.deadletter import ERROR_MESSAGE, headers_dict
from workers.core.pipeline import JSON
from workers.core.records import InputRecord
from workers.dev import fraud_data as fraud
from workers.errors import RecordError

NOW = int(time.time() * 1000)


def _outcome(output):
    if output.is_dead_letter:
        return ("dead", output.reason, headers_dict(output.headers)[ERROR_MESSAGE])
    return ("scored", output.score, output.prediction["label"], output.prediction["flags"])


def _spoil(event, kind):
    event = dict(event)
    if kind == "missing":
        event["distance_from_home_km"] = None
    elif kind == "nan":
        event["amount"] = math.nan
    elif kind == "range":
        event["account_age_days"] = -1
    elif kind == "category":
        event["merchant_category"] = "zoo"
    elif kind == "late":
        event["event_time"] = NOW - 3_700_000
    elif kind == "future":
        event["event_time"] = NOW + 900_000
    elif kind == "imputed":
        event["device_trust_score"] = None
    return event


KINDS = ["good", "missing", "nan", "range", "category", "late", "future", "imputed"]


def test_a_row_gets_the_outcome_its_avro_encoding_gets(fraud_pipeline):
    """Every value Avro can carry: same score, label, flags, or the same reason and message."""
    events, _ = fraud.generate(len(KINDS) * 3, seed=4, start_ms=NOW - 1000)
    spoiled = [_spoil(e, KINDS[i % len(KINDS)]) for i, e in enumerate(events)]
    avro = [InputRecord(fraud_pipeline.input_codec.encode(e), None, "t", 0, i) for i, e in enumerate(spoiled)]
    rows = [InputRecord(None, None, "t", 0, i, decoded=e) for i, e in enumerate(spoiled)]
    lines = [InputRecord(json.dumps(e).encode(), None, "t", 0, i, value_format=JSON) for i, e in enumerate(spoiled)]
    expected = [_outcome(o) for o in fraud_pipeline.process(avro, NOW).outputs]
    assert [_outcome(o) for o in fraud_pipeline.process(rows, NOW).outputs] == expected
    assert [_outcome(o) for o in fraud_pipeline.process(lines, NOW).outputs] == expected
    assert {o[1] for o in expected if o[0] == "dead"} == {
        reasons.MISSING_FIELD, reasons.INVALID_VALUE, reasons.LATE, reasons.FUTURE_TIMESTAMP}


@pytest.mark.parametrize(("change", "reason", "message"), [
    ({"amount": "12.5"}, reasons.INVALID_VALUE, "field 'amount' is not double (got str)"),
    ({"card_present": 1}, reasons.INVALID_VALUE, "field 'card_present' is not boolean (got int)"),
    ({"account_age_days": 2**40}, reasons.INVALID_VALUE, "field 'account_age_days' is not int (got int)"),
    ({"account_age_days": 3.5}, reasons.INVALID_VALUE, "field 'account_age_days' is not int (got float)"),
    ({"channel": None}, reasons.MISSING_FIELD, "required field 'channel' is missing or null"),
    ({"event_id": "ab\ud800"}, reasons.INVALID_VALUE,
     "field 'event_id' is not string (got str with a lone surrogate, not UTF-8 text)"),
    ({"event_time": "yesterday"}, reasons.INVALID_VALUE,
     "field 'event_time' is not long (timestamp-millis) (got str)"),
])
def test_a_value_avro_could_not_carry_is_named_with_its_reason(fraud_pipeline, change, reason, message):
    event = {**fraud.generate(1, seed=2, start_ms=NOW)[0][0], **change}
    with pytest.raises(RecordError) as caught:
        fraud_pipeline.rows.read(event)
    assert (caught.value.reason, str(caught.value)) == (reason, message)


def test_absent_fields_take_their_defaults_and_absent_required_ones_are_missing(fraud_pipeline):
    event = fraud.generate(1, seed=2, start_ms=NOW)[0][0]
    event.pop("device_trust_score")  # optional in the schema: its default, null, then imputed
    assert fraud_pipeline.rows.read(event)["device_trust_score"] is None
    event.pop("amount")
    with pytest.raises(RecordError, match="required field 'amount' is missing") as caught:
        fraud_pipeline.rows.read(event)
    assert caught.value.reason == reasons.MISSING_FIELD


def test_types_are_promoted_as_avro_resolution_would(fraud_pipeline):
    event = fraud.generate(1, seed=2, start_ms=NOW)[0][0]
    moment = datetime.fromtimestamp(NOW / 1000, UTC)
    read = fraud_pipeline.rows.read({**event, "amount": 12, "account_age_days": 30.0,
                                     "event_time": moment.replace(tzinfo=None)})
    assert read["amount"] == 12.0 and isinstance(read["amount"], float)
    assert read["account_age_days"] == 30 and isinstance(read["account_age_days"], int)
    assert read["event_time"] == round(moment.timestamp() * 1000)
    assert fraud_pipeline.rows.read({**event, "event_time": moment.isoformat()})["event_time"] == read["event_time"]


@pytest.mark.parametrize(("text", "message"), [
    (b"{not json", "not JSON"), (b"[1, 2]", "must be an object of fields, got list"), (b"", "empty record"),
    (b"\xff\xfe", "not JSON")])
def test_a_json_line_that_is_not_an_object_is_corrupt(fraud_pipeline, text, message):
    with pytest.raises(RecordError, match=message) as caught:
        fraud_pipeline.rows.read_json(text)
    assert caught.value.reason == reasons.CORRUPT


def test_enums_and_floats_of_another_schema(tmp_path):
    schemas, models = make_sensor_pipeline(tmp_path)
    pipeline = load_test_pipeline("sensor", schemas, models)
    row = sensor_rows(1, seed=1)[0][0]
    assert pipeline.rows.read(row)["site"] == row["site"]
    with pytest.raises(RecordError, match="field 'site' is not one of north, south, east") as caught:
        pipeline.rows.read({**row, "site": "west"})
    assert caught.value.reason == reasons.INVALID_VALUE


def test_personal_values_never_appear_in_messages(fraud_pipeline):
    secret = "4111-1111-1111-1111"
    event = {**fraud.generate(1, seed=2, start_ms=NOW)[0][0], "account_age_days": secret}
    with pytest.raises(RecordError) as caught:
        fraud_pipeline.rows.read(event)
    assert secret not in str(caught.value)


def test_the_repo_schemas_are_what_these_tests_assume():
    schema = json.loads((REPO / "schemas" / "fraud" / "transaction.v2.avsc").read_text())
    types = {f["name"]: f["type"] for f in schema["fields"]}
    assert types["distance_from_home_km"] == ["null", "double"] and types["account_age_days"] == "int"
