"""The dead-letter envelope: original key and bytes unchanged, the why and where in headers."""
from __future__ import annotations

import hashlib
import json

from workers.core.records import Headers, InputRecord, OutputRecord

HEADER_PREFIX = "dlq."
REASON = "dlq.reason"
ERROR_CLASS = "dlq.error.class"
ERROR_MESSAGE = "dlq.error.message"
ORIGINAL_TOPIC = "dlq.original.topic"
ORIGINAL_PARTITION = "dlq.original.partition"
ORIGINAL_OFFSET = "dlq.original.offset"
ORIGINAL_TIMESTAMP = "dlq.original.timestamp"
PIPELINE = "dlq.pipeline"
WORKER = "dlq.worker"
MODEL_VERSION = "dlq.model.version"
FAILED_AT = "dlq.failed.at"
PAYLOAD_TRUNCATED = "dlq.payload.truncated"  # "true": the value is a reference, not the original bytes
PAYLOAD_SIZE = "dlq.payload.size"  # bytes of the original value
PAYLOAD_SHA256 = "dlq.payload.sha256"  # of the original value: replay checks what it fetches from the source
MAX_MESSAGE_BYTES = 1000
RECORD_OVERHEAD_BYTES = 128  # a record's framing in a batch (varints, attributes, offsets), generously


def dead_letter(
    record: InputRecord,
    dlq_topic: str,
    reason: str,
    error: BaseException,
    *,
    pipeline: str,
    worker_id: str,
    model_version: str,
    now_ms: int,
) -> OutputRecord:
    # Keep the record's own headers (trace ids, replay marks), minus a previous failure's.
    headers: Headers = [(k, v) for k, v in record.headers if not k.startswith(HEADER_PREFIX)]
    headers += [
        (REASON, reason.encode()),
        (ERROR_CLASS, type(error).__name__.encode()),
        (ERROR_MESSAGE, str(error).encode("utf-8", "replace")[:MAX_MESSAGE_BYTES]),
        (ORIGINAL_TOPIC, record.topic.encode()),
        (ORIGINAL_PARTITION, str(record.partition).encode()),
        (ORIGINAL_OFFSET, str(record.offset).encode()),
        (ORIGINAL_TIMESTAMP, str(record.timestamp_ms if record.timestamp_ms is not None else "").encode()),
        (PIPELINE, pipeline.encode()),
        (WORKER, worker_id.encode()),
        (MODEL_VERSION, model_version.encode()),
        (FAILED_AT, str(now_ms).encode()),
    ]
    # Kafka clients refuse a record with neither key nor value: a keyless tombstone becomes b"".
    value = record.value if record.value is not None or record.key is not None else b""
    return OutputRecord(dlq_topic, record.key, value, headers, reason=reason)


def record_size(output: OutputRecord) -> int:
    """An upper estimate of the bytes a record takes in a producer batch."""
    headers = sum(len(k) + len(v) + 8 for k, v in output.headers)
    return len(output.key or b"") + len(output.value or b"") + headers + RECORD_OVERHEAD_BYTES


def with_reference(output: OutputRecord) -> OutputRecord:
    """The dead letter with its original bytes replaced by a reference to them.

    For a record too large for the dead-letter topic: the reason and the origin stay in the
    headers, the value says where the original is (source topic, partition, offset) with its
    size and sha256, so it can be fetched from the source topic while its retention lasts.
    """
    original = output.value or b""
    headers = dict(output.headers)
    digest = hashlib.sha256(original).hexdigest()
    reference: dict[str, object] = {
        "truncated": True,
        "topic": headers.get(ORIGINAL_TOPIC, b"").decode(),
        "partition": int(headers.get(ORIGINAL_PARTITION, b"-1")),
        "offset": int(headers.get(ORIGINAL_OFFSET, b"-1")),
        "size": len(original),
        "sha256": digest,
    }
    extra = [(PAYLOAD_TRUNCATED, b"true"), (PAYLOAD_SIZE, str(len(original)).encode()),
             (PAYLOAD_SHA256, digest.encode())]
    # the record's own headers may be what made it too large: keep only ours
    kept = [(k, v) for k, v in output.headers if k.startswith(HEADER_PREFIX)]
    return OutputRecord(output.topic, output.key, json.dumps(reference).encode(), kept + extra, reason=output.reason)


def headers_dict(headers: Headers) -> dict[str, str]:
    """Header values as text, for display and tests (the last one wins on repeats)."""
    return {k: v.decode("utf-8", "replace") for k, v in headers}
