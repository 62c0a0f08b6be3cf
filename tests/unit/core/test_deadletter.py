import hashlib
import json

from workers.core import deadletter, reasons
from workers.core.records import InputRecord


def _letter(value: bytes):
    record = InputRecord(value=value, key=b"k", topic="t.events", partition=3, offset=99, timestamp_ms=5,
                         headers=[("trace", b"x" * 50)])
    return deadletter.dead_letter(record, "t.dlq", reasons.CORRUPT, ValueError("bad"), pipeline="t",
                                  worker_id="w", model_version="1", now_ms=7)


def test_record_size_is_an_upper_estimate_of_the_bytes_on_the_wire():
    letter = _letter(b"v" * 1000)
    payload = len(letter.value) + len(letter.key) + sum(len(k) + len(v) for k, v in letter.headers)
    assert payload < deadletter.record_size(letter) < payload + 400


def test_a_reference_replaces_the_original_bytes_and_says_where_they_are():
    original = bytes(range(256)) * 40
    short = deadletter.with_reference(_letter(original))
    reference = json.loads(short.value)
    assert reference == {"truncated": True, "topic": "t.events", "partition": 3, "offset": 99,
                         "size": len(original), "sha256": hashlib.sha256(original).hexdigest()}
    headers = deadletter.headers_dict(short.headers)
    assert headers[deadletter.PAYLOAD_TRUNCATED] == "true" and headers[deadletter.REASON] == "corrupt"
    assert headers[deadletter.PAYLOAD_SHA256] == reference["sha256"]
    assert "trace" not in headers  # the record's own headers may be what was too large
    assert short.key == b"k" and short.reason == "corrupt" and deadletter.record_size(short) < 2000
