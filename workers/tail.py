"""How records on a pipeline's output topics are shown: `workers tail`, the demo, the drills."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

from workers.core.codec import SingleObjectCodec, StoredSchema
from workers.core.deadletter import (
    ERROR_MESSAGE,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    REASON,
    headers_dict,
)
from workers.core.framing import Framing, InputDecoder, RegisteredSchemas
from workers.errors import RecordError
from workers.kafka.consumer import Consumed
from workers.pipelines import load_manifest
from workers.settings import Settings


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Decoder(Protocol):
    def decode(self, payload: bytes | None) -> tuple[dict[str, Any], StoredSchema]: ...


def describe(record: Consumed, codec: Decoder | None) -> dict[str, Any]:
    """A prediction decoded, or a dead letter's headers with its original bytes' size."""
    base: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
    }
    shown = headers_dict(record.headers)
    if REASON in shown:
        base["dead_letter"] = shown
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
        return (f"{where} DEAD LETTER key={d['key']} reason={h.get(REASON)} "
                f"from={h.get(ORIGINAL_TOPIC)}[{h.get(ORIGINAL_PARTITION)}]@"
                f"{h.get(ORIGINAL_OFFSET)} error={h.get(ERROR_MESSAGE)!r} bytes={d['original_bytes']}")
    if "prediction" in d:
        p = d["prediction"]
        flags = f" flags={','.join(p['flags'])}" if p["flags"] else ""
        return (f"{where} key={d['key']} event={p['event_id'][:12]} score={p['score']:.4f} label={p['label']} "
                f"model={p['model_name']}@{p['model_version']}{flags}")
    return f"{where} key={d['key']} {d.get('undecodable', '')}"


def prediction_codec(settings: Settings) -> Decoder:
    """Predictions in either framing when a schema registry is configured, else single-object."""
    manifest, store = load_manifest(settings)
    single = SingleObjectCodec(store, store.get(manifest.prediction_schema))
    if not settings.schema_registry_url:
        return single
    from workers.kafka.schema_registry import FetchingDecoder, SchemaRegistry

    return FetchingDecoder(InputDecoder(single, Framing.BOTH, RegisteredSchemas(store)),
                           SchemaRegistry.from_settings(settings))


def to_json(d: dict[str, Any]) -> str:
    return json.dumps(d, default=str)
