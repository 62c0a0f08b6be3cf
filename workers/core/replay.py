"""Which dead letters to replay, and how a replayed record is marked. Pure; no Kafka."""
from __future__ import annotations

from dataclasses import dataclass

from workers.core.deadletter import FAILED_AT, HEADER_PREFIX, REASON
from workers.core.records import Headers

REPLAY_COUNT = "workers.replay.count"  # how many times this record has been replayed
REPLAY_ORIGIN = "workers.replay.origin"  # "<dlq topic>/<partition>/<offset>" it was replayed from
REPLAY_AT = "workers.replay.at"  # epoch millis of the replay
REPLAY_HEADERS = (REPLAY_COUNT, REPLAY_ORIGIN, REPLAY_AT)


@dataclass(frozen=True)
class ReplaySelection:
    reasons: frozenset[str] = frozenset()  # empty: every reason
    since_ms: int | None = None  # by the time of failure (dlq.failed.at)
    until_ms: int | None = None
    from_offset: int | None = None  # dead-letter topic offsets, inclusive, in every partition
    to_offset: int | None = None

    def matches(self, offset: int, headers: Headers) -> bool:
        if self.from_offset is not None and offset < self.from_offset:
            return False
        if self.to_offset is not None and offset > self.to_offset:
            return False
        values = dict(headers)
        if self.reasons and values.get(REASON, b"").decode() not in self.reasons:
            return False
        if self.since_ms is not None or self.until_ms is not None:
            try:
                failed_at = int(values.get(FAILED_AT, b""))
            except ValueError:
                return False  # not one of our dead letters: no time to select by
            if self.since_ms is not None and failed_at < self.since_ms:
                return False
            if self.until_ms is not None and failed_at > self.until_ms:
                return False
        return True


def replay_headers(headers: Headers, origin: str, now_ms: int) -> Headers:
    """The record's own headers, minus the failure's, plus the replay marks (count incremented)."""
    values = dict(headers)
    try:
        count = int(values.get(REPLAY_COUNT, b"0")) + 1
    except ValueError:
        count = 1
    kept = [(k, v) for k, v in headers if not k.startswith(HEADER_PREFIX) and k not in REPLAY_HEADERS]
    return [
        *kept,
        (REPLAY_COUNT, str(count).encode()),
        (REPLAY_ORIGIN, origin.encode()),
        (REPLAY_AT, str(now_ms).encode()),
    ]
