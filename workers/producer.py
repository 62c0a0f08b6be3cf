"""Producing events (kafka-python): a small API, realistic events, and every kind of bad input.

``EventProducer.send_event`` encodes a record with the pipeline's input schema (or an
older version of it) in Avro single-object encoding, keyed by the entity key.
``corrupt_variant`` turns a good event into one of the bad inputs the worker must
dead-letter, so tests and the demo can mix them in and know what to expect.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from workers.core import reasons
from workers.core.codec import MAGIC, SchemaStore, SingleObjectCodec, StoredSchema
from workers.core.manifest import Manifest
from workers.settings import Settings

# Bad-input kinds the producer can mix in, and the dead-letter reason each must get.
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
    kind: str  # "good", "old_schema" or one of BAD_KINDS

    @property
    def expected_reason(self) -> str | None:
        return BAD_KINDS.get(self.kind)


def corrupt_variant(
    kind: str, event: dict[str, Any], codec: SingleObjectCodec, manifest: Manifest, rng_bytes: bytes, now_ms: int
) -> bytes:
    """The payload of ``event`` spoiled in the way ``kind`` names."""
    if kind == "garbage":
        return rng_bytes
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
            raise ValueError(f"{codec.reader.path} has no nullable required feature to blank")
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
        raise ValueError(f"unknown bad-input kind {kind!r}; known: {sorted(BAD_KINDS)}")
    return codec.encode(spoiled)


def _field_type(schema: StoredSchema, name: str) -> Any:
    return next(f["type"] for f in schema.parsed["fields"] if f["name"] == name)


def _nullable(schema: StoredSchema, name: str) -> bool:
    t = _field_type(schema, name)
    return isinstance(t, list) and "null" in t


def _is_float(schema: StoredSchema, name: str) -> bool:
    t = _field_type(schema, name)
    types = t if isinstance(t, list) else [t]
    return any(x in ("float", "double") for x in types)


class EventProducer:
    """Encode and send events to a pipeline's input topic with kafka-python."""

    def __init__(self, settings: Settings, manifest: Manifest, schemas: SchemaStore, topic: str) -> None:
        from kafka import KafkaProducer

        self.manifest = manifest
        self.schemas = schemas
        self.topic = topic
        self.codec = SingleObjectCodec(schemas, schemas.get(manifest.input_schema))
        self._producer = KafkaProducer(
            acks="all", linger_ms=10, batch_size=256 * 1024, client_id="workers-producer",
            **settings.kafka_client_options(),
        )
        self._futures: list[Any] = []

    def send_raw(self, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> None:
        self._futures.append(self._producer.send(self.topic, key=key, value=value, headers=headers or []))
        if len(self._futures) >= 10_000:
            self._check_delivered()

    def send_event(self, event: dict[str, Any], writer: StoredSchema | None = None) -> SentEvent:
        value = self.codec.encode(_fit(event, writer or self.codec.reader), writer)
        key = self._key(event)
        self.send_raw(value, key)
        kind = "good" if writer is None else "old_schema"
        return SentEvent(str(event[self.manifest.event_id_field]), key, value, kind)

    def send_bad(self, kind: str, event: dict[str, Any], now_ms: int | None = None) -> SentEvent:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        value = corrupt_variant(kind, event, self.codec, self.manifest, os.urandom(64), now)
        key = self._key(event)
        self.send_raw(value, key)
        return SentEvent(str(event[self.manifest.event_id_field]), key, value, kind)

    def send_kind(self, kind: str, event: dict[str, Any], old_writer: StoredSchema | None = None,
                  now_ms: int | None = None) -> SentEvent:
        """``good``, ``old_schema`` (written with ``old_writer``) or one of BAD_KINDS."""
        if kind == "good":
            return self.send_event(event)
        if kind == "old_schema":
            if old_writer is None:
                raise ValueError("kind 'old_schema' needs the older writer schema")
            return self.send_event(event, writer=old_writer)
        return self.send_bad(kind, event, now_ms)

    def _key(self, event: dict[str, Any]) -> bytes | None:
        key = event.get(self.manifest.key_field)
        return None if key is None else str(key).encode()

    def flush(self) -> None:
        self._producer.flush()
        self._check_delivered()

    def _check_delivered(self) -> None:
        futures, self._futures = self._futures, []
        for f in futures:
            f.get(timeout=60)  # raises if the broker did not acknowledge: nothing silently dropped

    def close(self) -> None:
        self.flush()
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fit(event: dict[str, Any], schema: StoredSchema) -> dict[str, Any]:
    """Drop the fields an older writer schema does not have."""
    names = schema.field_names
    return event if len(names) == len(event) else {k: event[k] for k in names if k in event}


def plan_kinds(count: int, bad_fraction: float, old_schema_fraction: float, seed: int) -> Iterator[str]:
    """A deterministic, well-mixed sequence of kinds: good, old_schema and every bad kind in turn."""
    import random

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
            yield "old_schema"
        else:
            yield "good"


def paced(items: Iterable[Any], rate: float | None) -> Iterator[Any]:
    """Yield items at ``rate`` per second (None or 0: as fast as possible)."""
    if not rate:
        yield from items
        return
    start = time.monotonic()
    for i, item in enumerate(items):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield item
