"""The dead-letter envelope: original key and bytes unchanged, the why and where in headers."""
from __future__ import annotations

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
MAX_MESSAGE_BYTES = 1000


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


def headers_dict(headers: Headers) -> dict[str, str]:
    """Header values as text, for display and tests (the last one wins on repeats)."""
    return {k: v.decode("utf-8", "replace") for k, v in headers}
