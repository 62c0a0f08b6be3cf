"""What a failed send means: retry it (within a deadline), shorten it, or stop.

aiokafka's idempotent producer already retries retriable errors by itself, in order and
without duplicates; a send future fails only when it gave up. The engines classify that
failure:

* ``RETRIABLE``: the producer could not deliver in time (no leader while a broker is
  down, a request timed out). Re-sent, in order, until ``delivery_timeout_s`` after the
  first send; past it, the worker stops without committing.
* ``TOO_LARGE``: the broker refused the record (or its batch) as too large. Dead letters
  are re-sent one by one, and one that is still too large is written with a reference to
  its original bytes; a too-large prediction is a fatal error (a misconfigured topic).
* ``FATAL``: it can never succeed (not authorized, the topic does not exist, an invalid
  topic): the worker stops with one clear error naming the topic and the operation, and
  commits nothing past what was delivered.
"""
from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Any

from workers.core.records import OutputRecord
from workers.errors import DeliveryError


class Failure(enum.Enum):
    RETRIABLE = "retriable"
    TOO_LARGE = "too_large"
    FATAL = "fatal"


TOO_LARGE_ERRORS = {"MessageSizeTooLargeError", "RecordListTooLargeError", "RecordBatchTooLargeError"}
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(eq=False)
class Group:
    """Outputs sent together (one producer batch, or one record) and the future of their delivery."""

    topic: str
    partition: int | None  # None: the producer's partitioner decides (the agent engine)
    outputs: list[OutputRecord]
    future: Any  # an asyncio future resolving to the record metadata, or failing
    attempts: int = 1
    sent_at: float = field(default=0.0)
    queued: bool = True  # False: the producer refused it before queueing it (it holds no sequence numbers)
    producer: int = 0  # which of the engine's producers sent it (a new one after a re-send's renewal)


def failed_future(exc: BaseException) -> asyncio.Future:
    """A send that raised before it was queued, as a failed delivery like any other."""
    future: asyncio.Future = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    future.exception()  # retrieved here: its failure is handled through the group, never "unretrieved"
    return future


def classify(exc: BaseException) -> Failure:
    name = type(exc).__name__
    if name in TOO_LARGE_ERRORS:
        return Failure.TOO_LARGE
    if name == "UnknownTopicOrPartitionError":  # retriable to aiokafka; checked against the cluster by the engine
        return Failure.RETRIABLE
    if isinstance(exc, asyncio.TimeoutError) or name in ("KafkaTimeoutError", "RequestTimedOutError"):
        return Failure.RETRIABLE
    if getattr(exc, "retriable", False):
        return Failure.RETRIABLE
    return Failure.FATAL


def fatal_error(topic: str, exc: BaseException) -> DeliveryError:
    """One line naming the topic, the operation and the cause."""
    name = type(exc).__name__
    if name == "TopicAuthorizationFailedError":
        cause = "not authorized (the worker's principal needs WRITE on it)"
    elif name == "UnknownTopicOrPartitionError":
        cause = "the topic does not exist (create it with `workers topics create`)"
    elif name in TOO_LARGE_ERRORS:
        cause = "a prediction is larger than the topic accepts (max.message.bytes)"
    else:
        cause = f"{name}: {exc}"
    return DeliveryError(f"cannot WRITE to topic {topic}: {cause}; stopping without committing undelivered outputs")


def backoff(attempt: int) -> float:
    return RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S)) - 1]
