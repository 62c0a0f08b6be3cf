"""Reading and writing a pipeline's rollout state on ``<pipeline>.control`` (kafka-python).

The topic is compacted and keyed by the pipeline: the latest record for the key is the state.
A reader starts at the beginning of every partition, reads to the end offsets it saw at the
start and keeps the last valid record; ``ControlReader.poll`` then yields what comes after.
"""
from __future__ import annotations

from typing import Any

from workers.core.rollout import RolloutState
from workers.errors import ConfigError, DeliveryError
from workers.kafka import clients
from workers.ops.logs import get_logger
from workers.settings import Settings

log = get_logger("workers.control")
ACK_TIMEOUT_S = 30
READ_TIMEOUT_S = 15.0


class ControlReader:
    """One pipeline's records on the control topic, from the beginning; not part of any group."""

    def __init__(self, settings: Settings, client_id: str = "workers-control") -> None:
        from kafka import TopicPartition

        self.settings = settings
        self.topic = settings.topics.control
        self._key = settings.pipeline.encode()
        self._consumer = clients.consumer(settings, client_id=client_id, enable_auto_commit=False,
                                          auto_offset_reset="earliest")
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            self._consumer.close()
            raise ConfigError(f"topic {self.topic} does not exist on {settings.bootstrap_servers}, or "
                              f"{settings.client_name or 'this client'} may not DESCRIBE it "
                              "(create it with `workers topics create`)")
        self._partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._partitions)
        self._consumer.seek_to_beginning(*self._partitions)

    def current(self, timeout_s: float = READ_TIMEOUT_S) -> RolloutState | None:
        """The latest state written so far (None: none yet)."""
        import time

        ends = self._consumer.end_offsets(self._partitions)
        latest = None
        deadline = time.monotonic() + timeout_s
        while any(self._consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise ConfigError(f"cannot read {self.topic} to its end within {timeout_s:.0f}s")
            latest = self._last(self._consumer.poll(timeout_ms=200), latest)
        return latest

    def poll(self, current: RolloutState | None, timeout_ms: int = 500) -> RolloutState | None:
        """The state after ``current`` given the records that arrived since the last call (None: unchanged)."""
        latest = self._last(self._consumer.poll(timeout_ms=timeout_ms), current)
        return latest if latest is not current else None

    def _last(self, batches: dict[Any, list[Any]], latest: RolloutState | None) -> RolloutState | None:
        for messages in batches.values():
            for m in messages:
                if m.key != self._key:
                    continue
                try:
                    state = RolloutState.from_json(m.value, f"{m.topic}[{m.partition}]@{m.offset}")
                except ConfigError as exc:  # a foreign or broken record: the earlier state stands
                    log.error("rollout state ignored", topic=m.topic, partition=m.partition, offset=m.offset,
                              error=str(exc))
                    continue
                if not state.follows(latest):  # a worker's decision overtaken by another or by a command
                    log.info("stale rollout decision ignored", offset=m.offset, command=state.command)
                    continue
                latest = state
        return latest

    def close(self) -> None:
        self._consumer.close()


def read_state(settings: Settings) -> RolloutState | None:
    reader = ControlReader(settings, client_id="workers-rollout")
    try:
        return reader.current()
    finally:
        reader.close()


def write_state(settings: Settings, state: RolloutState) -> None:
    """Acknowledged by the broker (acks=all) before the command reports success."""
    topic = settings.topics.control
    producer = clients.producer(settings, acks="all", client_id="workers-rollout")
    try:
        producer.send(topic, key=state.pipeline.encode(), value=state.to_json()).get(timeout=ACK_TIMEOUT_S)
    except Exception as exc:
        raise DeliveryError(f"cannot WRITE the rollout state to topic {topic}: {type(exc).__name__}: {exc} "
                            "(create it with `workers topics create`; the principal needs WRITE on it)") from None
    finally:
        producer.close()
