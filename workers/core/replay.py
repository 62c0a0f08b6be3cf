"""Which dead letters to replay, and how a replayed record is marked. Pure; no Kafka.

A replay mark (count, origin, time) is signed with HMAC-SHA256 over the mark and the
record's value, with a key both the replay tool and the workers are given
(``WORKERS_REPLAY_KEY``). A worker flags a prediction ``replayed`` only for a mark it can
verify, so an ordinary producer cannot make its events look replayed.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from workers.core.deadletter import FAILED_AT, HEADER_PREFIX, REASON
from workers.core.records import Headers

REPLAY_COUNT = "workers.replay.count"  # how many times this record has been replayed
REPLAY_ORIGIN = "workers.replay.origin"  # "<dlq topic>/<partition>/<offset>" it was replayed from
REPLAY_AT = "workers.replay.at"  # epoch millis of the replay
REPLAY_SIGNATURE = "workers.replay.sig"  # hex HMAC-SHA256 of the three above and the value's sha256
REPLAY_HEADERS = (REPLAY_COUNT, REPLAY_ORIGIN, REPLAY_AT, REPLAY_SIGNATURE)


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


def replay_count(headers: Headers) -> int:
    """How many times this record has been replayed already (0 for an original)."""
    try:
        return int(dict(headers).get(REPLAY_COUNT, b"0"))
    except ValueError:
        return 0


def _signature(key: bytes, count: bytes, origin: bytes, at: bytes, value: bytes | None) -> bytes:
    message = b"\n".join([count, origin, at, hashlib.sha256(value or b"").hexdigest().encode()])
    return hmac.new(key, message, hashlib.sha256).hexdigest().encode()


def replay_headers(headers: Headers, origin: str, now_ms: int, value: bytes | None = None,
                   key: bytes | None = None) -> Headers:
    """The record's own headers, minus the failure's, plus the replay marks (count incremented),
    signed when a ``key`` is given."""
    count = str(replay_count(headers) + 1).encode()
    kept = [(k, v) for k, v in headers if not k.startswith(HEADER_PREFIX) and k not in REPLAY_HEADERS]
    marks = [(REPLAY_COUNT, count), (REPLAY_ORIGIN, origin.encode()), (REPLAY_AT, str(now_ms).encode())]
    if key is not None:
        marks.append((REPLAY_SIGNATURE, _signature(key, count, origin.encode(), marks[2][1], value)))
    return [*kept, *marks]


def verified_replay_headers(headers: Headers, value: bytes | None, key: bytes | None) -> Headers | None:
    """The replay marks of a record if they carry a valid signature, else None (no key: never trusted)."""
    if key is None:
        return None
    values = dict(headers)
    count, origin, at, signature = (values.get(name) for name in REPLAY_HEADERS)
    if count is None or origin is None or at is None or signature is None:
        return None
    if not hmac.compare_digest(signature, _signature(key, count, origin, at, value)):
        return None
    return [(k, v) for k, v in headers if k in REPLAY_HEADERS]
