"""Model versions on disk: ``models/<pipeline>/<version>/{manifest.json, artifact}``.

Which version serves when none is asked for: the one named in ``models/<pipeline>/CURRENT``
(one line), else the newest. A rollout's primary on the control topic overrides both
(``workers.core.rollout``).

``joblib.load`` is pickle and can run code, so nothing is unpickled until it is trusted:

* names are plain (a pipeline or version like ``../elsewhere`` is refused) and every path
  stays inside the version directory (no absolute or ``..`` artifact, no symlink out);
* with trusted keys configured, the manifest's Ed25519 signature is checked first
  (``signing``): the manifest vouches for the artifact's sha256;
* the artifact is read once, its bytes checked against the sha256, and loaded from those
  same bytes, so a file swapped after the check is never loaded;
* ``.skops`` artifacts are loaded with skops, which runs no code and builds only the types
  the manifest lists in ``trusted_types``.

The manifest is then checked against the model and the input schema at start-up, so a
mismatch fails the deploy, not the first event.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.core.codec import SchemaStore, StoredSchema
from workers.core.manifest import Manifest
from workers.core.signing import SIGNATURE_FILE, Ed25519PublicKey, verify
from workers.errors import ConfigError, ModelIntegrityError, ModelMismatchError

NUMERIC_AVRO = {"int", "long", "float", "double"}
DEFAULT_FILE = "CURRENT"  # models/<pipeline>/CURRENT: the version served when none is asked for
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_plain_name(kind: str, name: str) -> str:
    """A pipeline or version name: letters, digits, '.', '_', '-', not starting with a dot, no '..'."""
    if not PLAIN_NAME.match(name) or ".." in name:
        raise ConfigError(f"{kind} {name!r} is not a plain name (letters, digits, '.', '_', '-')")
    return name


def _inside(path: Path, root: Path, what: str) -> Path:
    """``path`` with symlinks resolved, refused unless it is inside ``root``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ModelIntegrityError(f"refusing {what} {path}: it resolves to {resolved}, outside {root}")
    return resolved


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    model: Any
    directory: Path
    input_schema: StoredSchema
    prediction_schema: StoredSchema
    signer: str | None = None  # the key id of the trusted key that signed the manifest

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
    def __init__(self, models_dir: Path, schemas: SchemaStore,
                 trusted_keys: dict[str, Ed25519PublicKey] | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.schemas = schemas
        self.trusted_keys = trusted_keys or {}  # key id -> key; empty: signatures are not required

    def versions(self, pipeline: str) -> list[str]:
        root = self.models_dir / check_plain_name("pipeline", pipeline)
        if not root.is_dir():
            return []
        found = [d.name for d in root.iterdir() if (d / "manifest.json").is_file()]
        return sorted(found, key=_version_key)

    def default_version(self, pipeline: str) -> str | None:
        """The version named in ``models/<pipeline>/CURRENT``, else the newest; None when there is none."""
        versions = self.versions(pipeline)
        current = self.models_dir / pipeline / DEFAULT_FILE
        if current.is_file():
            named = check_plain_name(f"model version in {current}", current.read_text().strip())
            if named not in versions:
                raise ConfigError(f"{current} names version {named!r}, which is not there; have {versions}")
            return named
        return versions[-1] if versions else None

    def directory(self, pipeline: str, version: str | None = None) -> Path:
        versions = self.versions(pipeline)
        if not versions:
            raise ConfigError(f"no model versions under {self.models_dir / pipeline}")
        chosen = check_plain_name("model version", version) if version else (
            self.default_version(pipeline) or versions[-1])
        if chosen not in versions:
            raise ConfigError(f"model version {chosen!r} of {pipeline!r} not found; have {versions}")
        directory = self.models_dir / pipeline / chosen
        _inside(directory, self.models_dir, "model directory")
        return directory

    def manifest(self, pipeline: str, version: str | None = None) -> Manifest:
        """The manifest alone (no artifact is loaded): enough for producers and consumers."""
        return Manifest.load(self.directory(pipeline, version) / "manifest.json")

    def load(self, pipeline: str, version: str | None = None) -> LoadedModel:
        directory = self.directory(pipeline, version)
        manifest_path = _inside(directory / "manifest.json", directory, "manifest")
        manifest_bytes = manifest_path.read_bytes()  # read once: what is verified is what is used
        signer = None
        if self.trusted_keys:
            signature = directory / SIGNATURE_FILE
            signature_bytes = _inside(signature, directory, "signature").read_bytes() if signature.is_file() else None
            signer = verify(manifest_bytes, signature_bytes, self.trusted_keys, str(manifest_path))
        try:
            raw = json.loads(manifest_bytes)
        except ValueError as exc:
            raise ConfigError(f"cannot read manifest {manifest_path}: {exc}") from exc
        manifest = Manifest.from_dict(raw, source=str(manifest_path))
        artifact = directory / manifest.artifact
        if not artifact.is_file():
            raise ConfigError(f"artifact {artifact} named by the manifest does not exist")
        data = read_artifact(_inside(artifact, directory, "artifact"))
        actual = hashlib.sha256(data).hexdigest()
        if actual != manifest.artifact_sha256:
            raise ModelIntegrityError(
                f"refusing to load {artifact}: its sha256 is {actual} but the manifest declares "
                f"{manifest.artifact_sha256}; the artifact was changed or corrupted"
            )
        model = deserialize(data, manifest, artifact)
        input_schema = self.schemas.get(manifest.input_schema)
        prediction_schema = self.schemas.get(manifest.prediction_schema)
        check_model(manifest, model)
        check_schema(manifest, input_schema)
        return LoadedModel(manifest, model, directory, input_schema, prediction_schema, signer)


def read_artifact(path: Path) -> bytes:
    return path.read_bytes()


def deserialize(data: bytes, manifest: Manifest, source: Path) -> Any:
    """The model from the verified bytes: skops for ``.skops`` (no code runs), else joblib (pickle)."""
    if manifest.artifact.endswith(".skops"):
        import skops.io

        untrusted = set(skops.io.get_untrusted_types(data=data)) - set(manifest.trusted_types)
        if untrusted:
            raise ModelIntegrityError(f"refusing to load {source}: it contains types the manifest does not "
                                      f"trust: {sorted(untrusted)} (list them in trusted_types if they are)")
        return skops.io.loads(data, trusted=list(manifest.trusted_types))
    import joblib  # with scikit-learn (the models' classes): seconds to import, needed only here

    return joblib.load(io.BytesIO(data))


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
        from workers.core.scoring import positive_column

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
