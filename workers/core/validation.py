"""Event-time policies: late and future events, judged against the worker's clock."""
from __future__ import annotations

from typing import Any

from workers.core.manifest import Policies
from workers.core.reasons import FUTURE_TIMESTAMP, INVALID_VALUE, LATE, MISSING_FIELD
from workers.errors import RecordError

LATE_FLAG = "late"


def event_time_ms(value: Any) -> int:
    """Avro timestamp-millis reads as an aware datetime in fastavro, a plain int elsewhere."""
    if value is None:
        raise RecordError(MISSING_FIELD, "event time is missing")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    timestamp = getattr(value, "timestamp", None)
    if timestamp is None:
        raise RecordError(INVALID_VALUE, f"event time {value!r} is not a timestamp")
    return round(timestamp() * 1000)


def check_event_time(event_ms: int, now_ms: int, policies: Policies, flags: list[str]) -> None:
    """Raise for a late or future event; flag a late one the policy lets through."""
    if event_ms - now_ms > policies.max_future_s * 1000:
        raise RecordError(
            FUTURE_TIMESTAMP,
            f"event time is {(event_ms - now_ms) / 1000:.1f}s ahead (limit {policies.max_future_s}s)",
        )
    if policies.max_lateness_s is not None and now_ms - event_ms > policies.max_lateness_s * 1000:
        if policies.late_action == "score":
            flags.append(LATE_FLAG)
            return
        raise RecordError(
            LATE, f"event is {(now_ms - event_ms) / 1000:.1f}s late (limit {policies.max_lateness_s}s)"
        )
