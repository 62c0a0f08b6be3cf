"""Event-time policies: late and future events.

Future events are judged against the worker's clock. Lateness is judged against the
worker's clock (``clock: wall``) or against the partition's stream time (``clock: stream``,
the highest event time seen in the partition, as Kafka Streams does), so that a backlog
processed after an outage gets the same outcomes as it would have live.
"""
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


def check_future(event_ms: int, now_ms: int, policies: Policies) -> None:
    if event_ms - now_ms > policies.max_future_s * 1000:
        raise RecordError(
            FUTURE_TIMESTAMP,
            f"event time is {(event_ms - now_ms) / 1000:.1f}s ahead (limit {policies.max_future_s}s)",
        )


def check_lateness(event_ms: int, reference_ms: int, policies: Policies, flags: list[str]) -> None:
    """Raise for an event older than ``reference_ms`` by more than the limit; flag one the policy lets through."""
    if policies.max_lateness_s is not None and reference_ms - event_ms > policies.max_lateness_s * 1000:
        if policies.late_action == "score":
            flags.append(LATE_FLAG)
            return
        against = "the worker's clock" if policies.clock == "wall" else "the partition's stream time"
        raise RecordError(
            LATE, f"event is {(reference_ms - event_ms) / 1000:.1f}s late against {against} "
                  f"(limit {policies.max_lateness_s}s)"
        )


def check_event_time(event_ms: int, now_ms: int, policies: Policies, flags: list[str]) -> None:
    """Both checks against the worker's clock (``clock: wall``)."""
    check_future(event_ms, now_ms, policies)
    check_lateness(event_ms, now_ms, policies, flags)
