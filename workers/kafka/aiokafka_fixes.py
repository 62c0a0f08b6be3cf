"""Two fixes to aiokafka (0.14), applied once before the worker builds its first client.

1. A failed metadata update is retried after a backoff, not at once.

When a partition has no known leader (a single broker stopped, a leader moving), aiokafka's
producer sender asks for a metadata update and waits for it. While every broker refuses
connections the update fails at once, the sender wakes and asks again, with no pause: a
worker with outputs in flight then spins a whole core for as long as the broker is away and
logs ~3,000 "Unable connect"/"Unable to update metadata" errors a second (measured here:
9.5 CPU-seconds and 31,248 log lines in 10 s of a broker outage). Kafka's Java client waits
``retry.backoff.ms`` after a failed metadata request; this makes aiokafka's update do the
same (its own ``retry_backoff_ms``, 100 ms by default) before it reports the failure, so
every waiter (the sender, the fetcher, the coordinator) is held for that long.

2. A batch failed unsent takes no sequence numbers (aio-libs/aiokafka#1017).

When a partition has had no leader for longer than the request timeout (a broker away for
over 40 s), the accumulator fails the partition's oldest batch unsent, but pops it through
``_pop_batch``, which first gives it the partition's next sequence numbers. The broker never
sees them, so it refuses every later batch of the producer to that partition
(``OutOfOrderSequenceNumber``): the worker stopped with exit 70 after such an outage, its
re-send refused. Here a batch that expires before it was ever sent leaves the sequence as
it was, so its re-send and everything after it are in sequence. A batch that expires on a
retry has been sent once: whether the broker wrote it is unknown, so it keeps aiokafka's
behaviour (Kafka's Java producer bumps its epoch there, KAFKA-12152).

faust's agent engine uses the same aiokafka classes. An aiokafka without these methods is
left alone.
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


def _no_sequence_for_unsent_expired(pop_batch: Any) -> Any:
    @functools.wraps(pop_batch)
    def pop(self: Any, tp: Any) -> Any:
        batch = self._batches[tp][0]
        leader = self._cluster.leader_for_partition(tp)
        # drain_by_nodes pops a batch of a partition without a leader only to fail it (expired)
        if (leader is None or leader == -1) and batch.retry_count == 0 and batch.expired():
            self._batches[tp].popleft()
            if not self._batches[tp]:
                del self._batches[tp]
            batch.drain_ready()  # wakes a sender waiting for room behind it, as a drain does
            return batch
        return pop_batch(self, tp)

    return pop


def _wrap(cls: Any, name: str, fix: Any) -> None:
    original = cls.__dict__.get(name)
    if callable(original) and not hasattr(original, "__wrapped__"):
        setattr(cls, name, fix(original))


def apply() -> None:
    global _applied
    if _applied:
        return
    try:
        from aiokafka.client import AIOKafkaClient
        from aiokafka.producer.message_accumulator import MessageAccumulator
    except ImportError:
        _applied = True
        return
    _wrap(AIOKafkaClient, "_metadata_update", _backing_off_after_failure)
    _wrap(MessageAccumulator, "_pop_batch", _no_sequence_for_unsent_expired)
    _applied = True
