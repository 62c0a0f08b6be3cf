"""Every kind of bad input the worker must dead-letter, and the reason each must get.

The demo, the drills, ``workers produce --bad-fraction`` and the tests mix these into a
stream of good events so they know exactly which outputs to expect.
"""
from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from workers.core import reasons
from workers.core.codec import MAGIC, SingleObjectCodec, StoredSchema
from workers.core.manifest import Manifest
from workers.errors import ConfigError
from workers.kafka.producer import EventProducer

GOOD = "good"
OLD_SCHEMA = "old_schema"  # a good event written with the previous schema version

BAD_KINDS: dict[str, str] = {
    "garbage": reasons.CORRUPT,  # random bytes
    "empty": reasons.CORRUPT,  # zero-length value
    "truncated": reasons.CORRUPT,  # a valid payload cut short
    "trailing": reasons.CORRUPT,  # a valid payload with junk appended
    "unknown_schema": reasons.UNKNOWN_SCHEMA,  # a fingerprint no schema in schemas/ has
    "missing": reasons.MISSING_FIELD,  # a required feature set to null
    "invalid": reasons.INVALID_VALUE,  # NaN / out-of-range value
    "late": reasons.LATE,  # event time far older than the allowed lateness
    "future": reasons.FUTURE_TIMESTAMP,  # event time far in the future
}


@dataclass(slots=True)
class SentEvent:
    event_id: str
    key: bytes | None
    value: bytes
    kind: str  # GOOD, OLD_SCHEMA or one of BAD_KINDS

    @property
    def expected_reason(self) -> str | None:
        return BAD_KINDS.get(self.kind)


def corrupt_variant(
    kind: str, event: dict[str, Any], codec: SingleObjectCodec, manifest: Manifest, rng_bytes: bytes, now_ms: int
) -> bytes:
    """The payload of ``event`` spoiled in the way ``kind`` names."""
    if kind == "garbage":
        # random bytes, never a framing's first byte: 1 in 65,536 random payloads would start with the
        # single-object magic and be read as an unknown schema (and a zero byte is the registry's magic)
        return b"\xff" + rng_bytes[1:] if rng_bytes[:1] in (b"\x00", MAGIC[:1]) else rng_bytes
    if kind == "empty":
        return b""
    if kind == "unknown_schema":
        return MAGIC + rng_bytes[:8] + codec.encode(event)[10:]
    if kind == "truncated":
        payload = codec.encode(event)
        return payload[: max(11, len(payload) // 2)]
    if kind == "trailing":
        return codec.encode(event) + b"\x00junk"
    spoiled = dict(event)
    if kind == "missing":
        # Avro cannot omit a non-nullable field, so "missing" means a nullable, required feature set to null.
        blankable = [f for f in manifest.features if f.missing == "reject" and _nullable(codec.reader, f.name)]
        if not blankable:
            raise ConfigError(f"{codec.reader.path} has no nullable required feature to blank")
        spoiled[blankable[0].name] = None
    elif kind == "invalid":
        numeric = next(f for f in manifest.features if f.kind == "numeric")
        spoiled[numeric.name] = math.nan if _is_float(codec.reader, numeric.name) else -1
    elif kind == "late":
        lateness = manifest.policies.max_lateness_s or 3600
        spoiled[manifest.event_time_field] = now_ms - int(lateness * 1000) - 60_000
    elif kind == "future":
        spoiled[manifest.event_time_field] = now_ms + int(manifest.policies.max_future_s * 1000) + 600_000
    else:
        raise ConfigError(f"unknown bad-input kind {kind!r}; known: {sorted(BAD_KINDS)}")
    return codec.encode(spoiled)


def send_kind(producer: EventProducer, kind: str, event: dict[str, Any], old_writer: StoredSchema | None = None,
              now_ms: int | None = None) -> SentEvent:
    """Send ``event`` as ``kind``: good, written with ``old_writer``, or spoiled."""
    if kind == GOOD:
        sent = producer.send_event(event)
        return SentEvent(sent.event_id, sent.key, sent.value, kind)
    if kind == OLD_SCHEMA:
        if old_writer is None:
            raise ConfigError("kind 'old_schema' needs the older writer schema")
        sent = producer.send_event(event, writer=old_writer)
        return SentEvent(sent.event_id, sent.key, sent.value, kind)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    value = corrupt_variant(kind, event, producer.codec, producer.manifest, os.urandom(64), now)
    key = producer.key_of(event)
    producer.send_raw(value, key)
    return SentEvent(str(event[producer.manifest.event_id_field]), key, value, kind)


def plan_kinds(count: int, bad_fraction: float, old_schema_fraction: float, seed: int) -> Iterator[str]:
    """A deterministic, well-mixed sequence of kinds: good, old_schema and every bad kind in turn."""
    rng = random.Random(seed)
    bad_cycle = list(BAD_KINDS)
    rng.shuffle(bad_cycle)
    bad_seen = 0
    for _ in range(count):
        draw = rng.random()
        if draw < bad_fraction:
            yield bad_cycle[bad_seen % len(bad_cycle)]
            bad_seen += 1
        elif draw < bad_fraction + old_schema_fraction:
            yield OLD_SCHEMA
        else:
            yield GOOD


def _field_type(schema: StoredSchema, name: str) -> Any:
    return next(f["type"] for f in schema.parsed["fields"] if f["name"] == name)


def _nullable(schema: StoredSchema, name: str) -> bool:
    t = _field_type(schema, name)
    return isinstance(t, list) and "null" in t


def _is_float(schema: StoredSchema, name: str) -> bool:
    t = _field_type(schema, name)
    types = t if isinstance(t, list) else [t]
    return any(x in ("float", "double") for x in types)


class _RawHeaderKey(str):
    """A header key that kafka-python writes as the given raw bytes (which need not be UTF-8)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> _RawHeaderKey:
        key = super().__new__(cls, raw.decode("latin-1"))
        key.raw = raw
        return key

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


INVALID_UTF8_KEY = b"trace-\xff\xfe"  # what a Go or librdkafka producer can write; the broker accepts it


def send_unparseable(settings: Any, topic: str, key: bytes, value: bytes, partition: int | None = None) -> int:
    """Write a record whose header key is not valid UTF-8 (kafka-python writes the raw bytes);
    aiokafka cannot parse it. Returns its offset."""
    from workers.kafka import clients

    producer = clients.producer(settings, acks="all")
    try:
        future = producer.send(topic, key=key, value=value, partition=partition,
                               headers=[(_RawHeaderKey(INVALID_UTF8_KEY), b"1")])
        return int(future.get(timeout=30).offset)
    finally:
        producer.close()
