"""The one place that turns Settings into connection options, for every Kafka client we use.

faust (the app), aiokafka (the batch engine's consumer and producer, the benchmark's
harness), kafka-python (producer, downstream consumer, admin, replay) and librdkafka (the
benchmark's hand-written confluent-kafka contender) each spell the same connection
differently. They all get it from here, built from one ``Connection`` (librdkafka from the
same Settings), so that no client connects with another protocol, mechanism or identity.
Settings already refused inconsistent combinations (``Settings._consistent_security``).
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from workers.kafka.oauth import ClientCredentials, aiokafka_provider, kafka_python_provider, token_source
from workers.settings import Settings


@dataclass(frozen=True)
class Connection:
    bootstrap: list[str]
    security_protocol: str
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ssl_context: ssl.SSLContext | None = None
    tokens: ClientCredentials | None = None  # OAUTHBEARER
    oauth_extensions: dict[str, str] = field(default_factory=dict)  # sent with each token

    def __repr__(self) -> str:  # never the password
        return (f"Connection(bootstrap={self.bootstrap}, security_protocol={self.security_protocol}, "
                f"sasl_mechanism={self.sasl_mechanism}, username={self.username})")


def connection(settings: Settings) -> Connection:
    context = None
    if settings.security_protocol.endswith("SSL"):
        # The system's trusted CAs unless a CA bundle is given; hostname checks stay on.
        context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
        if settings.ssl_certfile and settings.ssl_keyfile:
            context.load_cert_chain(str(settings.ssl_certfile), str(settings.ssl_keyfile))
    password = settings.sasl_password.get_secret_value() if settings.sasl_password is not None else None
    return Connection(
        bootstrap=settings.bootstrap_list,
        security_protocol=settings.security_protocol,
        sasl_mechanism=settings.sasl_mechanism,
        username=settings.sasl_username,
        password=password,
        ssl_context=context,
        tokens=token_source(settings),
        oauth_extensions=settings.oauth_extensions,
    )


def _common(conn: Connection, provider: Any) -> dict[str, Any]:
    """The spelling aiokafka and kafka-python share (``provider`` wraps the token source for each)."""
    options: dict[str, Any] = {"bootstrap_servers": list(conn.bootstrap), "security_protocol": conn.security_protocol}
    if conn.tokens is not None:
        options.update(sasl_mechanism="OAUTHBEARER",
                       sasl_oauth_token_provider=provider(conn.tokens, conn.oauth_extensions))
    elif conn.sasl_mechanism:
        options.update(sasl_mechanism=conn.sasl_mechanism, sasl_plain_username=conn.username,
                       sasl_plain_password=conn.password)
    if conn.ssl_context is not None:
        options["ssl_context"] = conn.ssl_context
    return options


def kafka_python_options(settings: Settings | Connection) -> dict[str, Any]:
    """For ``kafka.KafkaProducer``, ``KafkaConsumer`` and ``KafkaAdminClient``."""
    return _common(settings if isinstance(settings, Connection) else connection(settings), kafka_python_provider)


def aiokafka_options(settings: Settings | Connection) -> dict[str, Any]:
    """For ``aiokafka.AIOKafkaConsumer`` and ``AIOKafkaProducer``."""
    return _common(settings if isinstance(settings, Connection) else connection(settings), aiokafka_provider)


def faust_options(settings: Settings | Connection) -> dict[str, Any]:
    """``broker`` and ``broker_credentials`` for ``faust.App``."""
    import faust

    conn = settings if isinstance(settings, Connection) else connection(settings)
    credentials: Any = None
    if conn.tokens is not None:
        credentials = faust.OAuthCredentials(oauth_cb=aiokafka_provider(conn.tokens, conn.oauth_extensions),
                                            ssl_context=conn.ssl_context)
    elif conn.sasl_mechanism:
        # faust derives the protocol from the credentials: SASL_SSL when an SSL context is given.
        credentials = faust.SASLCredentials(username=conn.username, password=conn.password,
                                            mechanism=conn.sasl_mechanism, ssl_context=conn.ssl_context)
    elif conn.ssl_context is not None:
        credentials = faust.SSLCredentials(conn.ssl_context)
    return {"broker": [f"kafka://{server}" for server in conn.bootstrap], "broker_credentials": credentials}


def librdkafka_options(settings: Settings) -> dict[str, Any]:
    """For ``confluent_kafka.Consumer`` and ``Producer``: librdkafka reads files, not an SSL context.

    Hostname verification is librdkafka's default (``ssl.endpoint.identification.algorithm=https``).
    """
    options: dict[str, Any] = {"bootstrap.servers": ",".join(settings.bootstrap_list),
                               "security.protocol": settings.security_protocol}
    if settings.sasl_mechanism == "OAUTHBEARER":  # librdkafka's own client credentials flow
        secret = settings.sasl_oauthbearer_client_secret
        options.update({"sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
                        "sasl.oauthbearer.token.endpoint.url": settings.sasl_oauthbearer_token_endpoint_url,
                        "sasl.oauthbearer.client.id": settings.sasl_oauthbearer_client_id,
                        "sasl.oauthbearer.client.secret": secret.get_secret_value() if secret is not None else None})
        if settings.sasl_oauthbearer_scope:
            options["sasl.oauthbearer.scope"] = settings.sasl_oauthbearer_scope
        if settings.oauth_extensions:
            # librdkafka reads a backslash as an escape when it splits the list
            options["sasl.oauthbearer.extensions"] = ",".join(
                f"{k}={v.replace(chr(92), chr(92) * 2)}" for k, v in settings.oauth_extensions.items())
    elif settings.sasl_mechanism:
        password = settings.sasl_password.get_secret_value() if settings.sasl_password is not None else None
        options.update({"sasl.mechanism": settings.sasl_mechanism, "sasl.username": settings.sasl_username,
                        "sasl.password": password})
    for key, path in (("ssl.ca.location", settings.ssl_cafile), ("ssl.certificate.location", settings.ssl_certfile),
                      ("ssl.key.location", settings.ssl_keyfile)):
        if path is not None:
            options[key] = str(path)
    return options
