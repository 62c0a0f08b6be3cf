"""Settings -> a loaded, verified Pipeline: the one place where configuration meets the core.

Every start-up error of a pipeline surfaces here, before anything touches Kafka: the
schemas parse, the artifact's sha256 matches its manifest, the model agrees with the
manifest and the manifest with the input schema.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import SecretStr

from workers.core.codec import SchemaStore
from workers.core.framing import RegisteredSchemas
from workers.core.manifest import Manifest
from workers.core.registry import ModelRegistry
from workers.core.signing import Ed25519PublicKey, key_id, load_public_key
from workers.errors import ConfigError
from workers.settings import Settings

if TYPE_CHECKING:  # the core's imports (scikit-learn, numba) cost seconds: producers need only the manifest
    from workers.core.pipeline import Pipeline


def trusted_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """WORKERS_TRUSTED_KEYS: key id -> public key."""
    keys = {}
    for path in settings.trusted_key_paths:
        try:
            key = load_public_key(path.read_bytes(), str(path))
        except OSError as exc:
            raise ConfigError(f"WORKERS_TRUSTED_KEYS: cannot read {path}: {exc.strerror}") from None
        keys[key_id(key)] = key
    return keys


def registry(settings: Settings, schemas: SchemaStore) -> ModelRegistry:
    return ModelRegistry(settings.models_dir, schemas, trusted_keys(settings))


def load_pipeline(settings: Settings) -> Pipeline:
    """The verified pipeline; with a schema registry configured, its prediction schema is registered
    (for the registry wire format) and registry-framed input is accepted as the settings say."""
    from workers.core.pipeline import Pipeline

    schemas = SchemaStore(settings.schemas_dir)
    loaded = registry(settings, schemas).load(settings.pipeline, settings.model_version)
    prediction_schema_id = None
    if settings.prediction_framing == "registry":
        from workers.kafka.schema_registry import SchemaRegistry, value_subject

        prediction_schema_id = SchemaRegistry.from_settings(settings).register(
            value_subject(settings.topics.predictions), loaded.prediction_schema.definition)
    policies = loaded.manifest.policies
    if settings.max_lateness_s is not None:  # an operator's override of the manifest's policy
        policies = policies.model_copy(update={"max_lateness_s": settings.max_lateness_s})
    return Pipeline(loaded, schemas, settings.topics, worker_id=settings.worker_id, policies=policies,
                    lean_scoring=settings.lean_scoring, columnar_codecs=settings.columnar_codecs,
                    max_isolation_calls=settings.max_isolation_calls,
                    replay_key=replay_key(settings),
                    pseudonym_key=_secret(settings.pseudonym_key),
                    framing=settings.input_framing, registered=RegisteredSchemas(schemas),
                    prediction_schema_id=prediction_schema_id)


def _secret(value: SecretStr | None) -> bytes | None:
    return value.get_secret_value().encode() if value is not None else None


def replay_key(settings: Settings) -> bytes | None:
    return settings.replay_key.get_secret_value().encode() if settings.replay_key is not None else None


def load_manifest(settings: Settings) -> tuple[Manifest, SchemaStore]:
    """The manifest alone (no artifact is loaded): enough for producers and consumers."""
    schemas = SchemaStore(settings.schemas_dir)
    return ModelRegistry(settings.models_dir, schemas).manifest(settings.pipeline, settings.model_version), schemas
