"""kafka-python clients built from the settings, with connection failures as one clear error.

A client that cannot bootstrap raises ``KafkaUnavailableError`` within
``BOOTSTRAP_TIMEOUT_MS``, naming the servers, the protocol and the cause (authentication,
TLS, refused), instead of kafka-python's bare "Unable to bootstrap" after 30 s.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from workers.errors import KafkaUnavailableError
from workers.kafka import kafka_python_fixes
from workers.kafka.connection import kafka_python_options
from workers.kafka.oauth import token_source
from workers.settings import Settings

BOOTSTRAP_TIMEOUT_MS = 10_000  # a reachable broker answers in milliseconds; kafka-python's default is 30 s


class _ConnectionFailures(logging.Handler):
    """What kafka-python logs when a bootstrap connection fails: it retries until its timeout and
    then raises a bare "Unable to bootstrap", so the cause (refused, TLS, authentication) comes from here."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.causes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg in ("Connection failed: %s", "Bootstrap connection to %s failed: %s (backoff %.2f secs)"):
            args = record.args if isinstance(record.args, tuple) else ()
            cause = next((a for a in args if isinstance(a, BaseException)), None)
            if cause is not None:
                self.causes.append(f"{type(cause).__name__}: {cause}")


@contextmanager
def _explained(settings: Settings) -> Iterator[None]:
    """Connection failures as one line naming the servers, the protocol and the cause."""
    from kafka.errors import KafkaError

    kafka_python_fixes.apply()  # here, not at import: kafka-python loads only when a client is built
    tokens = token_source(settings)
    if tokens is not None:
        tokens.token()  # a provider that refuses or cannot be reached: its one line (TokenError), not a timeout
    failures = _ConnectionFailures()
    logger = logging.getLogger("kafka")
    logger.addHandler(failures)
    try:
        yield
    except KafkaError as exc:
        # the error raised counts as a cause too: a refused password now ends the bootstrap at once
        raised = f"{type(exc).__name__}: {exc}"
        cause = _main_cause([*failures.causes, raised], oauth=tokens is not None)
        if cause == raised and failures.causes:  # nothing telling: what was logged says more than a timeout
            cause = failures.causes[-1]
        identity = f", {settings.sasl_mechanism} as {settings.client_name}" if settings.sasl_mechanism else ""
        raise KafkaUnavailableError(f"cannot connect to Kafka at {settings.bootstrap_servers} "
                                    f"({settings.security_protocol}{identity}): {cause}") from None
    finally:
        logger.removeHandler(failures)


def _refused_the_certificate(cause: str) -> bool:
    return any(alert in cause for alert in kafka_python_fixes.CLIENT_CERTIFICATE_REFUSED)


def _main_cause(causes: list[str], oauth: bool = False) -> str | None:
    """The most telling of the causes seen: authentication, then TLS, then the rest."""
    refused = ("authentication failed (the broker refused the OAuth token: its issuer, audience, signature or "
               "expiry?)" if oauth else "authentication failed (wrong user or password?)")
    for marker, meaning in (("SaslAuthenticationFailed", refused),
                            # the broker's alert when it requires a client certificate (mutual TLS) it did
                            # not get or does not trust
                            (_refused_the_certificate, "TLS handshake failed: the broker wants a client "
                             "certificate it trusts (mutual TLS: WORKERS_SSL_CERTFILE and WORKERS_SSL_KEYFILE)"),
                            ("SSL", "TLS handshake failed"), ("Handshake failed", "TLS handshake failed"),
                            (kafka_python_fixes.answered_in_tls, "the broker answered in TLS (its listener "
                             "expects TLS: set WORKERS_SECURITY_PROTOCOL to SSL or SASL_SSL)"),
                            ("socket disconnected", "the broker closed the connection (does the listener expect "
                                                    "TLS or SASL? see WORKERS_SECURITY_PROTOCOL)"),
                            ("ECONNREFUSED", "connection refused (is a broker listening there?)")):
        found = next((c for c in causes if (marker(c) if callable(marker) else marker in c)), None)
        if found is not None:
            return f"{meaning}: {found}"
    return causes[-1] if causes else None


def producer(settings: Settings, **options: Any) -> Any:
    from kafka import KafkaProducer

    with _explained(settings):
        return KafkaProducer(**{"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
                                "compression_type": settings.compression_type, **options},
                             **kafka_python_options(settings))


def consumer(settings: Settings, *topics: str, **options: Any) -> Any:
    from kafka import KafkaConsumer

    with _explained(settings):
        return KafkaConsumer(*topics, **{"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS, **options},
                             **kafka_python_options(settings))


@contextmanager
def admin_client(settings: Settings) -> Iterator[Any]:
    from kafka.admin import KafkaAdminClient

    with _explained(settings):
        admin = KafkaAdminClient(client_id="workers-admin", bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                                 **kafka_python_options(settings))
    try:
        yield admin
    finally:
        admin.close()


def describe_client_error(exc: BaseException) -> str:
    """An exception that escaped a command, as the one line the CLI prints."""
    module = type(exc).__module__.split(".")[0]
    if module in ("kafka", "aiokafka"):
        return f"Kafka client error: {type(exc).__name__}: {exc}"
    return f"unexpected {type(exc).__name__}: {exc} (a bug: please report it with the command that caused it)"


def check_access(settings: Settings, read: list[str]) -> dict[str, int]:
    """Before a worker starts: the brokers answer, the credentials are accepted, and each topic in
    ``read`` exists and can be described by this principal. One clear error instead of a client's
    traceback after its own retries. Returns each topic's partition count."""
    from workers.errors import ConfigError

    probe = consumer(settings, client_id="workers-preflight", enable_auto_commit=False)
    counts = {}
    try:
        for topic in read:
            partitions = probe.partitions_for_topic(topic)
            if not partitions:
                raise ConfigError(
                    f"topic {topic} does not exist on {settings.bootstrap_servers}, or "
                    f"{settings.client_name or 'this client'} may not DESCRIBE it (see `workers acl print`)")
            counts[topic] = len(partitions)
    finally:
        probe.close()
    return counts
