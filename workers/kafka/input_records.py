"""aiokafka's fetcher hands the batch engine ``InputRecord``s directly, without a ``ConsumerRecord``.

aiokafka makes an 11-field ``ConsumerRecord`` per fetched record, which the engine then copied
into the core's ``InputRecord``: two objects per record where one will do (~0.4 µs of the
~12 µs a drained event costs, measured in-process on 500-record batches).

A consumer built with ``value_deserializer=AS_INPUT_RECORDS`` gets ``InputRecord``s once
``install()`` has wrapped aiokafka's ``PartitionRecords._consumer_record``; every other consumer
in the process still gets ``ConsumerRecord``s. Where aiokafka has no such method (another
version), nothing is wrapped, ``AS_INPUT_RECORDS`` passes values through unchanged, and
``as_input_record`` converts ``ConsumerRecord``s as before: the hook is an optimisation only.
"""
from __future__ import annotations

from typing import Any

from workers.core.records import InputRecord

_WRAPPED = "_workers_input_records"


class _AsInputRecords:
    """Marks a consumer whose records come as ``InputRecord``s; as a deserializer, the identity."""

    def __call__(self, value: bytes | None) -> bytes | None:
        return value

    def __repr__(self) -> str:
        return "AS_INPUT_RECORDS"


AS_INPUT_RECORDS = _AsInputRecords()


def install() -> bool:
    """Wrap aiokafka's per-record hook (once per process). False if this aiokafka has none."""
    try:
        from aiokafka.consumer.fetcher import PartitionRecords
    except ImportError:
        return False
    original = getattr(PartitionRecords, "_consumer_record", None)
    if original is None:
        return False
    if getattr(original, _WRAPPED, False):
        return True

    def _consumer_record(self: Any, tp: Any, record: Any) -> Any:
        if self._value_deserializer is not AS_INPUT_RECORDS:
            return original(self, tp, record)
        return InputRecord(record.value, record.key, tp.topic, tp.partition, record.offset, record.timestamp,
                           list(record.headers))

    setattr(_consumer_record, _WRAPPED, True)
    PartitionRecords._consumer_record = _consumer_record
    return True


def as_input_record(message: Any) -> InputRecord:
    """A fetched record as the core takes it: as it came when the hook is installed, else copied."""
    if type(message) is InputRecord:
        return message
    return InputRecord(message.value, message.key, message.topic, message.partition, message.offset,
                       message.timestamp, list(message.headers or ()))
