"""Every Kafka client of the project connects the same way, for every security combination."""
from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

import pytest

from workers.errors import ConfigError
from workers.kafka.connection import aiokafka_options, faust_options, kafka_python_options, librdkafka_options
from workers.settings import Settings


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A self-signed CA certificate and its key (openssl), enough to build SSL contexts."""
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "ca.pem", root / "ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-subj", "/CN=workers-test-ca", "-days", "1"], check=True, capture_output=True)
    return {"cert": cert, "key": key}


COMBINATIONS = {
    "plaintext": {"security_protocol": "PLAINTEXT"},
    "ssl": {"security_protocol": "SSL", "ssl_cafile": "cert"},
    "ssl-system-cas": {"security_protocol": "SSL"},
    "mtls": {"security_protocol": "SSL", "ssl_cafile": "cert", "ssl_certfile": "cert", "ssl_keyfile": "key"},
    "sasl-plaintext-plain": {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
    "sasl-ssl-plain": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "ssl_cafile": "cert"},
    "sasl-ssl-scram-256": {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "ssl_cafile": "cert"},
    "sasl-ssl-scram-512": {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "ssl_cafile": "cert"},
    "sasl-plaintext-scram-512": {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512"},
}


def _settings(combination: dict[str, str], tls_files: dict[str, Path]) -> Settings:
    values: dict[str, object] = {"bootstrap_servers": "b1:9093,b2:9093"}
    for name, value in combination.items():
        values[name] = tls_files[value] if name.startswith("ssl_") else value
    if "sasl_mechanism" in combination:
        values.update(sasl_username="svc-worker", sasl_password="s3cret")
    return Settings.from_env(**values)


def _as_seen_by_the_broker(options: dict) -> tuple:
    """What decides how a client connects: servers, protocol, mechanism, identity, TLS context."""
    servers = options["bootstrap_servers"]
    return (list(servers) if not isinstance(servers, str) else servers.split(","), options["security_protocol"],
            options.get("sasl_mechanism"), options.get("sasl_plain_username"), options.get("sasl_plain_password"),
            options.get("ssl_context") is not None)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_client_connects_the_same_way(name, tls_files):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = _settings(COMBINATIONS[name], tls_files)
    python = kafka_python_options(settings)
    aio = aiokafka_options(settings)
    faust_app = faust_options(settings)
    # what faust's own driver hands to aiokafka for the app's producer and consumer
    via_faust = {"bootstrap_servers": [b.removeprefix("kafka://") for b in faust_app["broker"]],
                 **credentials_to_aiokafka_auth(faust_app["broker_credentials"])}
    expected = (["b1:9093", "b2:9093"], settings.security_protocol, settings.sasl_mechanism,
                settings.sasl_username, "s3cret" if settings.sasl_password else None,
                settings.security_protocol.endswith("SSL"))
    assert _as_seen_by_the_broker(python) == expected
    assert _as_seen_by_the_broker(aio) == expected
    assert _as_seen_by_the_broker(via_faust) == expected
    assert _as_seen_by_librdkafka(librdkafka_options(settings)) == expected


def _as_seen_by_librdkafka(options: dict) -> tuple:
    """The same facts in librdkafka's spelling (the bench's confluent-kafka contender)."""
    return (options["bootstrap.servers"].split(","), options["security.protocol"], options.get("sasl.mechanism"),
            options.get("sasl.username"), options.get("sasl.password"),
            options["security.protocol"].endswith("SSL"))


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_option_is_one_the_client_accepts(name, tls_files):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient

    settings = _settings(COMBINATIONS[name], tls_files)
    for client in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert set(kafka_python_options(settings)) <= set(client.DEFAULT_CONFIG), client.__name__
    for client in (AIOKafkaConsumer, AIOKafkaProducer):
        assert set(aiokafka_options(settings)) <= set(inspect.signature(client).parameters), client.__name__


@pytest.mark.parametrize("name", COMBINATIONS)
def test_librdkafka_accepts_every_option_and_reads_the_tls_files(name, tls_files):
    from confluent_kafka import Producer

    options = librdkafka_options(_settings(COMBINATIONS[name], tls_files))
    given = COMBINATIONS[name]
    for key, setting in (("ssl.ca.location", "ssl_cafile"), ("ssl.certificate.location", "ssl_certfile"),
                         ("ssl.key.location", "ssl_keyfile")):  # each TLS file given, and only those
        assert options.get(key) == (str(tls_files[given[setting]]) if setting in given else None), key
    # librdkafka refuses an unknown property, a bad value or an unreadable file at construction
    Producer({**options, "socket.connection.setup.timeout.ms": 1000}).flush(0)


def test_mutual_tls_loads_the_client_certificate(tls_files):
    settings = _settings(COMBINATIONS["mtls"], tls_files)
    context = kafka_python_options(settings)["ssl_context"]
    assert context.check_hostname  # verification stays on
    assert aiokafka_options(settings)["ssl_context"].verify_mode == context.verify_mode


OAUTH = {"sasl_oauthbearer_token_endpoint_url": "https://idp.example/token", "sasl_oauthbearer_client_id": "svc",
         "sasl_oauthbearer_client_secret": "hunter2"}
INCONSISTENT = {
    "sasl-without-mechanism": ({"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "hunter2"},
                               "needs WORKERS_SASL_MECHANISM"),
    "sasl-without-credentials": ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
                                 "needs WORKERS_SASL_USERNAME and WORKERS_SASL_PASSWORD"),
    "mechanism-without-sasl": ({"security_protocol": "PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u",
                                "sasl_password": "hunter2"}, "use SASL_PLAINTEXT or SASL_SSL"),
    "ca-without-tls": ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u",
                        "sasl_password": "hunter2", "ssl_cafile": "cert"},
                       "WORKERS_SSL_CAFILE given but WORKERS_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    "missing-ca-file": ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "not a readable file"),
    "certificate-without-key": ({"security_protocol": "SSL", "ssl_certfile": "cert"},
                                "needs both WORKERS_SSL_CERTFILE and WORKERS_SSL_KEYFILE"),
    "unknown-protocol": ({"security_protocol": "SASL"}, "WORKERS_SECURITY_PROTOCOL"),
    "unknown-mechanism": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
                           "sasl_password": "hunter2"}, "WORKERS_SASL_MECHANISM: Input should be"),
    "oauth-without-client": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER",
                              "sasl_oauthbearer_token_endpoint_url": "https://idp.example/token"},
                             "OAUTHBEARER needs WORKERS_SASL_OAUTHBEARER_CLIENT_ID, "
                             "WORKERS_SASL_OAUTHBEARER_CLIENT_SECRET"),
    "oauth-with-an-empty-secret": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER",
                                    **OAUTH, "sasl_oauthbearer_client_secret": ""},
                                   "OAUTHBEARER needs WORKERS_SASL_OAUTHBEARER_CLIENT_SECRET"),
    "oauth-with-a-password": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "sasl_username": "u",
                               "sasl_password": "hunter2", **OAUTH}, "not WORKERS_SASL_USERNAME/_PASSWORD"),
    "oauth-endpoint-not-http": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER",
                                 **OAUTH, "sasl_oauthbearer_token_endpoint_url": "idp.example/token"},
                                "must be an https URL"),
    "oauth-secret-in-clear-text": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER",
                                    **OAUTH, "sasl_oauthbearer_token_endpoint_url": "http://idp.example/token"},
                                   "http only on loopback"),
    "oauth-settings-with-scram": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                   "sasl_username": "u", "sasl_password": "p", **OAUTH},
                                  "given but WORKERS_SASL_MECHANISM=SCRAM-SHA-512; use OAUTHBEARER"),
    "oauth-settings-without-sasl": ({"security_protocol": "SSL", **OAUTH}, "use SASL_PLAINTEXT or SASL_SSL"),
    "oauth-extension-without-a-value": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", **OAUTH,
                                         "sasl_oauthbearer_extensions": "logicalCluster=lkc-1,identityPoolId"},
                                        "'identityPoolId' is not KEY=VALUE"),
    "oauth-extension-named-auth": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", **OAUTH,
                                    "sasl_oauthbearer_extensions": "auth=Bearer x"},
                                   "'auth=Bearer x' is not KEY=VALUE"),
    "oauth-extension-key-not-letters": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", **OAUTH,
                                         "sasl_oauthbearer_extensions": "pool_id=1"}, "'pool_id=1' is not KEY=VALUE"),
    "oauth-extension-empty-value": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", **OAUTH,
                                     "sasl_oauthbearer_extensions": "a=1, b="}, "'b=' is not KEY=VALUE"),
    "oauth-extension-not-ascii": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", **OAUTH,
                                   "sasl_oauthbearer_extensions": "pool=caf\u00e9"}, "is not KEY=VALUE"),
    "oauth-extension-control-character": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", **OAUTH,
                                           "sasl_oauthbearer_extensions": "pool=a\x01b"}, "is not KEY=VALUE"),
    "oauth-extension-twice": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", **OAUTH,
                               "sasl_oauthbearer_extensions": "a=1,a=2"}, "names 'a' twice"),
    "oauth-extensions-with-scram": ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                     "sasl_username": "u", "sasl_password": "p", "sasl_oauthbearer_extensions": "a=1"},
                                    "WORKERS_SASL_OAUTHBEARER_EXTENSIONS given but"),
}


@pytest.mark.parametrize("name", INCONSISTENT)
def test_an_inconsistent_combination_is_a_clear_config_error(name, tls_files):
    values, message = INCONSISTENT[name]
    values = {k: tls_files[v] if k.startswith("ssl_") and v in tls_files else v for k, v in values.items()}
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env(**values)
    assert "\n" not in str(caught.value) and "hunter2" not in str(caught.value)  # one line, never the secret


def test_the_password_never_shows_in_a_connection_repr(tls_files):
    from workers.kafka.connection import connection

    settings = _settings(COMBINATIONS["sasl-ssl-scram-512"], tls_files)
    assert "s3cret" not in repr(connection(settings)) and "s3cret" not in repr(settings)
