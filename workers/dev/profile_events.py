"""Synthetic events for any pipeline, drawn from its manifest's reference profile.

Each feature is drawn from its reference distribution (a numeric one: a decile bin by its
share, then uniformly inside the bin, between the profile's min and max; a categorical or
boolean one: a code by its share), independently of the others, so the events look like
the reference data feature by feature but not jointly. Good enough to exercise a worker,
its dead letters and its drift monitoring; for realistic events, ``produce --from FILE``.
"""
from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from workers.core.avro_values import base_types, coerce, is_nullable, type_name
from workers.core.codec import StoredSchema
from workers.core.manifest import FeatureProfile, FeatureSpec, Manifest
from workers.errors import ConfigError

KEYS = 1000  # distinct entity keys
SPAN_MS = 60_000  # event times spread over the last minute
ZERO = {"string": "", "int": 0, "long": 0, "float": 0.0, "double": 0.0, "boolean": False}


def generate(manifest: Manifest, schema: StoredSchema, count: int, seed: int, now_ms: int,
             shift: dict[str, float] | None = None) -> list[dict[str, Any]]:
    profile = manifest.reference_profile
    missing = [f.name for f in manifest.features if profile is None or f.name not in profile.features]
    if missing:
        raise ConfigError(f"{manifest.name} {manifest.version}: the manifest has no reference profile for "
                          f"{missing}, so there is nothing to draw events from; use --from FILE")
    assert profile is not None  # every feature has an entry
    unknown = sorted(set(shift or {}) - {f.name for f in manifest.features if f.kind == "numeric"})
    if unknown:
        raise ConfigError(f"--shift names {unknown}, which are not numeric features of {manifest.name}")
    rng = np.random.default_rng(seed)
    types = {f["name"]: f["type"] for f in schema.parsed["fields"]}
    columns = {spec.name: _draw(spec, profile.features[spec.name], count, rng) * (shift or {}).get(spec.name, 1.0)
               if spec.kind == "numeric" else _draw(spec, profile.features[spec.name], count, rng)
               for spec in manifest.features}
    offsets = rng.integers(0, SPAN_MS, count)
    named = {*columns, manifest.event_id_field, manifest.key_field, manifest.event_time_field}
    fillers = {f["name"]: _filler(f) for f in schema.parsed["fields"] if f["name"] not in named}
    events = []
    for i in range(count):
        event: dict[str, Any] = {}
        for name, field_type in types.items():
            if name in columns:
                value = _value(columns[name][i], manifest.features, name, field_type)
            elif name == manifest.event_id_field:
                value = coerce(uuid.UUID(bytes=rng.bytes(16)).hex, field_type)
            elif name == manifest.key_field:
                value = coerce(str(int(rng.integers(0, KEYS))), field_type)
            elif name == manifest.event_time_field:
                value = now_ms - int(offsets[i])
            else:
                value = fillers[name]
            event[name] = value
        events.append(event)
    return events


def _draw(spec: FeatureSpec, reference: FeatureProfile, count: int, rng: np.random.Generator) -> np.ndarray:
    fractions = np.asarray(reference.bin_fractions, dtype=float)
    bins = rng.choice(len(fractions), count, p=fractions / fractions.sum())
    if spec.kind != "numeric":
        return bins  # the code: a category's index, or 0/1
    low = reference.min if reference.min is not None else spec.minimum
    high = reference.max if reference.max is not None else spec.maximum
    edges = np.concatenate([[low], reference.bin_edges or [], [high]])
    values = rng.uniform(edges[bins], edges[bins + 1])
    return np.clip(values, spec.minimum, spec.maximum)


def _value(drawn: Any, features: list[FeatureSpec], name: str, field_type: Any) -> Any:
    spec = next(f for f in features if f.name == name)
    if spec.kind == "categorical":
        return spec.categories[int(drawn)]
    if spec.kind == "boolean":
        return bool(drawn)
    if any(type_name(t) in ("int", "long") for t in base_types(field_type)):
        return round(float(drawn))
    return float(drawn)


def _filler(field: dict[str, Any]) -> Any:
    """A field that is neither a feature nor the id, key or time: its default, null, or a zero."""
    name, field_type = field["name"], field["type"]
    if "default" in field:
        return field["default"]
    if is_nullable(field_type):
        return None
    for t in base_types(field_type):
        if type_name(t) in ZERO:
            return ZERO[type_name(t)]
        if type_name(t) == "enum":
            return t["symbols"][0]
    raise ConfigError(f"field {name!r} ({field_type}) is not a feature and has no simple value to fill in; "
                      "use --from FILE")
