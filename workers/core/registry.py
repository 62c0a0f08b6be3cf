"""Model versions on disk: ``models/<pipeline>/<version>/{manifest.json, artifact}``.

``joblib.load`` is pickle and can run code, so the artifact's sha256 is checked against
the manifest *before* it is loaded. The manifest is then checked against the model and
the input schema at start-up, so a mismatch fails the deploy, not the first event.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from workers.core.codec import SchemaStore, StoredSchema
from workers.core.manifest import Manifest
from workers.core.scoring import positive_column
from workers.errors import ConfigError, ModelIntegrityError, ModelMismatchError

NUMERIC_AVRO = {"int", "long", "float", "double"}


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    model: Any
    directory: Path
    input_schema: StoredSchema
    prediction_schema: StoredSchema

    @property
    def sha256(self) -> str:
        return self.manifest.artifact_sha256


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version_key(version: str) -> tuple:
    """Natural order: v2 < v10, 1.2.0 < 1.10.0."""
    parts = re.split(r"[.\-_]|(?<=\D)(?=\d)", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)


class ModelRegistry:
    def __init__(self, models_dir: Path, schemas: SchemaStore) -> None:
        self.models_dir = Path(models_dir)
        self.schemas = schemas

    def versions(self, pipeline: str) -> list[str]:
        root = self.models_dir / pipeline
        if not root.is_dir():
            return []
        found = [d.name for d in root.iterdir() if (d / "manifest.json").is_file()]
        return sorted(found, key=_version_key)

    def directory(self, pipeline: str, version: str | None = None) -> Path:
        versions = self.versions(pipeline)
        if not versions:
            raise ConfigError(f"no model versions under {self.models_dir / pipeline}")
        chosen = version or versions[-1]
        if chosen not in versions:
            raise ConfigError(f"model version {chosen!r} of {pipeline!r} not found; have {versions}")
        return self.models_dir / pipeline / chosen

    def manifest(self, pipeline: str, version: str | None = None) -> Manifest:
        """The manifest alone (no artifact is loaded): enough for producers and consumers."""
        return Manifest.load(self.directory(pipeline, version) / "manifest.json")

    def load(self, pipeline: str, version: str | None = None) -> LoadedModel:
        directory = self.directory(pipeline, version)
        manifest = Manifest.load(directory / "manifest.json")
        artifact = directory / manifest.artifact
        if not artifact.is_file():
            raise ConfigError(f"artifact {artifact} named by the manifest does not exist")
        actual = file_sha256(artifact)
        if actual != manifest.artifact_sha256:
            raise ModelIntegrityError(
                f"refusing to load {artifact}: its sha256 is {actual} but the manifest declares "
                f"{manifest.artifact_sha256}; the artifact was changed or corrupted"
            )
        model = joblib.load(artifact)
        input_schema = self.schemas.get(manifest.input_schema)
        prediction_schema = self.schemas.get(manifest.prediction_schema)
        check_model(manifest, model)
        check_schema(manifest, input_schema)
        return LoadedModel(manifest, model, directory, input_schema, prediction_schema)


def check_model(manifest: Manifest, model: Any) -> None:
    names = manifest.feature_names
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and n_in != len(names):
        raise ModelMismatchError(f"model expects {n_in} features, manifest lists {len(names)}: {names}")
    fitted_names = getattr(model, "feature_names_in_", None)
    if fitted_names is not None and list(fitted_names) != names:
        raise ModelMismatchError(f"model features {list(fitted_names)} differ from the manifest's {names}")
    if manifest.is_classifier:
        if not hasattr(model, "predict_proba"):
            raise ModelMismatchError("binary_classification needs a model with predict_proba")
        classes = getattr(model, "classes_", None)
        if classes is not None and len(classes) != 2:
            raise ModelMismatchError(f"binary_classification needs 2 classes, model has {len(classes)}")
        positive_column(manifest, model)  # raises if positive_class is not one of the classes
    elif not hasattr(model, "predict"):
        raise ModelMismatchError("regression needs a model with predict")


def _avro_types(field_type: Any) -> tuple[set[str], bool]:
    """The base type names of a field and whether it is nullable."""
    types = field_type if isinstance(field_type, list) else [field_type]
    names: set[str] = set()
    for t in types:
        if isinstance(t, dict):
            names.add(str(t.get("type")))
        else:
            names.add(t)
    nullable = "null" in names
    names.discard("null")
    return names, nullable


def check_schema(manifest: Manifest, schema: StoredSchema) -> None:
    fields = {f["name"]: f["type"] for f in schema.parsed["fields"]}
    for required in (manifest.event_id_field, manifest.key_field, manifest.event_time_field):
        if required not in fields:
            raise ModelMismatchError(f"input schema {schema.path} has no field {required!r}")
    for feature in manifest.features:
        if feature.name not in fields:
            raise ModelMismatchError(f"feature {feature.name!r} is not a field of {schema.path}")
        types, _nullable = _avro_types(fields[feature.name])
        expected = {"numeric": NUMERIC_AVRO, "boolean": {"boolean"}, "categorical": {"string", "enum"}}
        if not types <= expected[feature.kind]:
            raise ModelMismatchError(
                f"feature {feature.name!r} is {feature.kind} but its Avro type is {sorted(types)}"
            )
