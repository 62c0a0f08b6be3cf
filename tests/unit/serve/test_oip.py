"""Open Inference Protocol requests and answers, without HTTP: tensors -> rows -> the core -> tensors."""
import json
import time

import pytest

from tests.factories import REPO
from workers.serve.oip import BadRequest, ModelSpec, NotFound

NOW = int(time.time() * 1000)
MLSERVER_BODY = json.loads((REPO / "tests" / "data" / "oip" / "mlserver-codecs-request.json").read_text())["body"]
# As KServe's v2 clients send it (InferRequest.to_rest()): one tensor per input, shape [rows]
KSERVE_BODY = {"id": "kserve-1", "parameters": {}, "inputs": [
    {"name": "amount", "shape": [1], "datatype": "FP64", "data": [12.5]},
    {"name": "merchant_category", "shape": [1], "datatype": "BYTES", "data": ["grocery"]},
    {"name": "channel", "shape": [1], "datatype": "BYTES", "data": ["pos"]},
    {"name": "card_present", "shape": [1], "datatype": "BOOL", "data": [True]},
    {"name": "foreign_country", "shape": [1], "datatype": "BOOL", "data": [False]},
    {"name": "account_age_days", "shape": [1], "datatype": "INT32", "data": [400]},
    {"name": "txn_count_1h", "shape": [1], "datatype": "INT32", "data": [0]},
    {"name": "avg_amount_30d", "shape": [1], "datatype": "FP64", "data": [40.0]},
    {"name": "distance_from_home_km", "shape": [1], "datatype": "FP64", "data": [3.0]},
    {"name": "device_trust_score", "shape": [1], "datatype": "FP64", "data": [0.9]},
]}


@pytest.fixture(scope="module")
def spec(fraud_pipeline):
    return ModelSpec(fraud_pipeline)


def _answer(spec, body):
    request_id, records, asked = spec.records(json.dumps(body).encode(), NOW)
    return spec.response(request_id, spec.pipeline.process(records, NOW).outputs, asked)


def test_metadata_lists_the_features_with_their_types(spec):
    meta = spec.metadata()
    assert meta["name"] == "fraud" and meta["versions"] == ["1.0.0"]
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert [i["name"] for i in meta["inputs"][:10]] == [f.name for f in spec.pipeline.manifest.features]
    assert inputs["amount"]["datatype"] == "FP64" and inputs["account_age_days"]["datatype"] == "INT32"
    assert inputs["merchant_category"]["datatype"] == "BYTES" and inputs["card_present"]["datatype"] == "BOOL"
    assert inputs["channel"]["parameters"]["categories"] == ["pos", "online", "atm"]
    assert inputs["device_trust_score"]["parameters"]["optional"] is True  # imputed
    assert inputs["event_time"]["parameters"]["optional"] is True
    assert inputs["amount"]["parameters"]["optional"] is False
    assert [o["name"] for o in meta["outputs"]] == ["score", "label", "flags"]


@pytest.mark.parametrize("body", [MLSERVER_BODY, KSERVE_BODY], ids=["mlserver-codecs", "kserve"])
def test_a_client_built_request_is_scored_like_the_stream(spec, body):
    status, answer = _answer(spec, body)
    assert status == 200, answer
    assert answer["id"] == body["id"] and answer["model_name"] == "fraud" and answer["model_version"] == "1.0.0"
    outputs = {o["name"]: o for o in answer["outputs"]}
    rows = len(body["inputs"][0]["data"])
    assert outputs["score"]["shape"] == [rows] and outputs["score"]["datatype"] == "FP64"
    # the same score as the features built from the same fields, scored by the model itself
    pipeline = spec.pipeline
    for i in range(rows):
        event = {t["name"]: t["data"][i] for t in body["inputs"]}
        row = pipeline.features.row(event, [])
        expected = pipeline.model.model.predict_proba([row])[0, 1]
        assert outputs["score"]["data"][i] == pytest.approx(expected, abs=1e-12)
        assert outputs["label"]["data"][i] == ("fraud" if expected >= 0.5 else "legit")
    if rows == 2:
        assert outputs["label"]["data"] == ["legit", "fraud"]


def test_rejected_rows_carry_the_dead_letter_reasons(spec):
    body = json.loads(json.dumps(MLSERVER_BODY))
    tensors = {t["name"]: t for t in body["inputs"]}
    tensors["amount"]["data"] = [-5.0, 12.0]  # row 0 out of range
    tensors["merchant_category"]["data"] = ["grocery", "zoo"]  # row 1 unknown category
    status, answer = _answer(spec, body)
    assert status == 422
    assert answer["rejected"] == [
        {"row": 0, "reason": "invalid_value", "message": "feature 'amount'=-5.0 is outside [0.0, 1000000.0]"},
        {"row": 1, "reason": "invalid_value", "message": "feature 'merchant_category' has unknown category 'zoo'"}]
    assert answer["error"] == "2 of 2 rows rejected (invalid_value)"


@pytest.mark.parametrize(("change", "reason"), [
    ({"distance_from_home_km": [None]}, "missing_field"),
    ({"amount": ["12.5"]}, "invalid_value"),
    ({"event_time": [NOW - 7_200_000]}, "late"),
    ({"event_time": [NOW + 7_200_000]}, "future_timestamp"),
])
def test_each_reason_per_row(spec, change, reason):
    body = json.loads(json.dumps(KSERVE_BODY))
    for name, data in change.items():
        tensors = {t["name"]: t for t in body["inputs"]}
        if name in tensors:
            tensors[name]["data"] = data
        else:
            body["inputs"].append({"name": name, "shape": [1], "datatype": "INT64", "data": data})
    status, answer = _answer(spec, body)
    assert status == 422 and [r["reason"] for r in answer["rejected"]] == [reason]


def test_a_missing_feature_tensor_is_missing_field_for_every_row(spec):
    body = {"inputs": [t for t in MLSERVER_BODY["inputs"] if t["name"] != "channel"]}
    status, answer = _answer(spec, body)
    assert status == 422
    assert {(r["row"], r["reason"]) for r in answer["rejected"]} == {(0, "missing_field"), (1, "missing_field")}
    assert answer["rejected"][0]["message"] == "required field 'channel' is missing or null"


def test_an_imputed_feature_may_be_left_out_and_is_flagged(spec):
    body = {"inputs": [t for t in KSERVE_BODY["inputs"] if t["name"] != "device_trust_score"]}
    status, answer = _answer(spec, body)
    assert status == 200
    assert {o["name"]: o for o in answer["outputs"]}["flags"]["data"] == ["imputed"]


def test_asked_outputs_only(spec):
    status, answer = _answer(spec, {**KSERVE_BODY, "outputs": [{"name": "score"}]})
    assert status == 200 and [o["name"] for o in answer["outputs"]] == ["score"]


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "not JSON"),
    (b"[]", 'non-empty "inputs"'),
    (b'{"inputs": []}', 'non-empty "inputs"'),
    (b'{"inputs": [{"name": "amount", "shape": [2], "datatype": "FP64", "data": [1.0]}]}', "holds 2 values"),
    (b'{"inputs": [{"name": "amount", "shape": [1], "datatype": "FLOAT", "data": [1.0]}]}', "datatype 'FLOAT'"),
    (b'{"inputs": [{"name": "amont", "shape": [1], "datatype": "FP64", "data": [1.0]}]}', "unknown inputs ['amont']"),
    (b'{"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]},'
     b' {"name": "channel", "shape": [2], "datatype": "BYTES", "data": ["pos", "atm"]}]}', "one value per row"),
    (b'{"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}], "outputs": [{"name": "x"}]}',
     "unknown outputs"),
])
def test_a_body_that_is_not_a_request_is_a_bad_request(spec, body, message):
    with pytest.raises(BadRequest, match=message.replace("[", r"\[").replace("(", r"\(")) as caught:
        spec.records(body, NOW)
    assert caught.value.reason == "corrupt"


def test_another_model_or_version_is_not_found(spec):
    spec.check("fraud", "1.0.0")
    with pytest.raises(NotFound, match="serves 'fraud'"):
        spec.check("other")
    with pytest.raises(NotFound, match="no version '2'"):
        spec.check("fraud", "2")


def test_nested_data_is_read_row_by_row(spec):
    body = json.loads(json.dumps(MLSERVER_BODY))
    for t in body["inputs"]:
        t["data"] = [[v] for v in t["data"]]  # [[12.5], [900.0]] as some clients send [N, 1]
    status, answer = _answer(spec, body)
    assert status == 200 and answer["outputs"][0]["shape"] == [2]
