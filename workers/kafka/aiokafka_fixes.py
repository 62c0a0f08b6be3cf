"""One fix to aiokafka (0.14): a failed metadata update is retried after a backoff, not at once.

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
