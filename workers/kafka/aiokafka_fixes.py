"""Two fixes to aiokafka (0.14).

A failed metadata update is retried after a backoff, not at once:

When a partition has no known leader (a single broker stopped, a leader moving), aiokafka's
producer sender asks for a metadata update and waits for it. While every broker refuses
connections the update fails at once, the sender wakes and asks again, with no pause: a
worker with outputs in flight then spins a whole core for as long as the broker is away and
logs ~3,000 "Unable connect"/"Unable to update metadata" errors a second (measured here:
9.5 CPU-seconds and 31,248 log lines in 10 s of a broker outage). Kafka's Java client waits
``retry.backoff.ms`` after a failed metadata request; this makes aiokafka's update do the
same (its own ``retry_backoff_ms``, 100 ms by default) before it reports the failure, so
every waiter (the sender, the fetcher, the coordinator) is held for that long.

Applied once, before the worker builds its first client (faust's agent engine uses the same
aiokafka client class). An aiokafka without this method is left alone.

An idempotent producer can be given a new producer id (``new_producer_id``), as Kafka's Java
producer does when a batch it gave up on leaves a gap in a partition's sequence numbers
(KAFKA-12152; aio-libs/aiokafka#1017). aiokafka takes a batch's sequence numbers when it
first drains it, even when it then fails it unsent (no leader for longer than its request
timeout, i.e. a broker away that long): the broker never sees those numbers, so every later
batch to that partition is refused with ``OutOfOrderSequenceNumber``, for as long as the
producer lives. The batch engine re-sends what failed under a new producer id.
"""
from __future__ import annotations

import asyncio
import functools
from typing import Any

_applied = False


def _backing_off_after_failure(metadata_update: Any) -> Any:
    @functools.wraps(metadata_update)
    async def update(self: Any, cluster_metadata: Any, topics: Any) -> Any:
        updated = await metadata_update(self, cluster_metadata, topics)
        if updated is False:
            await asyncio.sleep(getattr(self, "_retry_backoff", 0.1))
        return updated

    return update


def apply() -> None:
    global _applied
    if _applied:
        return
    try:
        from aiokafka.client import AIOKafkaClient
    except ImportError:
        _applied = True
        return
    original = AIOKafkaClient.__dict__.get("_metadata_update")
    if callable(original) and not hasattr(original, "__wrapped__"):
        AIOKafkaClient._metadata_update = _backing_off_after_failure(original)
    _applied = True


def new_producer_id(producer: Any) -> bool:
    """Make an idempotent (not transactional) producer ask for a new producer id before its next
    batch, with every partition's sequence from 0. Batches already drained keep their id and
    numbers, which the broker still accepts in order. False (nothing changed) when this aiokafka
    keeps that state elsewhere."""
    txn = getattr(producer, "_txn_manager", None)
    if txn is None or getattr(txn, "transactional_id", None) is not None:
        return False
    if not all(hasattr(txn, name) for name in ("_pid_and_epoch", "_pid_waiter", "_sequence_numbers")):
        return False
    try:
        from aiokafka.producer.transaction_manager import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, PidAndEpoch
    except ImportError:
        return False
    # the sender asks for an id before it drains a batch whenever it has none
    # (Sender._maybe_wait_for_pid), and set_pid_and_epoch resolves a fresh waiter
    txn._pid_and_epoch = PidAndEpoch(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
    txn._pid_waiter = asyncio.get_running_loop().create_future()
    txn._sequence_numbers.clear()
    return True
