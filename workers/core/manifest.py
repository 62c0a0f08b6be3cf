"""A model version's ``manifest.json``: what the model expects and how inputs are policed.

A new pipeline is a schema plus a model directory with this manifest; no code. The
pydantic model below is the manifest's one definition: validation, the JSON Schema in
``docs/manifest.schema.json`` and ``docs/manifest.md`` all come from it.
"""
from __future__ import annotations

import json
import math
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workers.core.config_errors import one_line
from workers.errors import ConfigError


class Task(StrEnum):
    BINARY_CLASSIFICATION = "binary_classification"
    REGRESSION = "regression"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """One model input, in the model's column order."""

    name: str = Field(min_length=1, description="the input schema's field that feeds this column")
    kind: Literal["numeric", "boolean", "categorical"] = Field(
        "numeric", description="numeric: the value as a float; boolean: 1.0 / 0.0; "
                               "categorical: the value's index in `categories` (0, 1, ...)")
    min: float | None = Field(None, description="smallest accepted value (numeric); absent: unbounded")
    max: float | None = Field(None, description="largest accepted value (numeric); absent: unbounded")
    categories: list[str] = Field(
        default_factory=list, description="categorical: the known values, in the order of their codes; "
                                          "any other value is dead-lettered `invalid_value`")
    missing: Literal["reject", "impute"] = Field(
        "reject", description="a null value: `reject` (dead letter `missing_field`) or `impute` "
                              "(`impute_value` is used and the prediction is flagged `imputed`)")
    impute_value: float | bool | str | None = Field(
        None, description="the value used for a null when `missing` is `impute`, before encoding")

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        if self.kind == "categorical" and not self.categories:
            raise ValueError(f"categorical feature {self.name!r} needs its categories")
        if self.kind != "categorical" and self.categories:
            raise ValueError(f"feature {self.name!r} is {self.kind}: categories apply to categorical features")
        if self.missing == "impute" and self.impute_value is None:
            raise ValueError(f"feature {self.name!r}: missing=impute needs an impute_value")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} is above max {self.max}")
        return self

    @property
    def minimum(self) -> float:
        return -math.inf if self.min is None else self.min

    @property
    def maximum(self) -> float:
        return math.inf if self.max is None else self.max


class Policies(_Strict):
    """How event time is judged."""

    clock: Literal["wall", "stream"] = Field(
        "wall", description="what lateness is measured against: `wall`, the worker's clock (an event is late when "
                            "it arrives late); `stream`, the partition's stream time, the highest event time seen "
                            "in it (an event is late when it is older than the events before it, however late "
                            "it is processed)")
    max_lateness_s: float | None = Field(
        None, ge=0, description="an event older than this is `late`; null: no limit "
                                "(WORKERS_MAX_LATENESS_S overrides it)")
    late_action: Literal["dead_letter", "score"] = Field(
        "dead_letter", description="a late event: dead-lettered `late`, or scored and flagged `late`")
    max_future_s: float = Field(
        300.0, ge=0, description="an event time further ahead of the worker's clock is `future_timestamp` "
                                 "(with either clock)")


class FeatureProfile(_Strict):
    """Reference distribution of one feature (from the training data)."""

    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    bin_edges: list[float] | None = Field(
        None, description="numeric: inner edges of the bins (a value v is in bin i when "
                          "edges[i-1] <= v < edges[i]); absent for categorical/boolean (bin = code)")
    bin_fractions: list[float] = Field(description="share of the reference rows in each bin")


class ScoreProfile(_Strict):
    """Reference distribution of the model's scores."""

    bin_edges: list[float]
    bin_fractions: list[float]
    mean: float | None = None


class ReferenceProfile(_Strict):
    """What drift is measured against (PSI per feature and for the score)."""

    features: dict[str, FeatureProfile] = Field(default_factory=dict)
    score: ScoreProfile | None = None


class Manifest(_Strict):
    """``models/<pipeline>/<version>/manifest.json``."""

    name: str = Field(min_length=1, description="the pipeline's name (models/<name>/)")
    version: str = Field(min_length=1, description="this model version (its directory's name)")
    task: Task = Field(description="binary_classification (score = probability of `positive_class`) "
                                   "or regression (score = the prediction)")
    artifact: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                          description="the model file in the version directory (a plain file name): `.joblib` "
                                      "(pickle: runs code when loaded, so only with a verified sha256 and, "
                                      "in production, a signed manifest) or `.skops` (loads no code)")
    trusted_types: list[str] = Field(
        default_factory=list, description="`.skops` artifacts: the types skops may build besides its defaults "
                                          "(e.g. `sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor`)")
    artifact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                                 description="sha256 of the artifact; checked before it is loaded")
    input_schema: str = Field(description="the Avro schema events are read as, relative to the schemas dir")
    prediction_schema: str = Field(description="the predictions' Avro schema, relative to the schemas dir "
                                               "(a custom schemas dir needs its own copy of prediction.v1.avsc)")
    features: list[FeatureSpec] = Field(min_length=1, description="the model's inputs, in column order")
    key_field: str = Field(description="the input field that is the entity key (predictions are keyed by it)")
    event_id_field: str = Field("event_id", description="the input field with the event's unique id")
    event_time_field: str = Field("event_time", description="the input field with the event time "
                                                            "(epoch millis or timestamp-millis)")
    personal_fields: list[str] = Field(
        default_factory=list, description="input fields that hold personal data (besides those the input schema "
                                          "marks `\"personal\": true`): never copied into predictions, logs, "
                                          "metrics or the status page; a personal key or event id is replaced by a "
                                          "keyed pseudonym (WORKERS_PSEUDONYM_KEY)")
    policies: Policies = Field(default_factory=Policies)
    threshold: float = Field(0.5, ge=0, le=1, description="binary_classification: label[1] from this score up")
    labels: tuple[str, str] = Field(("negative", "positive"),
                                    description="binary_classification: [below threshold, at/above threshold]")
    positive_class: int | str | bool | None = Field(
        None, description="binary_classification: the class value (an element of the model's classes_, "
                          "not a label) whose probability is the score; default: the second class")
    reference_profile: ReferenceProfile | None = Field(None, description="reference distributions for drift")
    owner: str | None = Field(None, description="who answers for this model")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict, description="training hyper-parameters (lineage)")
    training: dict[str, Any] = Field(default_factory=dict, description="training data and environment (lineage)")
    metrics: dict[str, float] = Field(default_factory=dict, description="holdout metrics (lineage)")

    @field_validator("features")
    @classmethod
    def _unique_names(cls, features: list[FeatureSpec]) -> list[FeatureSpec]:
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names {duplicates}")
        return features

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read manifest {path}: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "manifest") -> Manifest:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(one_line(exc, source=source)) from None

    @property
    def is_classifier(self) -> bool:
        return self.task is Task.BINARY_CLASSIFICATION

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (written to docs/manifest.schema.json)."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Model manifest (models/<pipeline>/<version>/manifest.json)"
    return schema


if __name__ == "__main__":  # python -m workers.core.manifest > docs/manifest.schema.json
    print(json.dumps(json_schema(), indent=2))
