"""A model version's ``manifest.json``: what the model expects and how inputs are policed.

A new pipeline is a schema plus a model directory with this manifest; no code.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.errors import ConfigError

FEATURE_KINDS = ("numeric", "boolean", "categorical")
MISSING_POLICIES = ("reject", "impute")
LATE_ACTIONS = ("dead_letter", "score")
TASKS = ("binary_classification", "regression")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: str = "numeric"
    minimum: float = -math.inf
    maximum: float = math.inf
    categories: tuple[str, ...] = ()
    missing: str = "reject"
    impute_value: Any = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureSpec:
        kind = raw.get("kind", "numeric")
        if kind not in FEATURE_KINDS:
            raise ConfigError(f"feature {raw.get('name')!r}: kind must be one of {FEATURE_KINDS}, got {kind!r}")
        missing = raw.get("missing", "reject")
        if missing not in MISSING_POLICIES:
            raise ConfigError(f"feature {raw['name']!r}: missing must be one of {MISSING_POLICIES}")
        if missing == "impute" and raw.get("impute_value") is None:
            raise ConfigError(f"feature {raw['name']!r}: missing=impute needs an impute_value")
        if kind == "categorical" and not raw.get("categories"):
            raise ConfigError(f"feature {raw['name']!r}: a categorical feature needs its categories")
        return cls(
            name=raw["name"],
            kind=kind,
            minimum=float(raw.get("min", -math.inf)),
            maximum=float(raw.get("max", math.inf)),
            categories=tuple(raw.get("categories", ())),
            missing=missing,
            impute_value=raw.get("impute_value"),
        )


@dataclass(frozen=True)
class Policies:
    max_lateness_s: float | None = None  # None: no lateness limit
    late_action: str = "dead_letter"  # or "score" (scored and flagged "late")
    max_future_s: float = 300.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Policies:
        late_action = raw.get("late_action", "dead_letter")
        if late_action not in LATE_ACTIONS:
            raise ConfigError(f"policies.late_action must be one of {LATE_ACTIONS}, got {late_action!r}")
        lateness = raw.get("max_lateness_s")
        return cls(
            max_lateness_s=None if lateness is None else float(lateness),
            late_action=late_action,
            max_future_s=float(raw.get("max_future_s", 300.0)),
        )


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    task: str
    artifact: str
    artifact_sha256: str
    input_schema: str
    prediction_schema: str
    features: tuple[FeatureSpec, ...]
    event_id_field: str = "event_id"
    key_field: str = "key"
    event_time_field: str = "event_time"
    policies: Policies = field(default_factory=Policies)
    threshold: float = 0.5
    labels: tuple[str, str] = ("negative", "positive")
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read manifest {path}: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "manifest") -> Manifest:
        missing = [k for k in ("name", "version", "task", "artifact", "artifact_sha256", "input_schema",
                               "prediction_schema", "features") if k not in raw]
        if missing:
            raise ConfigError(f"{source}: missing keys {missing}")
        if raw["task"] not in TASKS:
            raise ConfigError(f"{source}: task must be one of {TASKS}, got {raw['task']!r}")
        features = tuple(FeatureSpec.from_dict(f) for f in raw["features"])
        if not features:
            raise ConfigError(f"{source}: no features")
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ConfigError(f"{source}: duplicate feature names")
        return cls(
            name=raw["name"],
            version=str(raw["version"]),
            task=raw["task"],
            artifact=raw["artifact"],
            artifact_sha256=raw["artifact_sha256"],
            input_schema=raw["input_schema"],
            prediction_schema=raw["prediction_schema"],
            features=features,
            event_id_field=raw.get("event_id_field", "event_id"),
            key_field=raw.get("key_field", "key"),
            event_time_field=raw.get("event_time_field", "event_time"),
            policies=Policies.from_dict(raw.get("policies", {})),
            threshold=float(raw.get("threshold", 0.5)),
            labels=tuple(raw.get("labels", ("negative", "positive"))),
            raw=raw,
        )

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]
