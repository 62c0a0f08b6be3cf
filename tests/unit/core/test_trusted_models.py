"""Trusted models: paths stay inside the version directory, what is verified is what is loaded,
signatures are required when keys are configured, and skops loads no code.

The malicious artifact is a real pickle whose unpickling creates a file: each test asserts
the file was never created.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.factories import REPO
from workers.core import registry as registry_module
from workers.core.codec import SchemaStore
from workers.core.registry import ModelRegistry
from workers.core.signing import SIGNATURE_FILE, generate_key_pair, key_id, load_private_key, load_public_key, sign
from workers.errors import ConfigError, ModelIntegrityError

SCHEMAS = SchemaStore(REPO / "schemas")


class _Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def setup(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "fraud", models / "fraud")
    version = models / "fraud" / "1.0.0"
    marker = tmp_path / "pwned"
    evil = tmp_path / "outside" / "evil.joblib"
    evil.parent.mkdir()
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    return models, version, evil, marker


def _edit(directory: Path, **changes) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("artifact", ["../../../outside/evil.joblib", "/absolute/evil.joblib", ".hidden"])
def test_an_artifact_path_that_leaves_the_version_directory_is_refused(setup, artifact):
    models, version, evil, marker = setup
    _edit(version, artifact=artifact, artifact_sha256=_sha(evil))
    with pytest.raises(ConfigError, match="artifact: String should match pattern"):
        ModelRegistry(models, SCHEMAS).load("fraud")
    assert not marker.exists()


def test_a_symlinked_artifact_pointing_outside_is_refused(setup):
    models, version, evil, marker = setup
    (version / "model.joblib").unlink()
    (version / "model.joblib").symlink_to(evil)
    _edit(version, artifact_sha256=_sha(evil))
    with pytest.raises(ModelIntegrityError, match="outside"):
        ModelRegistry(models, SCHEMAS).load("fraud")
    assert not marker.exists()


def test_a_symlinked_version_directory_pointing_outside_is_refused(setup, tmp_path):
    models, version, evil, marker = setup
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(version, elsewhere)
    shutil.copy(evil, elsewhere / "model.joblib")
    _edit(elsewhere, artifact_sha256=_sha(evil), version="9.9.9")
    (models / "fraud" / "9.9.9").symlink_to(elsewhere)
    with pytest.raises(ModelIntegrityError, match="outside"):
        ModelRegistry(models, SCHEMAS).load("fraud", "9.9.9")
    assert not marker.exists()


@pytest.mark.parametrize(("pipeline", "version"), [("../elsewhere/x", None), ("fraud", "../../x"), (".hidden", None)])
def test_pipeline_and_version_names_must_be_plain(setup, pipeline, version):
    models, _, _, marker = setup
    with pytest.raises(ConfigError, match="not a plain name"):
        ModelRegistry(models, SCHEMAS).load(pipeline, version)
    assert not marker.exists()


def test_an_artifact_swapped_after_the_check_is_never_loaded(setup, monkeypatch):
    """The bytes that were hashed are the bytes that are loaded: the file is read once."""
    models, _, evil, marker = setup
    real = registry_module.read_artifact
    reads = []

    def read_then_swap(path: Path) -> bytes:
        data = real(path)
        reads.append(path)
        shutil.copy(evil, path)  # an attacker replaces the file right after it was read
        return data

    monkeypatch.setattr(registry_module, "read_artifact", read_then_swap)
    loaded = ModelRegistry(models, SCHEMAS).load("fraud")
    assert len(reads) == 1 and hasattr(loaded.model, "predict_proba")
    assert not marker.exists()


@pytest.fixture
def keys(tmp_path):
    private_pem, public_pem = generate_key_pair()
    other_private, _ = generate_key_pair()
    trusted = load_public_key(public_pem)
    return load_private_key(private_pem), {key_id(trusted): trusted}, load_private_key(other_private)


def _sign(version: Path, private) -> None:
    (version / SIGNATURE_FILE).write_bytes(sign((version / "manifest.json").read_bytes(), private))


def test_a_signed_manifest_is_verified_and_its_signer_named(setup, keys):
    models, version, _, _ = setup
    private, trusted, _ = keys
    _sign(version, private)
    loaded = ModelRegistry(models, SCHEMAS, trusted).load("fraud")
    assert loaded.signer == key_id(private.public_key())


@pytest.mark.parametrize("case", ["unsigned", "other key", "changed after signing"])
def test_without_a_valid_signature_nothing_is_unpickled(setup, keys, case):
    """An attacker who can write the model directory points the manifest at a malicious artifact."""
    models, version, evil, marker = setup
    private, trusted, other = keys
    shutil.copy(evil, version / "model.joblib")
    if case == "other key":
        _edit(version, artifact_sha256=_sha(evil))
        _sign(version, other)
    elif case == "changed after signing":
        _sign(version, private)
        _edit(version, artifact_sha256=_sha(evil))
    else:
        _edit(version, artifact_sha256=_sha(evil))
        (version / SIGNATURE_FILE).unlink(missing_ok=True)
    with pytest.raises(ModelIntegrityError, match=r"not signed|not trusted|does not match"):
        ModelRegistry(models, SCHEMAS, trusted).load("fraud")
    assert not marker.exists()


def test_the_committed_reference_model_is_signed_by_the_committed_test_key():
    public = load_public_key((REPO / "models" / "trusted-keys" / "reference-test.pub.pem").read_bytes())
    loaded = ModelRegistry(REPO / "models", SCHEMAS, {key_id(public): public}).load("fraud")
    assert loaded.signer == key_id(public)


def test_a_skops_artifact_loads_no_code_and_scores_the_same(setup, fraud_pipeline):
    import skops.io

    models, version, _, _ = setup
    model = fraud_pipeline.model.model
    data = skops.io.dumps(model)
    (version / "model.skops").write_bytes(data)
    types = skops.io.get_untrusted_types(data=data)
    _edit(version, artifact="model.skops", artifact_sha256=hashlib.sha256(data).hexdigest(), trusted_types=types)
    loaded = ModelRegistry(models, SCHEMAS).load("fraud")
    x = np.column_stack([np.linspace(1, 900, 50), np.arange(50) % 8, np.arange(50) % 3, np.arange(50) % 2,
                         np.ones(50), np.full(50, 400.0), np.arange(50) % 4, np.full(50, 60.0),
                         np.linspace(0, 2000, 50), np.full(50, 0.7)])
    assert np.array_equal(loaded.model.predict_proba(x), model.predict_proba(x))

    _edit(version, trusted_types=types[:-1])  # one type no longer trusted
    with pytest.raises(ModelIntegrityError, match="types the manifest does not trust"):
        ModelRegistry(models, SCHEMAS).load("fraud")


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path):
    from workers.cli import main

    assert main(["models", "keygen", "--out", str(tmp_path), "--name", "k"]) == 0
    assert os.stat(tmp_path / "k.key.pem").st_mode & 0o077 == 0
    assert main(["models", "keygen", "--out", str(tmp_path), "--name", "k"]) == 2  # never overwrites a key


def test_sign_and_verify_commands(setup, tmp_path, monkeypatch, capsys):
    from workers.cli import main

    models = setup[0]
    monkeypatch.setenv("WORKERS_MODELS_DIR", str(models))
    assert main(["models", "keygen", "--out", str(tmp_path / "keys"), "--name", "ops"]) == 0
    key, public = tmp_path / "keys" / "ops.key.pem", tmp_path / "keys" / "ops.pub.pem"
    assert main(["models", "sign", "--key", str(key)]) == 0
    assert main(["models", "verify", "--key", str(public)]) == 0
    assert "verified and loaded" in capsys.readouterr().out
    reference = REPO / "models" / "trusted-keys" / "reference-test.pub.pem"
    assert main(["models", "verify", "--key", str(reference)]) == 2  # signed by ops, not the reference key
    assert "not trusted" in capsys.readouterr().err
