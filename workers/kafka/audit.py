"""Writing and reading a pipeline's audit trail (``<pipeline>.audit``) with kafka-python.

A record is acknowledged by the broker before the action goes on (a worker does not start
scoring, a replay does not report success, without its audit record).
"""
from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Iterator
from typing import Any

from workers.core import audit
from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.errors import DeliveryError
from workers.kafka import clients
from workers.kafka.consumer import consume
from workers.kafka.oauth import token_source
from workers.settings import Settings

ACK_TIMEOUT_S = 30


def actor(settings: Settings) -> str:
    """Who acts: the Kafka principal the settings authenticate as, else the OS user."""
    if settings.sasl_username:
        return f"User:{settings.sasl_username}"
    tokens = token_source(settings)
    if tokens is not None:  # the broker's principal: the subject of the token in hand (never fetched here)
        return f"User:{tokens.subject or settings.sasl_oauthbearer_client_id}"
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return "os:unknown"


def codec(settings: Settings) -> SingleObjectCodec:
    store = SchemaStore(settings.schemas_dir)
    return SingleObjectCodec(store, store.add_definition(audit.SCHEMA, audit.SCHEMA_NAME))


def write(settings: Settings, action: str, details: dict[str, Any], worker_id: str | None = None) -> None:
    topic = settings.topics.audit
    record = audit.event(settings.pipeline, action, actor(settings), socket.gethostname(), details,
                         int(time.time() * 1000), worker_id)
    producer = clients.producer(settings, acks="all", client_id="workers-audit")
    try:
        producer.send(topic, key=settings.pipeline.encode(), value=codec(settings).encode(record)).get(
            timeout=ACK_TIMEOUT_S)
    except Exception as exc:
        raise DeliveryError(f"cannot WRITE the audit record to topic {topic}: {type(exc).__name__}: {exc} "
                            "(create it with `workers topics create`; the principal needs WRITE on it)") from None
    finally:
        producer.close()


def read(settings: Settings, idle_timeout_s: float = 3.0) -> Iterator[dict[str, Any]]:
    decoder = codec(settings)
    for record in consume(settings, [settings.topics.audit], idle_timeout_s=idle_timeout_s):
        yield decoder.decode(record.value)[0]
