import json
import shutil

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from tests.factories import REPO, make_sensor_pipeline
from workers.core.codec import SchemaStore
from workers.core.registry import ModelRegistry, _version_key
from workers.errors import ConfigError, ModelIntegrityError, ModelMismatchError


@pytest.fixture
def fraud_copy(tmp_path):
    """A writable copy of the reference model directory and the schemas."""
    shutil.copytree(REPO / "models" / "fraud", tmp_path / "models" / "fraud")
    return tmp_path / "models", SchemaStore(REPO / "schemas")


def test_loads_the_current_version_and_checks_it(fraud_copy):
    models, schemas = fraud_copy
    loaded = ModelRegistry(models, schemas).load("fraud")
    assert loaded.manifest.version == "1.0.0"
    assert loaded.input_schema.path == "fraud/transaction.v2.avsc"
    assert hasattr(loaded.model, "predict_proba")


def test_tampered_artifact_is_refused_before_loading(fraud_copy, monkeypatch):
    models, schemas = fraud_copy
    artifact = models / "fraud" / "1.0.0" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    loads = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: loads.append(a))
    with pytest.raises(ModelIntegrityError, match=r"sha256 .* manifest declares"):
        ModelRegistry(models, schemas).load("fraud")
    assert loads == []  # never unpickled


def _edit_manifest(models, edit) -> None:
    path = models / "fraud" / "1.0.0" / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(features=m["features"][:-1]), "expects 10 features, manifest lists 9"),
        # v1 has no device_trust_score
        (lambda m: m.update(input_schema="fraud/transaction.v1.avsc"), "device_trust_score"),
        # merchant_category is a string in the schema
        (lambda m: m["features"][1].update(kind="numeric", categories=[]), "merchant_category"),
    ],
    ids=["feature-count", "feature-not-in-schema", "feature-kind-vs-avro-type"],
)
def test_manifest_mismatches_are_caught_at_load(fraud_copy, edit, message):
    models, schemas = fraud_copy
    _edit_manifest(models, edit)
    with pytest.raises(ModelMismatchError, match=message):
        ModelRegistry(models, schemas).load("fraud")


def test_classifier_with_three_classes_is_refused(tmp_path):
    schemas_dir, models = make_sensor_pipeline(tmp_path)
    directory = models / "sensor" / "3"
    model = LogisticRegression().fit([[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]], [0, 1, 2])
    joblib.dump(model, directory / "ridge.joblib")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["task"] = "binary_classification"
    from workers.core.registry import file_sha256

    manifest["artifact_sha256"] = file_sha256(directory / "ridge.joblib")
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelMismatchError, match="2 classes"):
        ModelRegistry(models, SchemaStore(schemas_dir)).load("sensor")


def test_unknown_pipeline_or_version(fraud_copy):
    models, schemas = fraud_copy
    registry = ModelRegistry(models, schemas)
    with pytest.raises(ConfigError, match="no model versions"):
        registry.load("nope")
    with pytest.raises(ConfigError, match="not found"):
        registry.load("fraud", "9.9.9")


def test_versions_sort_naturally():
    versions = ["1.10.0", "1.2.0", "v10", "v2", "1.9.1"]
    assert sorted(versions, key=_version_key)[:3] == ["1.2.0", "1.9.1", "1.10.0"]
    assert sorted(["v10", "v2", "v1"], key=_version_key) == ["v1", "v2", "v10"]


def test_current_names_the_default_version_else_the_newest_serves(fraud_copy):
    models, schemas = fraud_copy
    registry = ModelRegistry(models, schemas)
    assert registry.versions("fraud") == ["1.0.0", "1.1.0"]
    assert registry.default_version("fraud") == "1.0.0"  # models/fraud/CURRENT
    assert registry.manifest("fraud").version == "1.0.0"
    assert registry.load("fraud", "1.1.0").manifest.version == "1.1.0"
    (models / "fraud" / "CURRENT").unlink()
    assert registry.default_version("fraud") == "1.1.0"
    (models / "fraud" / "CURRENT").write_text("2.0.0\n")
    with pytest.raises(ConfigError, match=r"CURRENT names version '2.0.0', which is not there"):
        registry.manifest("fraud")
