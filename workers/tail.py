"""Downstream consumers: read predictions or dead letters as an application would (kafka-python)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.deadletter import headers_dict
from workers.errors import RecordError
from workers.settings import Settings


@dataclass(slots=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int


def consume(
    settings: Settings,
    topics: list[str],
    *,
    group_id: str | None = None,
    from_beginning: bool = True,
    idle_timeout_s: float | None = None,
    max_records: int | None = None,
) -> Iterator[Consumed]:
    """Yield records until ``max_records`` or ``idle_timeout_s`` without a new record."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        *topics,
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group_id is not None,
        client_id="workers-tail",
        **settings.kafka_client_options(),
    )
    seen = 0
    last = time.monotonic()
    try:
        while max_records is None or seen < max_records:
            batches = consumer.poll(timeout_ms=200)
            if not batches:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    return
                continue
            last = time.monotonic()
            for _tp, messages in batches.items():
                for m in messages:
                    yield Consumed(m.topic, m.partition, m.offset, m.key, m.value, list(m.headers or []), m.timestamp)
                    seen += 1
    finally:
        consumer.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def describe(record: Consumed, codec: SingleObjectCodec | None) -> dict[str, Any]:
    """A prediction decoded, or a dead letter's headers with its original bytes' size."""
    base: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
    }
    headers = headers_dict(record.headers)
    if "dlq.reason" in headers:
        base["dead_letter"] = headers
        base["original_bytes"] = len(record.value or b"")
        return base
    if codec is not None:
        try:
            prediction, _ = codec.decode(record.value)
            base["prediction"] = {k: _jsonable(v) for k, v in prediction.items()}
        except RecordError as exc:
            base["undecodable"] = str(exc)
    return base


def human(d: dict[str, Any]) -> str:
    where = f"{d['topic']}[{d['partition']}]@{d['offset']}"
    if "dead_letter" in d:
        h = d["dead_letter"]
        return (f"{where} DEAD LETTER key={d['key']} reason={h.get('dlq.reason')} "
                f"from={h.get('dlq.original.topic')}[{h.get('dlq.original.partition')}]@"
                f"{h.get('dlq.original.offset')} error={h.get('dlq.error.message')!r} bytes={d['original_bytes']}")
    if "prediction" in d:
        p = d["prediction"]
        flags = f" flags={','.join(p['flags'])}" if p["flags"] else ""
        return (f"{where} key={d['key']} event={p['event_id'][:12]} score={p['score']:.4f} label={p['label']} "
                f"model={p['model_name']}@{p['model_version']}{flags}")
    return f"{where} key={d['key']} {d.get('undecodable', '')}"


def prediction_codec(settings: Settings) -> SingleObjectCodec:
    from workers.core.registry import ModelRegistry

    store = SchemaStore(settings.schemas_dir)
    manifest = ModelRegistry(settings.models_dir, store).manifest(settings.pipeline, settings.model_version)
    return SingleObjectCodec(store, store.get(manifest.prediction_schema))


def to_json(d: dict[str, Any]) -> str:
    return json.dumps(d, default=str)
