"""The whole per-batch job, without Kafka: every kind of input, outputs in order."""
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import REPO, load_test_pipeline, make_sensor_pipeline, payload_of_kind, sensor_rows
from workers.core import deadletter, reasons
from workers.core.pipeline import EVENT_ID_HEADER, TRACE_HEADERS
from workers.core.records import InputRecord
from workers.core.replay import REPLAY_AT, REPLAY_COUNT, REPLAY_ORIGIN, replay_headers
from workers.dev import fraud_data as fraud
from workers.dev.bad_inputs import BAD_KINDS, corrupt_variant

NOW = int(time.time() * 1000)
REPO_MODELS = REPO / "models"


def _record(value, i, key=b"k"):
    return InputRecord(value=value, key=key, topic="in", partition=i % 3, offset=i, timestamp_ms=NOW,
                       headers=[("trace", b"t%d" % i)])


def test_mixed_batch_every_record_gets_exactly_one_outcome(fraud_pipeline):
    events, _ = fraud.generate(40, seed=5, start_ms=NOW - 1000)
    records, expected = [], []
    kinds = ["good", "old_schema", *BAD_KINDS]
    for i, event in enumerate(events):
        kind = kinds[i % len(kinds)]
        value = payload_of_kind(kind, event, fraud_pipeline, NOW)
        records.append(_record(value, i, event["account_id"].encode()))
        expected.append(BAD_KINDS.get(kind))

    result = fraud_pipeline.process(records, NOW)

    assert len(result.outputs) == len(records)
    for record, output, reason in zip(records, result.outputs, expected, strict=True):
        assert output.key == record.key
        if reason is None:
            assert output.topic == fraud_pipeline.topics.predictions
            prediction, _ = fraud_pipeline.prediction_codec.decode(output.value)
            assert prediction["source_offset"] == record.offset
            assert prediction["source_partition"] == record.partition
            assert dict(output.headers)[EVENT_ID_HEADER] == prediction["event_id"].encode()
        else:
            assert output.topic == fraud_pipeline.topics.dlq
            assert output.value == record.value  # original bytes, unchanged
            headers = deadletter.headers_dict(output.headers)
            assert headers[deadletter.REASON] == reason
            assert headers[deadletter.ORIGINAL_OFFSET] == str(record.offset)
            assert headers[deadletter.ORIGINAL_PARTITION] == str(record.partition)
            assert headers[deadletter.ORIGINAL_TOPIC] == "in"
            assert headers[deadletter.MODEL_VERSION] == "1.0.0"
            assert headers["trace"] == f"t{record.offset}"  # the record's own headers are kept
    assert result.predictions == sum(r is None for r in expected)
    assert sum(result.dead_letters.values()) == sum(r is not None for r in expected)


@pytest.mark.parametrize("count", [1, 40], ids=["record-path", "column-path"])
def test_a_prediction_continues_its_events_trace(fraud_pipeline, count):
    events, _ = fraud.generate(count, seed=6, start_ms=NOW - 1000)
    codec = fraud_pipeline.input_codec
    records = [InputRecord(value=codec.encode(e), key=b"k", topic="in", partition=0, offset=i, timestamp_ms=NOW,
                           headers=[("traceparent", b"00-%032x-%016x-01" % (i + 1, i + 1)), ("tracestate", b"v=1"),
                                    ("internal", b"x")] if i % 2 == 0 else [])
               for i, e in enumerate(events)]
    result = fraud_pipeline.process(records, NOW)
    assert result.predictions == count
    for record, output in zip(records, result.outputs, strict=True):
        carried = [(k, v) for k, v in output.headers if k != EVENT_ID_HEADER]
        assert carried == [(k, v) for k, v in record.headers if k in TRACE_HEADERS]
    assert ("traceparent", b"00-%032x-%016x-01" % (1, 1)) in result.outputs[0].headers


def test_prediction_carries_lineage_and_matches_offline_scoring(fraud_pipeline):
    events, _ = fraud.generate(50, seed=9, start_ms=NOW)
    records = [_record(fraud_pipeline.input_codec.encode(e), i) for i, e in enumerate(events)]
    result = fraud_pipeline.process(records, NOW)
    import numpy as np

    offline = fraud_pipeline.model.model.predict_proba(
        np.array([fraud_pipeline.features.row(e, []) for e in events]))[:, 1]
    for event, output, expected in zip(events, result.outputs, offline, strict=True):
        p, _ = fraud_pipeline.prediction_codec.decode(output.value)
        assert p["event_id"] == event["event_id"] and p["key"] == event["account_id"]
        assert p["score"] == pytest.approx(expected, abs=1e-12)
        assert p["label"] == ("fraud" if expected >= 0.5 else "legit")
        assert p["model_sha256"] == fraud_pipeline.manifest.artifact_sha256
        assert p["input_schema_fingerprint"] == fraud_pipeline.input_codec.reader.fingerprint_hex
        assert p["event_time"] == event["event_time"] and p["scored_at"] == NOW
        assert ("imputed" in p["flags"]) == (event["device_trust_score"] is None)


KEY = b"replay-test-key"


@pytest.fixture(scope="module")
def keyed_pipeline():
    return load_test_pipeline(replay_key=KEY.decode())


def _replayed(pipeline, headers):
    events, _ = fraud.generate(1, seed=2, start_ms=NOW)
    record = _record(pipeline.input_codec.encode(events[0]), 0)
    record.headers += headers(record.value)
    output = pipeline.process([record], NOW).outputs[0]
    prediction, _ = pipeline.prediction_codec.decode(output.value)
    return prediction, output


def test_signed_replay_marks_are_flagged_and_passed_on(keyed_pipeline):
    prediction, output = _replayed(keyed_pipeline, lambda value: replay_headers(
        [(REPLAY_COUNT, b"1")], "dlq/0/7", NOW, value, KEY))
    assert "replayed" in prediction["flags"]
    assert (REPLAY_COUNT, b"2") in output.headers and (REPLAY_ORIGIN, b"dlq/0/7") in output.headers


@pytest.mark.parametrize("forge", [
    lambda value: [(REPLAY_COUNT, b"2"), (REPLAY_ORIGIN, b"dlq/0/7"), (REPLAY_AT, b"1")],  # unsigned
    lambda value: replay_headers([], "dlq/0/7", NOW, value, b"another key"),  # signed with the wrong key
    lambda value: replay_headers([], "dlq/0/7", NOW, value + b"x", KEY),  # signed for other bytes
    lambda value: [(k, b"dlq/9/9" if k == REPLAY_ORIGIN else v)  # origin changed after signing
                   for k, v in replay_headers([], "dlq/0/7", NOW, value, KEY)],
], ids=["unsigned", "wrong-key", "other-value", "tampered-origin"])
def test_replay_marks_that_cannot_be_verified_are_not_trusted(keyed_pipeline, forge):
    prediction, output = _replayed(keyed_pipeline, forge)
    assert "replayed" not in prediction["flags"]
    assert not [k for k, _ in output.headers if k.startswith("workers.replay.")]


def test_without_a_key_no_replay_mark_is_trusted(fraud_pipeline):
    prediction, _ = _replayed(fraud_pipeline, lambda value: replay_headers([], "dlq/0/7", NOW, value, KEY))
    assert "replayed" not in prediction["flags"]


def test_inference_error_isolates_the_record(fraud_pipeline, monkeypatch):
    events, _ = fraud.generate(20, seed=3, start_ms=NOW)
    records = [_record(fraud_pipeline.input_codec.encode(e), i) for i, e in enumerate(events)]
    real = fraud_pipeline.scorer._score

    def failing(matrix):
        if (matrix[:, 0] == events[7]["amount"]).any():
            raise RuntimeError("model blew up")
        return real(matrix)

    monkeypatch.setattr(fraud_pipeline.scorer, "_score", failing)
    result = fraud_pipeline.process(records, NOW)
    assert result.dead_letters == {reasons.INFERENCE_ERROR: 1}
    bad = result.outputs[7]
    assert bad.reason == reasons.INFERENCE_ERROR and bad.value == records[7].value
    assert "model blew up" in deadletter.headers_dict(bad.headers)[deadletter.ERROR_MESSAGE]
    assert result.predictions == 19


def test_a_new_pipeline_is_files_only(tmp_path):
    schemas, models = make_sensor_pipeline(tmp_path)
    pipeline = load_test_pipeline("sensor", schemas, models)
    rows, _ = sensor_rows(10, seed=8)
    rows[3]["vibration_mm_s"] = None
    records = [_record(pipeline.input_codec.encode(r), i) for i, r in enumerate(rows)]
    result = pipeline.process(records, NOW)
    assert result.predictions == 10
    p, _ = pipeline.prediction_codec.decode(result.outputs[3].value)
    assert p["label"] is None and p["flags"] == ["imputed"] and p["model_name"] == "sensor"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=160) | st.builds(lambda pos, byte, cut: (pos, byte, cut), st.integers(0, 200),
                                            st.integers(0, 255), st.integers(0, 200)))
def test_any_input_gets_exactly_one_classified_outcome(fraud_pipeline_fuzz, spec):
    """Fuzzing decode + validation: a prediction or a dead letter with a known reason, never a crash."""
    if isinstance(spec, bytes):
        payload = spec
    else:
        pos, byte, cut = spec
        base = bytearray(fraud_pipeline_fuzz.valid)
        base[pos % len(base)] = byte
        payload = bytes(base[: max(1, cut % (len(base) + 5))])
    result = fraud_pipeline_fuzz.pipeline.process([_record(payload, 0)], NOW)
    assert len(result.outputs) == 1
    output = result.outputs[0]
    if output.is_dead_letter:
        assert output.reason in reasons.ALL and output.value == payload
    else:
        assert 0.0 <= output.score <= 1.0


@pytest.fixture(scope="module")
def fraud_pipeline_fuzz(fraud_pipeline):
    from types import SimpleNamespace

    events, _ = fraud.generate(1, seed=12, start_ms=NOW)
    return SimpleNamespace(pipeline=fraud_pipeline, valid=fraud_pipeline.input_codec.encode(events[0]))


def test_a_record_the_client_could_not_parse_is_dead_lettered_corrupt(fraud_pipeline):
    record = InputRecord(value=None, key=None, topic="in", partition=2, offset=41,
                         parse_error="UnicodeDecodeError: invalid start byte in a header key")
    output = fraud_pipeline.process([record], NOW).outputs[0]
    headers = deadletter.headers_dict(output.headers)
    assert headers[deadletter.REASON] == reasons.CORRUPT and headers[deadletter.ORIGINAL_OFFSET] == "41"
    assert "could not parse" in headers[deadletter.ERROR_MESSAGE] and output.value == b""


def test_a_json_row_with_a_lone_surrogate_is_dead_lettered_and_the_batch_goes_on(fraud_pipeline):
    """JSON escapes allow a string with no UTF-8 form; it must not fail the batch when encoded."""
    import json

    events, _ = fraud.generate(3, seed=4, start_ms=NOW - 1000)
    events[1]["event_id"] = "ab\ud800"
    batch = [InputRecord(value=json.dumps(e).encode(), key=b"k", topic="in", partition=0, offset=i,
                         timestamp_ms=NOW, value_format="json") for i, e in enumerate(events)]
    result = fraud_pipeline.process(batch, NOW)
    assert result.predictions == 2 and result.dead_letters == {reasons.INVALID_VALUE: 1}
    letter = deadletter.headers_dict(result.outputs[1].headers)
    assert "lone surrogate" in letter[deadletter.ERROR_MESSAGE] and result.outputs[1].value == batch[1].value


def _stream_pipeline(tmp_path, late_action="dead_letter"):
    """The reference model with stream-time lateness (max 1 h)."""
    import json
    import shutil

    models = tmp_path / "models"
    shutil.copytree(REPO_MODELS / "fraud", models / "fraud")
    path = models / "fraud" / "1.0.0" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["policies"].update(clock="stream", late_action=late_action)
    path.write_text(json.dumps(manifest))
    return load_test_pipeline(models=models)


def test_stream_time_gives_a_backlog_the_outcomes_it_would_have_had_live(tmp_path):
    """Same records, processed live and 61 minutes later: same outcomes under stream time."""
    events, _ = fraud.generate(30, seed=21, start_ms=NOW, span_ms=0)
    for i, e in enumerate(events):
        e["event_time"] = NOW + i * 1000
    events[20]["event_time"] = NOW - 2 * 3600 * 1000  # older than the events before it by > 1 h: late
    outcomes = []
    for delay_ms in (0, 61 * 60 * 1000):
        pipeline = _stream_pipeline(tmp_path / str(delay_ms))
        records = [_record(pipeline.input_codec.encode(e), i) for i, e in enumerate(events)]
        for r in records:
            r.partition = 0
        result = pipeline.process(records, NOW + 30_000 + delay_ms)
        outcomes.append([o.reason for o in result.outputs])
    assert outcomes[0] == outcomes[1]
    assert outcomes[0].count("late") == 1 and outcomes[0][20] == "late"


def test_wall_clock_lateness_depends_on_when_the_backlog_is_processed(fraud_pipeline):
    events, _ = fraud.generate(10, seed=22, start_ms=NOW)
    records = [_record(fraud_pipeline.input_codec.encode(e), i) for i, e in enumerate(events)]
    live = fraud_pipeline.process(records, NOW + 1000)
    after_outage = fraud_pipeline.process(records, NOW + 61 * 60 * 1000)
    assert live.dead_letters == {} and after_outage.dead_letters == {"late": 10}


def test_stream_time_is_per_partition_and_forgotten_when_a_partition_moves(tmp_path):
    pipeline = _stream_pipeline(tmp_path)
    events, _ = fraud.generate(2, seed=23, start_ms=NOW)
    events[1]["event_time"] = NOW - 2 * 3600 * 1000
    first = _record(pipeline.input_codec.encode(events[0]), 0)
    old = _record(pipeline.input_codec.encode(events[1]), 1)
    first.partition, old.partition = 0, 1
    assert pipeline.process([first, old], NOW).dead_letters == {}  # different partitions: not late
    old.partition = 0
    assert pipeline.process([old], NOW).dead_letters == {"late": 1}
    pipeline.forget_partitions({("in", 0)})
    assert pipeline.process([old], NOW).dead_letters == {}


@pytest.mark.parametrize("first_bytes", [b"\xc3\x01", b"\x00", b"\xc3\x02"])
def test_garbage_that_happens_to_start_like_a_framing_is_still_corrupt(fraud_pipeline, first_bytes):
    """The drills send os.urandom payloads as garbage; 1 in 65,536 starts with the single-object magic."""
    event = fraud.generate(1, seed=1, start_ms=NOW)[0][0]
    value = corrupt_variant("garbage", event, fraud_pipeline.input_codec, fraud_pipeline.manifest,
                            first_bytes + bytes(range(62)), NOW)
    (output,) = fraud_pipeline.process([_record(value, 0)], NOW).outputs
    assert deadletter.headers_dict(output.headers)[deadletter.REASON] == reasons.CORRUPT
