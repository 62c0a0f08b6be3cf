"""OAuth 2.0 client credentials for SASL/OAUTHBEARER: fetched once, reused, refreshed, and failures as one line.

The token endpoint is a real HTTP server on loopback (tests/oauth_issuer.py); no broker is needed.
"""
from __future__ import annotations

import asyncio
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.oauth_issuer import token_endpoint
from workers.kafka import connection, oauth
from workers.kafka.oauth import ClientCredentials, TokenError, jwt_claims
from workers.settings import Settings


@pytest.fixture
def key_file(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "issuer.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_reused_until_80_percent_of_its_lifetime_then_refreshed(key_file):
    clock = Clock()
    with token_endpoint(key_file, {"worker": "s3cret"}, lifetime_s=100) as endpoint:
        source = ClientCredentials(endpoint.url, "worker", "s3cret", clock=clock)
        first = source.token()
        clock.now += 79
        assert source.token() == first and endpoint.issued == ["worker"]
        clock.now += 2  # past 80 of 100 s
        assert source.fresh() is None
        source.token()
        assert endpoint.issued == ["worker", "worker"] and source.fetched == 2
    claims = jwt_claims(first)
    assert claims is not None and claims["sub"] == "worker" and claims["aud"] == "kafka"
    assert source.subject == "worker"


def test_a_secret_with_reserved_characters_and_a_scope_reach_the_provider(key_file):
    secret = "a:b/c%d e+f"
    with token_endpoint(key_file, {"svc:1": secret}) as endpoint:
        token = ClientCredentials(endpoint.url, "svc:1", secret, scope="kafka.read kafka.write").token()
    claims = jwt_claims(token)
    assert claims is not None and claims["sub"] == "svc:1" and claims["scope"] == "kafka.read kafka.write"


def test_a_refused_secret_is_one_line_with_the_providers_words_and_never_the_secret(key_file):
    with token_endpoint(key_file, {"worker": "right"}) as endpoint, pytest.raises(TokenError) as refused:
        ClientCredentials(endpoint.url, "worker", "wrong-secret-91").token()
    message = str(refused.value)
    assert "HTTP 401 invalid_client: unknown client or wrong secret" in message and "client worker" in message
    assert "wrong-secret-91" not in message and "\n" not in message
    assert endpoint.refused == 1


def test_an_unreachable_provider_is_named(key_file):
    from workers.dev.processes import free_port

    url = f"http://127.0.0.1:{free_port()}/token"
    with pytest.raises(TokenError, match=f"cannot reach the OAuth token endpoint {url}"):
        ClientCredentials(url, "worker", "s3cret", timeout_s=2).token()


def test_while_the_provider_is_away_a_still_valid_token_is_used(key_file):
    clock = Clock()
    with token_endpoint(key_file, {"worker": "s3cret"}, lifetime_s=100) as endpoint:
        source = ClientCredentials(endpoint.url, "worker", "s3cret", clock=clock, timeout_s=2)
        first = source.token()
    clock.now += 90  # due for a refresh, not yet expired: the provider is gone
    assert source.token() == first
    clock.now += 11  # expired
    with pytest.raises(TokenError):
        source.token()


def test_while_the_provider_fails_it_is_asked_again_only_every_few_seconds(key_file):
    clock = Clock()
    with token_endpoint(key_file, {"worker": "s3cret"}, lifetime_s=100) as endpoint:
        source = ClientCredentials(endpoint.url, "worker", "s3cret", clock=clock)
        first = source.token()
        endpoint.unavailable = True
        clock.now += 81
        assert [source.token() for _ in range(5)] == [first] * 5
        assert endpoint.requests == 2  # the first token, then one failed refresh
        clock.now += oauth.RETRY_AFTER_FAILURE_S
        endpoint.unavailable = False
        source.token()
        assert endpoint.requests == 3 and source.fetched == 2 and source.fresh() is not None


def test_a_redirect_is_refused_and_the_credentials_go_nowhere_else(key_file):
    with token_endpoint(key_file, {"worker": "s3cret"}) as elsewhere, \
            token_endpoint(key_file, {"worker": "s3cret"}) as endpoint:
        endpoint.redirect_to = elsewhere.url
        with pytest.raises(TokenError, match=f"answered with a redirect \\(HTTP 302 to {elsewhere.url}\\)"):
            ClientCredentials(endpoint.url, "worker", "s3cret").token()
    assert endpoint.requests == 1 and elsewhere.requests == 0


def test_aiokafka_gets_a_connection_error_it_retries_when_no_valid_token_can_be_had(key_file):
    from aiokafka.errors import KafkaConnectionError

    with token_endpoint(key_file, {"worker": "s3cret"}) as endpoint:
        provider = oauth.aiokafka_provider(ClientCredentials(endpoint.url, "worker", "s3cret"))
        assert jwt_claims(asyncio.run(provider.token()))["sub"] == "worker"  # fetched off the event loop
        down = oauth.aiokafka_provider(ClientCredentials(endpoint.url, "worker", "wrong"))
        with pytest.raises(KafkaConnectionError, match="HTTP 401 invalid_client"):
            asyncio.run(down.token())


def test_lifetime_comes_from_expires_in_else_the_jwts_exp_else_a_default():
    now = 1_000.0
    jwt = "e30." + oauth.base64.urlsafe_b64encode(json.dumps({"exp": 1_600}).encode()).decode().rstrip("=") + ".sig"
    assert oauth._lifetime_s({"expires_in": 60}, jwt, now) == 60
    assert oauth._lifetime_s({}, jwt, now) == 600
    assert oauth._lifetime_s({"expires_in": True}, "opaque-token", now) == oauth.DEFAULT_LIFETIME_S
    assert jwt_claims("opaque-token") is None and jwt_claims("a.!!!.c") is None


def test_every_client_of_a_process_shares_one_source_and_gets_its_own_provider_type(key_file):
    from aiokafka.abc import AbstractTokenProvider as AsyncProvider
    from kafka.net.sasl.oauth import AbstractTokenProvider as SyncProvider

    with token_endpoint(key_file, {"worker": "s3cret"}) as endpoint:
        settings = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="oauthbearer",
                            sasl_oauthbearer_token_endpoint_url=endpoint.url, sasl_oauthbearer_client_id="worker",
                            sasl_oauthbearer_client_secret="s3cret")
        sync = connection.kafka_python_options(settings)["sasl_oauth_token_provider"]
        async_ = connection.aiokafka_options(settings)["sasl_oauth_token_provider"]
        credentials = connection.faust_options(settings)["broker_credentials"]
        assert isinstance(sync, SyncProvider) and isinstance(async_, AsyncProvider)
        assert isinstance(credentials.oauth_cb, AsyncProvider)
        assert sync.token() == asyncio.run(async_.token()) == asyncio.run(credentials.oauth_cb.token())
        assert endpoint.issued == ["worker"]
        librdkafka = connection.librdkafka_options(settings)
    assert librdkafka["sasl.oauthbearer.method"] == "oidc" and librdkafka["sasl.oauthbearer.client.id"] == "worker"
    assert "s3cret" not in repr(oauth.token_source(settings)) and "s3cret" not in repr(connection.connection(settings))


def test_sasl_extensions_go_with_the_token_in_every_client(key_file):
    """Confluent Cloud names the cluster and identity pool in SASL extensions (RFC 7628)."""
    from aiokafka.conn import OAuthAuthenticator
    from confluent_kafka import Producer
    from kafka.net.sasl.oauth import SaslMechanismOAuth

    with token_endpoint(key_file, {"worker": "s3cret"}) as endpoint:
        settings = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                            sasl_oauthbearer_token_endpoint_url=endpoint.url, sasl_oauthbearer_client_id="worker",
                            sasl_oauthbearer_client_secret="s3cret",
                            sasl_oauthbearer_extensions="logicalCluster=lkc-1x2y, identityPoolId=pool-Ab9")
        expected = {"logicalCluster": "lkc-1x2y", "identityPoolId": "pool-Ab9"}
        sync = connection.kafka_python_options(settings)["sasl_oauth_token_provider"]
        async_ = connection.aiokafka_options(settings)["sasl_oauth_token_provider"]
        faust_cb = connection.faust_options(settings)["broker_credentials"].oauth_cb
        assert sync.extensions() == async_.extensions() == faust_cb.extensions() == expected
        # the client's first message as aiokafka writes it: the token, then each extension
        authenticator = OAuthAuthenticator(sasl_oauth_token_provider=async_)
        sent = "\x01logicalCluster=lkc-1x2y\x01identityPoolId=pool-Ab9"
        assert authenticator._token_extensions() == sent
        assert SaslMechanismOAuth(sasl_oauth_token_provider=sync)._token_extensions() == sent  # kafka-python's
        librdkafka = connection.librdkafka_options(settings)
        assert librdkafka["sasl.oauthbearer.extensions"] == "logicalCluster=lkc-1x2y,identityPoolId=pool-Ab9"
        Producer({**librdkafka, "socket.connection.setup.timeout.ms": 1000}).flush(0)  # the property is librdkafka's
    escaped = Settings(**{**settings.model_dump(), "sasl_oauthbearer_extensions": "a=x\\y, ,b=2"})
    assert escaped.oauth_extensions == {"a": "x\\y", "b": "2"}  # blank items are skipped
    assert connection.librdkafka_options(escaped)["sasl.oauthbearer.extensions"] == "a=x\\\\y,b=2"
    without = Settings(**{**settings.model_dump(), "sasl_oauthbearer_extensions": None})
    assert connection.aiokafka_options(without)["sasl_oauth_token_provider"].extensions() == {}
    assert "sasl.oauthbearer.extensions" not in connection.librdkafka_options(without)
