"""Events from a file of records (``workers produce --from``), each fitted to the input schema.

Every record is fitted before any is sent, so a bad one stops the command with its line or
row named and nothing half-sent. A record without an event id gets a fresh one, without an
event time the current time; the key, and every other field without a default, must be
there. Columns the schema does not have are named once and left out.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.byom.tables import read_table
from workers.core.avro_values import base_types, fit_record, type_name
from workers.core.codec import StoredSchema
from workers.core.manifest import Manifest
from workers.errors import ConfigError


@dataclass(frozen=True)
class FileEvents:
    events: list[dict[str, Any]]
    ignored_columns: list[str]  # columns of the file that are not fields of the schema


def events_from_file(path: Path, manifest: Manifest, schema: StoredSchema, now_ms: int | None = None) -> FileEvents:
    table = read_table(path)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    made_up: dict[str, Callable[[], Any]] = {manifest.event_time_field: lambda: now}
    id_type = next(f["type"] for f in schema.parsed["fields"] if f["name"] == manifest.event_id_field)
    if any(type_name(t) == "string" for t in base_types(id_type)):
        made_up[manifest.event_id_field] = lambda: uuid.uuid4().hex
    events = []
    for row in table.rows:
        try:
            events.append(fit_record(row.values, schema, made_up))
        except ConfigError as exc:
            raise ConfigError(f"{table.at(row)}: {exc}") from None
    fields = set(schema.field_names)
    return FileEvents(events, [c for c in table.columns if c not in fields])
