"""``workers pipeline check``: the worker's scores of the reference rows against the model's own.

Each row is fitted to the input schema, encoded with the project's codec and run through
``Pipeline.process`` in batches, exactly as a worker scores events from Kafka; the same
rows are then scored by the model's ``predict_proba``/``predict`` directly
(``offline.predict``). Any difference beyond ``TOLERANCE`` (a float32 schema field, a
category in the wrong order, a lean scoring path that drifted) and any row the worker
would dead-letter is an error naming the first such row.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from workers.byom import offline
from workers.byom.tables import Table
from workers.core.avro_values import base_types, coerce, fit_record, type_name
from workers.core.deadletter import ERROR_MESSAGE, REASON, headers_dict
from workers.core.pipeline import Pipeline
from workers.core.records import InputRecord
from workers.errors import ConfigError, ModelMismatchError

TOLERANCE = 1e-9


@dataclass(frozen=True)
class CheckReport:
    reference: Path
    rows: int
    max_difference: float

    def describe(self) -> str:
        return (f"checked {self.rows} rows of {self.reference}: the worker's scores equal the model's own "
                f"(max difference {self.max_difference:.3g}, tolerance {TOLERANCE:g})")


def reference_of(pipeline: Pipeline) -> Path | None:
    """The reference file ``pipeline new`` recorded in the manifest's lineage, if it is still there."""
    recorded = pipeline.manifest.training.get("reference", {})
    path = Path(recorded["file"]) if isinstance(recorded, dict) and recorded.get("file") else None
    return path if path is not None and path.is_file() else None


def check(pipeline: Pipeline, table: Table, batch_size: int = 500) -> CheckReport:
    now_ms = int(time.time() * 1000)
    events = _events(pipeline, table, now_ms)
    worker = np.empty(len(events))
    for start in range(0, len(events), batch_size):
        batch = [InputRecord(value=pipeline.input_codec.encode(event), topic=pipeline.topics.events, partition=0,
                             offset=start + j) for j, event in enumerate(events[start:start + batch_size])]
        result = pipeline.process(batch, now_ms=now_ms)
        for j, output in enumerate(result.outputs):  # one output per input, in input order
            if output.is_dead_letter:
                headers = headers_dict(output.headers)
                raise ModelMismatchError(
                    f"pipeline check: {table.at(table.rows[start + j])}: the worker dead-letters it as "
                    f"{headers.get(REASON)}: {headers.get(ERROR_MESSAGE)}")
            worker[start + j] = output.score
    matrix = np.array([offline.encode(e, pipeline.manifest.features) for e in events], dtype=np.float64)
    own = offline.predict(pipeline.model.model, pipeline.manifest, matrix)
    differences = np.abs(worker - own)
    largest = float(differences.max())
    if not largest <= TOLERANCE:  # NaN included
        first = int(np.flatnonzero(~(differences <= TOLERANCE))[0])
        raise ModelMismatchError(
            f"pipeline check: {table.at(table.rows[first])} scores {worker[first]!r} in the worker but "
            f"{own[first]!r} by the model (max difference {largest:.3g} over {len(events)} rows, tolerance "
            f"{TOLERANCE:g}){_float32_hint(pipeline)}")
    return CheckReport(table.path, len(events), largest)


def _events(pipeline: Pipeline, table: Table, now_ms: int) -> list[dict[str, Any]]:
    """The rows as events of the input schema; the id, key and time fields are made up where absent."""
    manifest = pipeline.manifest
    schema = pipeline.input_codec.reader
    types = {f["name"]: f["type"] for f in schema.parsed["fields"]}
    events = []
    for i, row in enumerate(table.rows, start=1):
        number = str(i)
        made_up: dict[str, Callable[[], Any]] = {
            manifest.event_id_field: partial(coerce, number, types[manifest.event_id_field]),
            manifest.key_field: partial(coerce, number, types[manifest.key_field]),
            manifest.event_time_field: lambda: now_ms,
        }
        try:
            events.append(fit_record(row.values, schema, made_up))
        except ConfigError as exc:
            raise ConfigError(f"{table.at(row)}: {exc}") from None
    return events


def _float32_hint(pipeline: Pipeline) -> str:
    fields = {f["name"]: f["type"] for f in pipeline.input_codec.reader.parsed["fields"]}
    narrow = [spec.name for spec in pipeline.manifest.features
              if any(type_name(t) == "float" for t in base_types(fields[spec.name]))]
    if not narrow:
        return ""
    return f"; features {narrow} are Avro floats, 32 bits on the wire: make them double if the model takes doubles"
