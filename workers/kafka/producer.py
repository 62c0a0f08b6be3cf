"""Producing events (kafka-python): the small API an upstream application uses.

``EventProducer.send_event`` encodes a record with the pipeline's input schema (or an
older version of it) in Avro single-object encoding, keyed by the entity key, and
``flush`` raises if any record was not acknowledged: nothing is dropped silently.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from workers.core.codec import SchemaStore, SingleObjectCodec, StoredSchema
from workers.core.manifest import Manifest
from workers.core.records import Headers
from workers.kafka import clients
from workers.settings import Settings

UNACKED_LIMIT = 10_000  # futures kept before their acknowledgements are checked


@dataclass(slots=True)
class Sent:
    event_id: str
    key: bytes | None
    value: bytes


class EventProducer:
    """Encode and send events to a pipeline's input topic."""

    def __init__(self, settings: Settings, manifest: Manifest, schemas: SchemaStore, topic: str) -> None:
        self.manifest = manifest
        self.schemas = schemas
        self.topic = topic
        self.codec = SingleObjectCodec(schemas, schemas.get(manifest.input_schema))
        self._producer = clients.producer(settings, acks="all", linger_ms=10, batch_size=256 * 1024,
                                          client_id="workers-producer")
        self._futures: list[Any] = []

    def send_raw(self, value: bytes, key: bytes | None, headers: Headers | None = None) -> Any:
        """Send as is; returns the delivery future (``.get()`` gives the partition and offset)."""
        future = self._producer.send(self.topic, key=key, value=value, headers=headers or [])
        self._futures.append(future)
        if len(self._futures) >= UNACKED_LIMIT:
            self._check_delivered()
        return future

    def send_event(self, event: dict[str, Any], writer: StoredSchema | None = None) -> Sent:
        """Encode with the input schema (or an older ``writer`` version of it) and send."""
        value = self.codec.encode(fit_to_schema(event, writer or self.codec.reader), writer)
        key = self.key_of(event)
        self.send_raw(value, key)
        return Sent(str(event[self.manifest.event_id_field]), key, value)

    def key_of(self, event: dict[str, Any]) -> bytes | None:
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
        try:
            self.flush()
        finally:
            self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_events(settings: Settings, manifest: Manifest, schemas: SchemaStore, events: Iterable[dict[str, Any]],
                rate: float | None = None) -> list[Sent]:
    """Send ``events`` to the pipeline's input topic; returns once every one was acknowledged."""
    with EventProducer(settings, manifest, schemas, settings.topics.events) as producer:
        return [producer.send_event(event) for event in paced(events, rate)]


def fit_to_schema(event: dict[str, Any], schema: StoredSchema) -> dict[str, Any]:
    """Drop the fields an older writer schema does not have."""
    names = schema.field_names
    return event if len(names) == len(event) else {k: event[k] for k in names if k in event}


def paced(items: Iterable[Any], rate: float | None) -> Iterator[Any]:
    """Yield items at ``rate`` per second (None or 0: as fast as possible)."""
    if not rate:
        yield from items
        return
    start = time.monotonic()
    for i, item in enumerate(items):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield item
