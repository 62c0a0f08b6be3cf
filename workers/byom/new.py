"""``workers pipeline new``: a pipeline from a model file, an Avro input schema and reference data.

It writes ``models/<name>/<version>/`` (the artifact, byte for byte, and ``manifest.json``)
and copies the schema to ``schemas/<name>/``. Everything is checked before anything is
written (the features, see ``draft``; the task and the positive class; the manifest against
the model and the schema, as the registry does); then the pipeline is loaded the way a
worker loads it and the reference rows are scored through it and compared with the model's
own predictions (``check``). If that fails, what was written is removed again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.base import is_classifier, is_regressor

from workers.byom import check as pipeline_check
from workers.byom.draft import FROM_THE_MODEL, Draft, FeatureOptions, draft_features
from workers.byom.model_file import ModelFile, load_model_file
from workers.byom.offline import predict, predict_labels
from workers.byom.tables import Table, read_table
from workers.core.codec import SchemaStore, StoredSchema
from workers.core.manifest import Manifest, Task
from workers.core.profile import feature_profile, score_profile
from workers.core.registry import check_model, check_plain_name, check_schema
from workers.errors import ConfigError, SchemaError
from workers.pipelines import load_pipeline
from workers.settings import Settings

PREDICTION_SCHEMA = "prediction.v1.avsc"


@dataclass(frozen=True)
class NewPipeline:
    name: str
    version: str
    model: Path
    schema: Path
    reference: Path
    features: list[str] | None = None
    features_from_reference: bool = False
    target: str | None = None
    categories: dict[str, list[str]] = field(default_factory=dict)
    sorted_categories: bool = False
    bounds: bool = True
    task: str | None = None
    positive_class: str | None = None
    labels: tuple[str, str] | None = None
    threshold: float = 0.5
    key_field: str | None = None
    event_id_field: str | None = None
    event_time_field: str | None = None
    trusted_types: list[str] = field(default_factory=list)
    owner: str | None = None
    description: str | None = None
    sign_key: Path | None = None


@dataclass(frozen=True)
class Created:
    directory: Path
    schema_path: Path
    manifest: Manifest
    order_source: str
    quality: str | None  # the model's quality on the labelled reference rows, if labels were given
    check: pipeline_check.CheckReport
    signed_by: str | None


def create(request: NewPipeline, settings: Settings) -> Created:
    name = check_plain_name("pipeline", request.name)
    version = check_plain_name("model version", request.version)
    directory = settings.models_dir / name / version
    if directory.exists():
        raise ConfigError(f"{directory} exists: a version is never overwritten; choose another --model-version")
    store = SchemaStore(settings.schemas_dir)
    store.get(PREDICTION_SCHEMA)  # the predictions' schema must be there (a custom schemas dir needs a copy)
    schema_path = settings.schemas_dir / name / request.schema.name
    schema_text = _schema_text(request.schema, schema_path)
    schema = store.add_definition(json.loads(schema_text), f"{name}/{request.schema.name}")
    model_file = load_model_file(request.model, request.trusted_types)
    model = model_file.model
    task = _task(model, request.task)
    fields = _id_fields(schema, request)
    table = read_table(request.reference)
    draft = draft_features(model, schema, table, FeatureOptions(
        features=request.features, from_reference=request.features_from_reference, target=request.target,
        not_features=list(fields.values()), categories=request.categories,
        sorted_categories=request.sorted_categories, bounds=request.bounds))
    raw = _manifest(request, task, model_file, schema, fields, draft, table, model)
    manifest = Manifest.from_dict(raw, source="the drafted manifest")
    check_model(manifest, model)  # what the registry will check at start-up, before anything is written
    check_schema(manifest, schema)
    scores = predict(model, manifest, draft.matrix)
    quality, metrics = _quality_gate(model, manifest, table, request.target, draft, scores)
    if metrics:
        raw["metrics"] = metrics
    raw["reference_profile"] = {"features": feature_profile(draft.matrix, manifest.features),
                                "score": score_profile(scores, probabilities=manifest.is_classifier)}
    manifest = Manifest.from_dict(raw, source="the drafted manifest")

    # what did not exist before is removed again if anything below fails
    made = [p for p in (schema_path, schema_path.parent, directory.parent) if not p.exists()]
    try:
        directory.mkdir(parents=True)
        (directory / model_file.artifact).write_bytes(model_file.data)
        (directory / "manifest.json").write_text(json.dumps(raw, indent=2) + "\n")
        schema_path.parent.mkdir(parents=True, exist_ok=True)
        schema_path.write_text(schema_text)
        signed_by = _sign(directory, request.sign_key) if request.sign_key else None
        pipeline = load_pipeline(settings.model_copy(update={"pipeline": name, "model_version": version}))
        report = pipeline_check.check(pipeline, table, settings.batch_size)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        for path in made:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    return Created(directory, schema_path, manifest, draft.order_source, quality, report, signed_by)


def _schema_text(source: Path, destination: Path) -> str:
    try:
        text = source.read_text()
    except OSError as exc:
        raise SchemaError(f"cannot read the input schema {source}: {exc.strerror}") from None
    if destination.exists() and destination.read_text() != text:
        raise ConfigError(f"{destination} exists with other contents: a schema version is never changed; "
                          "give the new schema another file name (e.g. .v2.avsc)")
    return text


def _task(model: Any, requested: str | None) -> Task:
    if is_classifier(model):
        classes = getattr(model, "classes_", [])
        if len(classes) != 2:
            raise ConfigError(f"the model has {len(classes)} classes: a worker scores one number per event, the "
                              "probability of one class (binary_classification) or a value (regression); train "
                              "a binary model, e.g. one class against the rest")
        detected = Task.BINARY_CLASSIFICATION
    elif is_regressor(model):
        detected = Task.REGRESSION
    elif requested is None:
        raise ConfigError(f"cannot tell whether a {type(model).__name__} classifies or regresses: give --task "
                          f"({' or '.join(t.value for t in Task)})")
    else:
        detected = Task(requested)
    if requested is not None and Task(requested) is not detected:
        raise ConfigError(f"--task {requested}, but the model is a {type(model).__name__} ({detected.value})")
    return detected


def _id_fields(schema: StoredSchema, request: NewPipeline) -> dict[str, str]:
    """The event id, key and event time fields: as given, else a field of the usual name."""
    names = set(schema.field_names)
    chosen = {}
    for role, given, usual, option in (("event_id_field", request.event_id_field, "event_id", "--event-id-field"),
                                       ("key_field", request.key_field, "key", "--key-field"),
                                       ("event_time_field", request.event_time_field, "event_time",
                                        "--event-time-field")):
        if given is not None and given not in names:
            raise ConfigError(f"{option} {given!r} is not a field of {request.schema} (fields: {schema.field_names})")
        if given is None and usual not in names:
            raise ConfigError(f"{request.schema} has no field {usual!r}: name the {role.removesuffix('_field')} "
                              f"field with {option}")
        chosen[role] = given or usual
    return chosen


def _positive_class(model: Any, requested: str | None) -> Any:
    classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
    if requested is None:
        raise ConfigError(f"a classifier's score is the probability of one class: name it with --positive-class "
                          f"(one of the model's classes {classes})")
    for value in classes:
        if str(value) == requested:
            return value
    raise ConfigError(f"--positive-class {requested!r} is not one of the model's classes {classes}")


def _manifest(request: NewPipeline, task: Task, model_file: ModelFile, schema: StoredSchema,
              fields: dict[str, str], draft: Draft, table: Table, model: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "name": request.name,
        "version": request.version,
        "task": task.value,
        "artifact": model_file.artifact,
        "trusted_types": model_file.trusted_types,
        "artifact_sha256": model_file.sha256,
        "input_schema": schema.path,
        "prediction_schema": PREDICTION_SCHEMA,
        "features": [spec.model_dump(exclude_defaults=True) | {"kind": spec.kind} for spec in draft.features],
        **fields,
        "training": {
            "built_by": "workers pipeline new",
            "estimator": f"{type(model).__module__}.{type(model).__name__}",
            "feature_order": draft.order_source,
            "reference": {"file": str(table.path.resolve()), "rows": len(table.rows),
                          "sha256": hashlib.sha256(table.path.read_bytes()).hexdigest(), "target": request.target},
            "scikit_learn": sklearn.__version__,
        },
    }
    if task is Task.BINARY_CLASSIFICATION:
        manifest["positive_class"] = _positive_class(model, request.positive_class)
        manifest["threshold"] = request.threshold
        if request.labels is not None:
            manifest["labels"] = list(request.labels)
    elif request.positive_class is not None or request.labels is not None:
        raise ConfigError("--positive-class and --labels apply to classifiers; this model is a regressor")
    for key in ("owner", "description"):
        if getattr(request, key):
            manifest[key] = getattr(request, key)
    return manifest


def _quality_gate(model: Any, manifest: Manifest, table: Table, target: str | None, draft: Draft,
                  scores: np.ndarray) -> tuple[str | None, dict[str, float]]:
    """With labels, the model must beat a constant on the reference rows: a model given its columns
    in the wrong order (or categories in the wrong code order) rarely does."""
    if target is None:
        return None, {}
    if target not in table.columns:
        raise ConfigError(f"--target {target!r} is not a column of {table.path} (columns: {table.columns})")
    labels = [row.values.get(target) for row in table.rows]
    missing = [row.where for row, label in zip(table.rows, labels, strict=True) if label is None]
    if missing:
        raise ConfigError(f"{table.path} {missing[0]}: the target {target!r} is empty")
    if manifest.is_classifier:
        predicted = predict_labels(model, draft.matrix)
        accuracy = float(np.mean([str(p) == str(y) for p, y in zip(predicted, labels, strict=True)]))
        texts = [str(y) for y in labels]
        constant = max(texts.count(t) for t in set(texts)) / len(texts)
        summary = f"accuracy {accuracy:.3f} on the {len(labels)} reference rows (always the commonest: {constant:.3f})"
        if accuracy <= constant:
            raise ConfigError(f"the model is no better than a constant on the reference rows ({summary}): are the "
                              "features in the order it was fitted with (and the categories in their code order)?")
        return summary, {"reference_accuracy": round(accuracy, 6)}
    try:
        truth = np.array([float(y) for y in labels if y is not None])
    except (TypeError, ValueError):
        raise ConfigError(f"--target {target!r}: a regression target must be numbers") from None
    r2 = 1 - float(np.sum((truth - scores) ** 2)) / max(float(np.sum((truth - truth.mean()) ** 2)), 1e-300)
    summary = f"R² {r2:.3f} on the {len(labels)} reference rows"
    if r2 <= 0:
        raise ConfigError(f"the model is no better than the mean on the reference rows ({summary}): are the "
                          "features in the order it was fitted with (and the categories in their code order)?")
    return summary, {"reference_r2": round(r2, 6)}


def _sign(directory: Path, key_path: Path) -> str:
    from workers.core.signing import SIGNATURE_FILE, key_id, load_private_key, sign

    try:
        key = load_private_key(key_path.read_bytes(), str(key_path))
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {key_path}: {exc.strerror}") from None
    (directory / SIGNATURE_FILE).write_bytes(sign((directory / "manifest.json").read_bytes(), key))
    return key_id(key.public_key())


def summary(created: Created) -> list[str]:
    """What was written and what it means, in a few lines."""
    manifest = created.manifest
    names = manifest.feature_names
    shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
    if manifest.is_classifier:
        meaning = (f"score = probability of class {manifest.positive_class!r}; label {manifest.labels[1]!r} from "
                   f"{manifest.threshold} up, else {manifest.labels[0]!r}")
    else:
        meaning = "score = the model's prediction"
    lines = [
        f"wrote {created.directory}/ ({manifest.artifact}, sha256 {manifest.artifact_sha256[:16]}..., manifest.json"
        f"{', manifest.json.sig signed by ' + created.signed_by if created.signed_by else ''}) and "
        f"{created.schema_path}",
        f"  {manifest.task.value}: {meaning}",
        f"  features in the model's order (from {created.order_source}): {shown}",
        f"  events: id {manifest.event_id_field!r}, key {manifest.key_field!r}, time {manifest.event_time_field!r}",
    ]
    if created.quality:
        lines.append(f"  reference: {created.quality}")
    elif created.order_source != FROM_THE_MODEL:
        # nothing but the user's word says the columns are in the model's order: say so
        lines.append("  the column order is not checked: the model has no feature names and no --target was "
                     "given (with a label column, a model fed its columns in the wrong order is refused)")
    lines.append(f"  {created.check.describe()}")
    lines.append(f"next: workers topics create --pipeline {manifest.name}; workers run --pipeline {manifest.name}; "
                 f"workers produce --pipeline {manifest.name}")
    return lines
