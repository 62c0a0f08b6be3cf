"""kafka-python clients built from the settings, with connection failures as one clear error.

A client that cannot bootstrap raises ``KafkaUnavailableError`` naming the servers and
the protocol, instead of kafka-python's ``NoBrokersAvailable`` traceback.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from workers.errors import KafkaUnavailableError
from workers.kafka.connection import kafka_python_options
from workers.settings import Settings


def _unavailable(settings: Settings, exc: Exception) -> KafkaUnavailableError:
    return KafkaUnavailableError(
        f"cannot connect to Kafka at {settings.bootstrap_servers} ({settings.security_protocol}): "
        f"{type(exc).__name__}{': ' + str(exc) if str(exc) else ''}")


def producer(settings: Settings, **options: Any) -> Any:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        return KafkaProducer(**options, **kafka_python_options(settings))
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc


def consumer(settings: Settings, *topics: str, **options: Any) -> Any:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        return KafkaConsumer(*topics, **options, **kafka_python_options(settings))
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc


@contextmanager
def admin_client(settings: Settings) -> Iterator[Any]:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(client_id="workers-admin", **kafka_python_options(settings))
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc
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
