from pathlib import Path

import pytest

from workers.errors import ConfigError
from workers.settings import Settings


@pytest.fixture
def env(monkeypatch):
    """A clean WORKERS_* environment; returns a setter."""
    import os

    for key in list(os.environ):
        if key.startswith("WORKERS_") or key == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(key)

    def set_(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return set_


def test_defaults_point_at_the_local_broker_and_the_repo_dirs(env):
    settings = Settings.from_env()
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert (settings.schemas_dir / "prediction.v1.avsc").is_file()
    assert (settings.models_dir / "fraud").is_dir()
    assert settings.group_id == "fraud-worker"


def test_environment_is_read_with_one_prefix_and_typed(env):
    env(WORKERS_BOOTSTRAP_SERVERS="a:1,b:2", KAFKA_BOOTSTRAP_SERVERS="ignored:9", WORKERS_BATCH_SIZE="250",
        WORKERS_BATCH_LINGER_S="0.01", WORKERS_MODELS_DIR="/m", WORKERS_TOPIC_PREFIX="t-", WORKERS_PIPELINE="sensor",
        WORKERS_LEAN_SCORING="false")
    settings = Settings.from_env()
    assert settings.bootstrap_list == ["a:1", "b:2"]
    assert settings.batch_size == 250 and settings.batch_linger_s == 0.01
    assert settings.models_dir == Path("/m")
    assert settings.group_id == "t-sensor-worker"
    assert settings.lean_scoring is False
    assert settings.topics.events == "t-sensor.events"


def test_kafka_bootstrap_servers_is_the_fallback(env):
    env(KAFKA_BOOTSTRAP_SERVERS="k:9")
    assert Settings.from_env().bootstrap_servers == "k:9"


def test_overrides_beat_the_environment(env):
    env(WORKERS_PIPELINE="a")
    assert Settings.from_env(pipeline="b").pipeline == "b"
    assert Settings.from_env(pipeline=None).pipeline == "a"  # None: not given


def test_input_topic_replaces_only_the_events_topic(env):
    topics = Settings.from_env(input_topic="backlog", topic_prefix="p-").topics
    assert (topics.events, topics.predictions, topics.dlq) == ("backlog", "p-fraud.predictions", "p-fraud.dlq")


@pytest.mark.parametrize(("key", "value", "named"), [
    ("WORKERS_BATCH_SIZE", "0", "WORKERS_BATCH_SIZE: Input should be greater than or equal to 1 (got '0')"),
    ("WORKERS_BATCH_SIZE", "many", "WORKERS_BATCH_SIZE"),
    ("WORKERS_LOG_FORMAT", "xml", "WORKERS_LOG_FORMAT: Input should be 'json' or 'console' (got 'xml')"),
    ("WORKERS_PARTITIONS", "-1", "WORKERS_PARTITIONS"),
    ("WORKERS_ENGINE", "threads", "WORKERS_ENGINE"),
    ("WORKERS_LEAN_SCORING", "perhaps", "WORKERS_LEAN_SCORING"),
    ("WORKERS_UNKNOWN_THING", "1", None),  # an unknown variable of ours is ignored, not fatal
])
def test_bad_values_are_one_line_config_errors_naming_the_variable(env, key, value, named):
    env(**{key: value})
    if named is None:
        Settings.from_env()
        return
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_secrets_are_masked_when_shown(env):
    env(WORKERS_SECURITY_PROTOCOL="SASL_PLAINTEXT", WORKERS_SASL_PASSWORD="hunter2", WORKERS_SASL_MECHANISM="PLAIN",
        WORKERS_SASL_USERNAME="svc")
    settings = Settings.from_env()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert settings.masked()["sasl_password"] == "***"
    assert settings.sasl_password is not None and settings.sasl_password.get_secret_value() == "hunter2"


def test_the_oauth_client_secret_is_masked_when_shown(env):
    env(WORKERS_SECURITY_PROTOCOL="SASL_SSL", WORKERS_SASL_MECHANISM="oauthbearer",
        WORKERS_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL="https://idp.example/oauth2/token",
        WORKERS_SASL_OAUTHBEARER_CLIENT_ID="svc-worker", WORKERS_SASL_OAUTHBEARER_CLIENT_SECRET="hunter3")
    settings = Settings.from_env()
    assert settings.sasl_mechanism == "OAUTHBEARER" and settings.client_name == "svc-worker"
    assert "hunter3" not in repr(settings) and settings.masked()["sasl_oauthbearer_client_secret"] == "***"


@pytest.mark.parametrize("variable", ["WORKERS_INPUT_FRAMING=registry", "WORKERS_INPUT_FRAMING=both",
                                      "WORKERS_PREDICTION_FRAMING=registry"])
def test_registry_framing_without_a_registry_is_one_clear_line(monkeypatch, variable):
    name, value = variable.split("=")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{variable} needs WORKERS_SCHEMA_REGISTRY_URL"):
        Settings.from_env()
    monkeypatch.setenv("WORKERS_SCHEMA_REGISTRY_URL", "http://127.0.0.1:18081/apis/ccompat/v7")
    assert Settings.from_env().schema_registry_url.endswith("/ccompat/v7")


def test_the_registry_password_is_never_shown(monkeypatch):
    monkeypatch.setenv("WORKERS_SCHEMA_REGISTRY_URL", "https://registry.example")
    monkeypatch.setenv("WORKERS_SCHEMA_REGISTRY_AUTH", "svc:s3cret-registry")
    settings = Settings.from_env()
    assert "s3cret-registry" not in repr(settings) and "s3cret-registry" not in str(settings.masked())


def test_credentials_in_the_registry_url_are_masked_when_shown(monkeypatch):
    monkeypatch.setenv("WORKERS_SCHEMA_REGISTRY_URL", "https://svc:s3cret-in-url@registry.example:8081/apis/ccompat/v7")
    shown = Settings.from_env().masked()["schema_registry_url"]
    assert shown == "https://***@registry.example:8081/apis/ccompat/v7"
