from pathlib import Path

import pytest

from workers.errors import ConfigError
from workers.settings import Settings


def test_defaults_point_at_the_local_broker_and_the_repo_dirs():
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert (settings.schemas_dir / "prediction.v1.avsc").is_file()
    assert (settings.models_dir / "fraud").is_dir()
    assert settings.group_id == "fraud-worker"


def test_environment_is_read_with_one_prefix_and_typed():
    settings = Settings.from_env({
        "WORKERS_BOOTSTRAP_SERVERS": "a:1,b:2", "KAFKA_BOOTSTRAP_SERVERS": "ignored:9",
        "WORKERS_BATCH_SIZE": "250", "WORKERS_BATCH_LINGER_S": "0.01", "WORKERS_MODELS_DIR": "/m",
        "WORKERS_TOPIC_PREFIX": "t-", "WORKERS_PIPELINE": "sensor",
    })
    assert settings.kafka_client_options()["bootstrap_servers"] == ["a:1", "b:2"]
    assert settings.batch_size == 250 and settings.batch_linger_s == 0.01
    assert settings.models_dir == Path("/m")
    assert settings.group_id == "t-sensor-worker"


def test_overrides_beat_the_environment():
    assert Settings.from_env({"WORKERS_PIPELINE": "a"}, pipeline="b").pipeline == "b"


@pytest.mark.parametrize(("key", "value"), [("WORKERS_BATCH_SIZE", "0"), ("WORKERS_BATCH_SIZE", "many"),
                                            ("WORKERS_LOG_FORMAT", "xml"), ("WORKERS_PARTITIONS", "-1")])
def test_bad_values_are_config_errors(key, value):
    with pytest.raises(ConfigError):
        Settings.from_env({key: value})


def test_secrets_are_masked_when_shown():
    settings = Settings.from_env({"WORKERS_SASL_PASSWORD": "hunter2", "WORKERS_SASL_MECHANISM": "PLAIN",
                                  "WORKERS_SASL_USERNAME": "svc"})
    assert "hunter2" not in repr(settings)
    assert settings.masked()["sasl_password"] == "***"
    assert settings.kafka_client_options()["sasl_plain_password"] == "hunter2"
