"""The closed set of dead-letter reasons. Each bad record carries exactly one."""
from __future__ import annotations

CORRUPT = "corrupt"  # undecodable bytes, bad framing, trailing junk, empty payload
UNKNOWN_SCHEMA = "unknown_schema"  # fingerprint not in schemas/, or not resolvable to the reader
MISSING_FIELD = "missing_field"  # a required feature is null and the manifest does not impute it
INVALID_VALUE = "invalid_value"  # NaN, inf, out of the declared range, unknown category
LATE = "late"  # event time older than the allowed lateness
FUTURE_TIMESTAMP = "future_timestamp"  # event time too far ahead of the worker's clock
INFERENCE_ERROR = "inference_error"  # the model raised (or returned non-finite) on this record

ALL = (CORRUPT, UNKNOWN_SCHEMA, MISSING_FIELD, INVALID_VALUE, LATE, FUTURE_TIMESTAMP, INFERENCE_ERROR)
