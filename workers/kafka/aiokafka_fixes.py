"""Three fixes to aiokafka (0.14), applied once before the worker builds its first client.

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

2. A batch failed unsent gives its sequence numbers back (aio-libs/aiokafka#1017).

When a partition has had no leader for longer than the request timeout (a broker away for
over 40 s, then reporting the partition leaderless while it restarts), the accumulator fails
the partition's oldest batch. That batch has taken the partition's next sequence numbers
when it was first drained (while the broker was away, every send of it failed with "node not
ready" and it went back to the head of the queue). The broker never saw those numbers, so it
refused every later batch of the producer to that partition (``OutOfOrderSequenceNumber``):
the worker stopped with exit 70 after such an outage, its re-send refused. Here:

* a batch that expires before it was ever drained takes no numbers, and the batches queued
  behind an expired one fail with it (sent when the leader is back, they would go before it
  is sent again, or be refused as out of sequence);
* a batch that expires after only "node not ready" failures (raised before anything is
  written) gives its numbers back, so the next batch takes them. Only one batch per
  partition holds numbers at a time (aiokafka sends a partition's batches one by one and
  numbers a batch at its first drain, from the head of the queue), so the next is in
  sequence;
* a batch that may have reached the broker (any other failure: a lost connection, a timeout,
  an error answer) keeps them, as aiokafka does, because the broker may have written it:
  giving them back would make the next batch a "duplicate" the broker drops while answering
  success. The batch engine re-sends such a batch from a new producer id instead
  (``BatchEngine._renew_producer``; Kafka's Java producer bumps its epoch, KAFKA-12152).

3. A batch the broker refused as too large gives its sequence numbers back.

The broker checks a batch's size before it appends anything (``MESSAGE_TOO_LARGE``,
``RECORD_LIST_TOO_LARGE``), so a refused batch leaves the partition's sequence where it was,
but aiokafka keeps the numbers the batch took. A worker whose dead letter was over the
dead-letter topic's ``max.message.bytes`` re-sends it with a reference to its bytes: refused as
out of sequence when that producer had written to the partition before (the first write of a
producer id to a partition is taken at any sequence), and the worker stopped with exit 70 at
the same record after every restart. Only a batch that was never possibly written before
gives them back: one that was (a lost connection, a timeout) keeps them, as above.

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


_NUMBERED = "_workers_numbered"  # (producer id, epoch, first sequence, next sequence) from its first drain
_MAYBE_SENT = "_workers_maybe_sent"  # a request carrying the batch may have reached the broker


def _numbers_back_when_never_sent(pop_batch: Any) -> Any:
    @functools.wraps(pop_batch)
    def pop(self: Any, tp: Any) -> Any:
        batch = self._batches[tp][0]
        txn = self._txn_manager
        leader = self._cluster.leader_for_partition(tp)
        if (leader is None or leader == -1) and batch.expired():
            # drain_by_nodes pops a batch of a partition without a leader only to fail it
            _fail_behind(self, tp, leader)
            if batch.retry_count == 0:  # never drained: it takes no numbers
                self._batches[tp].popleft()
                if not self._batches[tp]:
                    del self._batches[tp]
                batch.drain_ready()  # wakes a sender waiting for room behind it, as a drain does
                return batch
            popped = pop_batch(self, tp)
            _give_numbers_back(txn, tp, popped)
            return popped
        if txn is None or batch.retry_count:
            return pop_batch(self, tp)
        first = txn.sequence_number(tp)
        popped = pop_batch(self, tp)  # numbers it
        setattr(popped, _NUMBERED, (txn.producer_id, txn.producer_epoch, first, txn.sequence_number(tp)))
        setattr(popped, _MAYBE_SENT, False)
        return popped

    return pop


def _fail_behind(accumulator: Any, tp: Any, leader: int | None) -> None:
    """Fail the partition's batches queued behind an expired one with it, as aiokafka fails that one.

    Left queued, a younger batch is sent when the leader is back, before the expired one can be
    sent again: out of order, or refused as out of sequence. None of them holds sequence numbers
    (only the head of a partition's queue is ever drained).
    """
    from aiokafka.errors import LeaderNotAvailableError, NotLeaderForPartitionError

    queue = accumulator._batches[tp]
    while len(queue) > 1 and queue[1].retry_count == 0:
        behind = queue[1]
        del queue[1]
        behind.drain_ready()
        behind.failure(exception=NotLeaderForPartitionError() if leader is None else LeaderNotAvailableError())


def _give_numbers_back(txn: Any, tp: Any, batch: Any) -> None:
    numbered = getattr(batch, _NUMBERED, None)
    numbers = getattr(txn, "_sequence_numbers", None)
    if numbered is None or numbers is None or getattr(batch, _MAYBE_SENT, True):
        return
    producer_id, epoch, first, after = numbered
    # the same producer id, and no batch numbered since (there cannot be one: checked anyway)
    if (txn.producer_id, txn.producer_epoch) == (producer_id, epoch) and numbers.get(tp) == after:
        numbers[tp] = first


# broker answers given before anything of the batch is appended (Kafka's LogValidator)
_REFUSED_UNWRITTEN = frozenset({"MessageSizeTooLargeError", "RecordListTooLargeError"})


def _remembering_possible_sends(can_retry: Any) -> Any:
    """Every failed produce attempt passes through ``_can_retry`` with its error."""
    from aiokafka.errors import NodeNotReadyError

    @functools.wraps(can_retry)
    def check(self: Any, error: BaseException, batch: Any) -> Any:
        never_written = not getattr(batch, _MAYBE_SENT, True) and type(error).__name__ in _REFUSED_UNWRITTEN
        if not isinstance(error, NodeNotReadyError):  # raised before a request is written
            setattr(batch, _MAYBE_SENT, True)
        retry = can_retry(self, error, batch)
        tp = getattr(batch, "tp", None)
        if never_written and not retry and tp is not None:  # it fails now, its numbers unused
            setattr(batch, _MAYBE_SENT, False)
            _give_numbers_back(self._sender._txn_manager, tp, batch)
        return retry

    return check


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
        from aiokafka.producer.sender import SendProduceReqHandler
    except ImportError:
        _applied = True
        return
    _wrap(AIOKafkaClient, "_metadata_update", _backing_off_after_failure)
    _wrap(MessageAccumulator, "_pop_batch", _numbers_back_when_never_sent)
    _wrap(SendProduceReqHandler, "_can_retry", _remembering_possible_sends)
    _applied = True
